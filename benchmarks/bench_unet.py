"""U-Net benchmarks (issue 4), printed side by side with their references.

Sections (``--sections``, comma separated; default all):

* ``speed``    inference on 1024x1024: microseg's U-Net path vs a plain fp32 4-level,
               16-base PyTorch U-Net run the naive way (NCHW, ``torch.no_grad``) in the
               same process; both also trained the same way on the same data and scored
               (grain boundary F1 on ``grains/tbm`` micrographs 18-20) unless ``--smoke``.
* ``memory``   peak resident memory of a fresh process predicting a 4096x4096 image.
* ``finetune`` boundary F1 vs seconds on ``grains/tbm`` tiles of micrographs 18-20 with
               their supplied strokes: ``builtin:grains`` fine-tuned, a U-Net from
               scratch, and the classical random forest on the same strokes.
* ``corrective`` the same, with simulated corrective strokes instead: 3x3 dabs of the
               ground-truth class on pixels ``builtin:grains`` gets wrong (inside error
               regions at least 3 px across), as many pixels as the supplied strokes.
* ``nuclei``   ``builtin:nuclei`` AP@0.5 on held-out DSB 2018 images and GOWT1 frames.
* ``grains``   ``builtin:grains`` boundary F1 (2 px) on tiles of micrographs 18-20.

``python benchmarks/bench_unet.py --smoke`` runs tiny sizes in seconds (a test).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microseg.deep import TrainConfig, Trainer, UNet, UNetConfig, UNetSegmenter  # noqa: E402
from microseg.deep.train import targets_from_masks  # noqa: E402

DATA = Path(os.environ.get("MICROSEG_DATA", ROOT.parent / "shared" / "data"))
NAIVE = {"depth": 4, "base": 16, "norm": "batch"}


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _median_times(fns: dict, repeat: int) -> dict[str, float]:
    """Median times of several functions, run in turns (fair under a varying load)."""
    for fn in fns.values():
        fn()  # warm-up
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in ts.items()}


# ------------------------------------------------------------------ data
def _tbm(names: list[str]):
    from microseg.zoo.train_builtin import load_tbm

    return load_tbm(DATA, names)


def _tbm_strokes(name: str) -> np.ndarray:
    import tifffile

    return tifffile.imread(DATA / "strokes" / "grains" / "tbm" / f"{name}_strokes.tif")


def _boundary_f1(model, image, mask) -> float:
    from microseg.metrics import boundary_f1

    pred = np.argmax(model.predict_proba(image), 0) == 1
    return boundary_f1(mask > 128, pred, 2).f1


# ------------------------------------------------------------------ speed
def bench_speed(smoke: bool, out: list[str], train_steps: int) -> None:
    side = 128 if smoke else 1024
    repeat = 1 if smoke else 5
    threads = torch.get_num_threads()
    rng = np.random.default_rng(0)
    img = (rng.random((side, side)) * 200).astype(np.uint8)
    naive = UNet(UNetConfig(in_channels=1, n_classes=2, **NAIVE)).eval()
    x = torch.from_numpy(img.astype(np.float32) / 255)[None, None]

    def run_naive() -> None:
        with torch.no_grad():
            torch.softmax(naive(x), 1)

    ours = UNetSegmenter.new("grains", ["grain interior", "grain boundary"], 1)
    fns = {"naive": run_naive, "ours": lambda: ours.predict_proba(img)}
    try:
        import onnxruntime as ort

        from microseg.deep.onnx_export import export_onnx

        path = export_onnx(ours, Path("/tmp") / f"bench_unet_{os.getpid()}.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        xin = ours.prepare(img)[None]
        fns["ort"] = lambda: sess.run(["logits"], {"image": xin})
        path.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001
        print(f"ONNX Runtime not measured: {exc}", file=sys.stderr)
    times = _median_times(fns, repeat)
    t_naive, t_ours = times["naive"], times["ours"]
    out.append(f"## Inference {side}x{side}, {threads} threads, median of {repeat} (run in turns)")
    out.append(f"naive fp32 U-Net 4 levels x 16 base (NCHW, no_grad): {t_naive:.3f} s")
    out.append(
        f"microseg U-Net {ours.config.depth} levels x {ours.config.base} base (BN folded, "
        f"channels-last, inference_mode, tiled, incl. normalisation): {t_ours:.3f} s "
        f"-> {t_naive / t_ours:.1f}x faster"
    )
    if "ort" in times:
        out.append(
            f"same microseg network in ONNX Runtime (network only): {times['ort']:.3f} s "
            f"-> {t_naive / times['ort']:.1f}x"
        )
    if smoke or not (DATA / "grains" / "tbm").is_dir():
        return
    # accuracy at equal training: both architectures, same data, same time
    from microseg.zoo.train_builtin import grains_split

    split = grains_split(DATA)
    tr_x, tr_m = _tbm(split["train"] + split["val"])
    te_x, te_m = _tbm(split["test"])
    tr_x = [im.mean(axis=0) for im in tr_x]
    te_x = [im.mean(axis=0) for im in te_x]
    targets = [targets_from_masks(m, "grains") for m in tr_m]
    out.append(
        f"accuracy at equal training ({train_steps} steps each, same data: grey tbm tiles "
        f"of micrographs 10-17, masks; boundary F1 2 px on micrographs 18-20):"
    )
    for name, arch in (("naive 4x16", NAIVE), ("microseg", dict(ours.config.to_dict()))):
        arch = {k: v for k, v in arch.items() if k in ("depth", "base", "norm", "residual")}
        cfg = TrainConfig(
            seconds=1e9, max_steps=train_steps, arch=arch, seed=0, eval_every=1e9, zoom=(0.75, 1.33)
        )
        model = Trainer(tr_x, targets, cfg, task="grains").run()
        f1 = np.mean([_boundary_f1(model, im, m) for im, m in zip(te_x, te_m, strict=True)])
        secs = model.metadata["training"]["seconds"]
        out.append(f"  {name}: {secs:.0f} s of training, boundary F1 {f1:.3f}")


# ------------------------------------------------------------------ memory
_MEM_SNIPPET = """
import resource, sys, numpy as np, torch
sys.path.insert(0, {root!r})
from microseg.deep import UNetSegmenter
m = UNetSegmenter.new("nuclei", ["background", "nucleus", "border"], 1)
img = np.random.default_rng(0).integers(0, 60000, ({side}, {side}), dtype=np.uint16)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
p = m.predict_proba(img)
print(base / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, p.shape)
"""


def bench_memory(smoke: bool, out: list[str]) -> None:
    side = 512 if smoke else 4096
    code = _MEM_SNIPPET.format(root=str(ROOT), side=side)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak, _ = res.stdout.strip().split(" ", 2)
    out.append(f"## Peak memory predicting {side}x{side} uint16 (3 classes), fresh process")
    out.append(
        f"peak RSS {float(peak):.0f} MB (before prediction {float(base):.0f} MB, incl. the "
        f"image); {time.perf_counter() - t:.1f} s; target < 2048 MB"
    )


# ------------------------------------------------------------------ fine-tuning
def _rf_f1(image, strokes, mask) -> tuple[float, str]:
    """Boundary F1 of the classical random forest trained on the strokes."""
    try:
        from microseg.classical import RandomForestSegmenter

        model = RandomForestSegmenter(workers=1).fit(image, strokes, task="grains", seed=0)
        label = "microseg.classical RandomForestSegmenter, default features"
    except ImportError:
        from sklearn.ensemble import RandomForestClassifier

        from microseg.features import compute_features

        f = compute_features(image)
        sel = strokes > 0
        rf = RandomForestClassifier(50, max_depth=12, n_jobs=1, random_state=0)
        rf.fit(f[:, sel].T, strokes[sel])
        pred = rf.predict(f.reshape(f.shape[0], -1).T).reshape(strokes.shape) == 2
        from microseg.metrics import boundary_f1

        return boundary_f1(mask > 128, pred, 2).f1, "sklearn RF (50 trees) on microseg.features"
    from microseg.metrics import boundary_f1

    pred = np.argmax(model.predict_proba(image), 0) == 1
    return boundary_f1(mask > 128, pred, 2).f1, label


def finetune_curve(
    init: UNetSegmenter | None,
    image: np.ndarray,
    strokes: np.ndarray,
    mask: np.ndarray,
    seconds: float,
    marks: list[float],
    config: TrainConfig,
    replay=None,  # noqa: ANN001
) -> list[tuple[float, float]]:
    """Boundary F1 of the model a user would get when stopping at each mark (seconds)."""
    trainer = Trainer(
        [image],
        [strokes],
        config,
        init=init,
        task="grains",
        classes=["grain interior", "grain boundary"],
        replay=replay,
    )
    snaps: list[tuple[float, UNetSegmenter]] = []
    pending = list(marks)

    def progress(p) -> None:  # noqa: ANN001
        while pending and p.seconds >= pending[0]:
            snaps.append((pending.pop(0), trainer.result()))

    final = trainer.run(progress=progress, seconds=seconds)
    while pending:
        snaps.append((pending.pop(0), final))
    return [(t, _boundary_f1(m, image, mask)) for t, m in snaps]


def bench_finetune(smoke: bool, out: list[str], seconds: float) -> None:
    from microseg.zoo import load_builtin
    from microseg.zoo.train_builtin import grains_split

    names = grains_split(DATA)["test"]
    if smoke:
        names, seconds = names[:1], 2.0
    marks = [m for m in (2, 5, 10, 20, 30, 45, 60, 90, 120) if m <= seconds]
    init = load_builtin("grains")
    rep_names = grains_split(DATA)["train"]
    replay = _tbm(rep_names)
    replay = (replay[0], [targets_from_masks(m, "grains") for m in replay[1]])
    images, masks = _tbm(names)
    rows = {"builtin": [], "finetuned": [], "scratch": [], "rf": []}
    rf_label = ""
    for name, image, mask in zip(names, images, masks, strict=True):
        strokes = _tbm_strokes(name)
        rows["builtin"].append(_boundary_f1(init, image, mask))
        ft = TrainConfig(seconds=seconds, seed=0)
        rows["finetuned"].append(
            finetune_curve(init, image, strokes, mask, seconds, marks, ft, replay)
        )
        sc = TrainConfig(seconds=seconds, seed=0, arch=dict(init.config.to_dict()))
        sc.arch = {k: sc.arch[k] for k in ("depth", "base", "norm")}
        rows["scratch"].append(finetune_curve(None, image, strokes, mask, seconds, marks, sc))
        f1, rf_label = _rf_f1(image, strokes, mask)
        rows["rf"].append(f1)
        print(
            f"{name}: builtin {rows['builtin'][-1]:.3f} finetuned "
            f"{rows['finetuned'][-1][-1][1]:.3f} scratch {rows['scratch'][-1][-1][1]:.3f} "
            f"rf {f1:.3f}",
            file=sys.stderr,
            flush=True,
        )
    out.append(f"## Fine-tuning on supplied strokes, grains/tbm tiles {', '.join(names)}")
    out.append("boundary F1 (2 px tolerance) averaged over tiles, vs training seconds")
    out.append(f"builtin:grains without strokes: {np.mean(rows['builtin']):.3f}")
    out.append(f"classical ({rf_label}) on the same strokes: {np.mean(rows['rf']):.3f}")
    out.append("seconds  " + "  ".join(f"{t:>6.0f}" for t in marks))
    for key in ("finetuned", "scratch"):
        vals = [np.mean([r[i][1] for r in rows[key]]) for i in range(len(marks))]
        out.append(f"{key:9s}" + "  ".join(f"{v:6.3f}" for v in vals))
    fin = np.mean([r[-1][1] for r in rows["finetuned"]])
    scr = np.mean([r[-1][1] for r in rows["scratch"]])
    rf = np.mean(rows["rf"])
    base = np.mean(rows["builtin"])
    worse = sum(
        r[-1][1] < b - 1e-9 for r, b in zip(rows["finetuned"], rows["builtin"], strict=True)
    )
    out.append(
        f"fine-tuned vs builtin: {fin - base:+.3f} (tiles where it ends lower: {worse}/{len(names)}); "
        f"vs classical: {fin - rf:+.3f}; from scratch vs classical: {scr - rf:+.3f}"
        + (" (from scratch loses to the classical model)" if scr < rf else "")
    )
    out.append(
        "per tile (builtin / fine-tuned / scratch / classical): "
        + "; ".join(
            f"{n} {b:.2f}/{f[-1][1]:.2f}/{s[-1][1]:.2f}/{r:.2f}"
            for n, b, f, s, r in zip(
                names, rows["builtin"], rows["finetuned"], rows["scratch"], rows["rf"], strict=True
            )
        )
    )


def corrective_strokes(
    init: UNetSegmenter, image: np.ndarray, mask: np.ndarray, budget: int, seed: int
) -> np.ndarray:
    """Dabs of the true class where ``init`` is wrong: what a user paints to correct it."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    truth = targets_from_masks(mask, "grains")
    pred = np.argmax(init.predict_proba(image), 0) + 1
    wrong = (pred != truth) & ndi.binary_erosion(pred != truth)
    strokes = np.zeros_like(truth)
    h, w = truth.shape
    for p in rng.permutation(np.flatnonzero(wrong)):
        if (strokes > 0).sum() >= budget:
            break
        y, x = divmod(int(p), w)
        sl = (slice(max(0, y - 1), min(h, y + 2)), slice(max(0, x - 1), min(w, x + 2)))
        strokes[sl] = truth[sl]
    return strokes


