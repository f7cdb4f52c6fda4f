"""Where to paint next: does each model's uncertainty point at its errors? (issue 16, part 4)

On grain images left out of ``builtin:grains``' training (the SEM Ti-6Al-4V micrograph,
NIST steel, TBM tiles of micrographs 18-20), for the built-in U-Net, the U-Net
fine-tuned on the image's strokes (``--seconds``, the app's defaults) and the random
forest on the same strokes, the per-pixel uncertainty maps

* ``margin``     1 - (p1 - p2) of one prediction (what the random forest shows);
* ``tta margin`` the margin of the mean of the eight flips and quarter turns;
* ``tta disagr`` the mean absolute deviation of the eight passes from their mean;
* ``combined``   the larger of ``tta margin`` and ``tta disagr``;
* ``sum``        their mean

are scored against the model's boundary errors (a predicted boundary pixel more than
2 px from the reference, or a reference pixel more than 2 px from any predicted one):

* ``lift@5``  error density inside the five "where to paint next" boxes
  (:func:`microseg.classical.suggest_regions`, strokes excluded) over the image's;
* ``rho``     Spearman correlation of mean uncertainty and error density over the
  non-overlapping windows of the box size (1 = uncertainty ranks the windows by error).

A useful uncertainty has lift@5 well above 1 and rho above 0.

``python benchmarks/bench_uncertainty.py [--out FILE] [--seconds 30] [--tiles 3]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_adapt as adapt  # noqa: E402
import bench_grains_accuracy as acc  # noqa: E402

from microseg.classical import suggest_regions  # noqa: E402
from microseg.classical import uncertainty as margin_unc  # noqa: E402
from microseg.commands.grains import boundary_class_index  # noqa: E402
from microseg.deep.tiling import augmented_passes  # noqa: E402

N_BOXES = 5


def error_map(gt_boundary: np.ndarray, pred_boundary: np.ndarray) -> np.ndarray:
    """Boundary errors at the benchmark's 2 px tolerance (False positives and negatives)."""
    from scipy import ndimage as ndi

    g, p = np.asarray(gt_boundary, bool), np.asarray(pred_boundary, bool)
    near_g = ndi.distance_transform_edt(~g) <= acc.TOLERANCE_PX
    near_p = ndi.distance_transform_edt(~p) <= acc.TOLERANCE_PX
    return (p & ~near_g) | (g & ~near_p)


def unet_maps(model, image: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # noqa: ANN001
    """The U-Net's boundary probability (one pass) and its four uncertainty maps."""
    x = model.prepare(image)
    passes = np.stack(list(augmented_passes(model.inference_net(), x, device=model.device)))
    mean = passes.mean(axis=0)
    disagr = np.abs(passes - mean[None]).sum(axis=1).mean(axis=0)
    single = passes[0]
    maps = {
        "margin": margin_unc(single),
        "tta margin": margin_unc(mean),
        "tta disagr": np.clip(disagr, 0, 1),
    }
    maps["combined"] = np.maximum(maps["tta margin"], maps["tta disagr"])
    maps["sum"] = 0.5 * (maps["tta margin"] + maps["tta disagr"])
    return single[boundary_class_index(model.classes)], maps


def scores(unc: np.ndarray, err: np.ndarray, strokes: np.ndarray) -> dict[str, float]:
    """lift@5 and Spearman rho of an uncertainty map against an error map."""
    from scipy.stats import spearmanr

    size = int(np.clip(min(err.shape) // 8, 16, 128))
    boxes = suggest_regions(unc, n=N_BOXES, size=size, exclude=strokes)
    inside = np.zeros(err.shape, bool)
    for y0, x0, y1, x1 in boxes:
        inside[y0:y1, x0:x1] = True
    density = max(float(err.mean()), 1e-9)
    lift = float(err[inside].mean()) / density if inside.any() else float("nan")
    h, w = err.shape
    ny, nx = h // size, w // size

    def win(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)[: ny * size, : nx * size]
        return a.reshape(ny, size, nx, size).mean(axis=(1, 3)).ravel()

    rho = spearmanr(win(unc), win(err)).statistic if ny * nx > 2 else float("nan")
    return {"lift": lift, "rho": float(rho)}


def run_case(case: acc.Case, init, seconds: float, log) -> list[tuple[str, str, dict]]:  # noqa: ANN001
    """Rows (model, map, scores) of one image."""
    rows = []
    strokes = np.asarray(case.strokes) > 0
    models = [("builtin", init)]
    if seconds > 0:
        targets = np.asarray(case.strokes, np.uint8)
        final, _, _ = adapt.finetune(init, case.image, targets, seconds, [seconds])
        models.append((f"ft {seconds:g} s", final))
    for name, model in models:
        t0 = time.perf_counter()
        proba_b, maps = unet_maps(model, case.image)
        err = error_map(case.gt_boundary, proba_b >= 0.5)
        for kind, unc in maps.items():
            rows.append((name, kind, {**scores(unc, err, strokes), "err": float(err.mean())}))
        log(f"  {case.name} {name}: {time.perf_counter() - t0:.0f} s")
    rf = acc.fit_rf(case)
    p = np.asarray(rf.predict_proba(case.image), np.float32)
    err = error_map(case.gt_boundary, p[boundary_class_index(rf.classes)] >= 0.5)
    rows.append(("rf", "margin", {**scores(margin_unc(p), err, strokes), "err": float(err.mean())}))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) its table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=30.0, help="fine-tuning budget (0: none)")
    ap.add_argument("--tiles", type=int, default=3, help="TBM 18-20 tiles scored")
    ap.add_argument("--crop", type=int, default=None, help="score a top-left crop (smoke test)")
    ap.add_argument("--weights", default=None, help="a U-Net file instead of builtin:grains")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    init = acc.load_init(a.weights)
    cases = [adapt.ti64_case(a.crop), acc.nist_case(a.crop)]
    cases += [acc.tbm_case(n, a.crop) for n in acc.heldout_tiles()[: a.tiles]]
    out = [
        f"$ python benchmarks/bench_uncertainty.py --seconds {a.seconds:g} --tiles {a.tiles}"
        + (f" --crop {a.crop}" if a.crop else ""),
        "Where to paint next: uncertainty vs boundary errors (issue 16); "
        f"python {platform.python_version()}, 1 torch thread",
        f"model: {init.metadata.get('name', a.weights)}; lift@5: error density in the "
        f"{N_BOXES} suggested boxes / the image's; rho: Spearman over windows; "
        "err: fraction of pixels in error",
        "",
        f"{'image':<14}{'model':<12}{'map':<12}{'err':>7}{'lift@5':>8}{'rho':>7}",
    ]
    pooled: dict[tuple[str, str], list[dict]] = {}
    for case in cases:
        log(f"{case.name} ...")
        for model, kind, s in run_case(case, init, a.seconds, log):
            out.append(
                f"{case.name:<14}{model:<12}{kind:<12}{s['err']:>7.3f}{s['lift']:>8.2f}"
                f"{s['rho']:>7.2f}"
            )
            pooled.setdefault((model, kind), []).append(s)
        out.append("")
    out.append(f"mean over the {len(cases)} images:")
    for (model, kind), ss in pooled.items():
        lift = np.nanmean([s["lift"] for s in ss])
        rho = np.nanmean([s["rho"] for s in ss])
        out.append(f"{'':<14}{model:<12}{kind:<12}{'':>7}{lift:>8.2f}{rho:>7.2f}")
    out.append(f"total {time.perf_counter() - t_start:.0f} s")
    text = "\n".join(out)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