def bench_corrective(smoke: bool, out: list[str], seconds: float) -> None:
    from microseg.zoo import load_builtin
    from microseg.zoo.train_builtin import grains_split

    names = grains_split(DATA)["test"]
    if smoke:
        names, seconds = names[:1], 2.0
    marks = [m for m in (10, 30, 60, 120) if m <= seconds] or [seconds]
    init = load_builtin("grains")
    images, masks = _tbm(names)
    base, curves, rf, painted = [], [], [], []
    for k, (name, image, mask) in enumerate(zip(names, images, masks, strict=True)):
        budget = int((_tbm_strokes(name) > 0).sum())
        strokes = corrective_strokes(init, image, mask, budget, seed=k)
        painted.append(int((strokes > 0).sum()))
        base.append(_boundary_f1(init, image, mask))
        cfg = TrainConfig(seconds=seconds, seed=0)
        curves.append(finetune_curve(init, image, strokes, mask, seconds, marks, cfg))
        rf.append(_rf_f1(image, strokes, mask)[0])
        print(f"{name}: builtin {base[-1]:.3f} corrected {curves[-1][-1][1]:.3f}", file=sys.stderr)
    out.append(f"## Fine-tuning on corrective strokes, grains/tbm tiles {', '.join(names)}")
    out.append(
        f"3x3 dabs of the true class on pixels builtin:grains gets wrong, {min(painted)}-"
        f"{max(painted)} px per tile (as many as the supplied strokes); TrainConfig defaults"
    )
    out.append(
        f"builtin:grains without strokes: {np.mean(base):.3f}; classical on the dabs: {np.mean(rf):.3f}"
    )
    out.append("seconds    " + "  ".join(f"{t:>6.0f}" for t in marks))
    vals = [np.mean([c[i][1] for c in curves]) for i in range(len(marks))]
    out.append("fine-tuned " + "  ".join(f"{v:6.3f}" for v in vals))
    lower = sum(c[-1][1] < b - 1e-9 for c, b in zip(curves, base, strict=True))
    out.append(f"tiles where fine-tuning ends lower than the built-in model: {lower}/{len(names)}")
    out.append(
        "per tile (builtin / fine-tuned): "
        + "; ".join(
            f"{n} {b:.2f}/{c[-1][1]:.2f}" for n, b, c in zip(names, base, curves, strict=True)
        )
    )


# ------------------------------------------------------------------ accuracy
def _nuclei_ap(model, image, gt, diameter=None) -> tuple[object, np.ndarray]:
    from microseg.instances import nuclei_instances
    from microseg.metrics import match_instances
    from microseg.thresholds import instance_settings

    proba = model.predict_proba(image, object_diameter_px=diameter)
    chosen = instance_settings(model.metadata)
    labels = nuclei_instances(
        proba, model.classes, threshold=chosen["threshold"], h_fraction=chosen["h_fraction"]
    )
    return match_instances(gt, labels, 0.5), labels


def bench_nuclei(smoke: bool, out: list[str], weights: str | None = None) -> None:
    import tifffile

    from microseg.metrics import combine_matches
    from microseg.zoo import load_builtin
    from microseg.zoo.train_builtin import load_dsb, nuclei_split

    model = UNetSegmenter.load(weights) if weights else load_builtin("nuclei")
    ids = nuclei_split(DATA)["test"][: 3 if smoke else None]
    images, labels = load_dsb(DATA, ids)
    res = [_nuclei_ap(model, im, gt)[0] for im, gt in zip(images, labels, strict=True)]
    tot = combine_matches(res)
    per_image = np.mean([r.ap for r in res])
    out.append(f"## builtin:nuclei ({model.metadata.get('training', {}).get('steps')} steps)")
    out.append(
        f"DSB 2018 held-out (every 10th id, {len(ids)} images): AP@0.5 pooled {tot.ap:.3f}, "
        f"mean per image {per_image:.3f} (TP {tot.tp}, FP {tot.fp}, FN {tot.fn})"
    )
    root = DATA / "timelapse" / "ctc_gowt1_01"
    frames = ["021"] if smoke else ["021", "031", "033", "039"]
    for diam in (None, 60.0):
        rs = []
        for t in frames:
            im = tifffile.imread(root / "01" / f"t{t}.tif")
            gt = tifffile.imread(root / "01_GT" / "SEG" / f"man_seg{t}.tif")
            if smoke:
                im, gt = im[:256, :256], gt[:256, :256]
            rs.append(_nuclei_ap(model, im, gt, diam)[0])
        tot = combine_matches(rs)
        how = "as is" if diam is None else f"object diameter given as {diam:.0f} px (rescaled)"
        out.append(
            f"GOWT1 frames {','.join(frames)} ({how}): AP@0.5 {tot.ap:.3f} "
            f"(TP {tot.tp}, FP {tot.fp}, FN {tot.fn})"
        )


def bench_grains(smoke: bool, out: list[str], weights: str | None = None) -> None:
    from microseg.zoo import load_builtin
    from microseg.zoo.train_builtin import grains_split

    model = UNetSegmenter.load(weights) if weights else load_builtin("grains")
    names = grains_split(DATA)["test"][: 2 if smoke else None]
    images, masks = _tbm(names)
    f1 = [_boundary_f1(model, im, m) for im, m in zip(images, masks, strict=True)]
    grey = [_boundary_f1(model, im.mean(axis=0), m) for im, m in zip(images, masks, strict=True)]
    out.append(f"## builtin:grains ({model.metadata.get('training', {}).get('steps')} steps)")
    out.append(
        f"tbm tiles of micrographs 18-20 ({len(names)} tiles): boundary F1 (2 px) "
        f"{np.mean(f1):.3f} colour, {np.mean(grey):.3f} grey input"
    )
    steel = DATA / "grains" / "nist_steel"
    if steel.is_dir() and not smoke:
        import tifffile

        from microseg.metrics import boundary_f1

        image = tifffile.imread(steel / "steel_original.tif")
        gt = tifffile.imread(steel / "steel_boundaries_manual.tif") > 127
        pred = np.argmax(model.predict_proba(image), 0) == 1
        out.append(
            "nist_steel (grey, 600x800, never trained on): boundary F1 (2 px) "
            f"{boundary_f1(gt, pred, 2).f1:.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections and print (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    ap.add_argument("--sections", default="speed,memory,finetune,corrective,nuclei,grains")
    ap.add_argument("--seconds", type=float, default=60.0, help="fine-tuning budget")
    ap.add_argument("--train-steps", type=int, default=400, help="speed: training steps")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="append the figures to this file")
    ap.add_argument("--nuclei-weights", default=None)
    ap.add_argument("--grains-weights", default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out: list[str] = []
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    have_data = DATA.is_dir()
    for s in sections:
        t = time.perf_counter()
        if s == "speed":
            bench_speed(a.smoke, out, a.train_steps)
        elif s == "memory":
            bench_memory(a.smoke, out)
        elif not have_data:
            out.append(f"## {s}: skipped, {DATA} is absent")
            continue
        elif s == "finetune":
            bench_finetune(a.smoke, out, a.seconds)
        elif s == "corrective":
            bench_corrective(a.smoke, out, a.seconds)
        elif s == "nuclei":
            bench_nuclei(a.smoke, out, a.nuclei_weights)
        elif s == "grains":
            bench_grains(a.smoke, out, a.grains_weights)
        else:
            raise SystemExit(f"Unknown section '{s}'.")
        out.append(f"({s}: {time.perf_counter() - t:.0f} s)")
        print("\n".join(out[-3:]), file=sys.stderr, flush=True)
    text = "\n".join(out)
    print(text)
    if a.out:
        with open(a.out, "a") as fh:
            fh.write(text + "\n")
    json.dumps(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
