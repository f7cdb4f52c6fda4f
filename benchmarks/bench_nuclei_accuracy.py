"""Nuclei accuracy (issue 5): ``builtin:nuclei`` + instances beside Otsu + watershed.

Every figure is measured on images that neither the model nor any constant was
tuned on, with the reference measured in the same run:

* ``dsb``   AP@0.5 (TP/(TP+FP+FN), one-to-one matching) pooled over images and as a
            mean per image, and CTC SEG, on the held-out split of the DSB 2018
            fluorescence training set (``microseg.zoo.train_builtin.nuclei_split``
            "test": every 10th image by sorted id, never trained on or used for
            model selection).
* ``gowt1`` the same on the fully annotated CTC Fluo-N2DH-GOWT1 01 frames 021, 031,
            033 and 039 (the whole GOWT1 sequence is held out of training).
* ``sim``   CTC SEG on Fluo-N2DH-SIM+ 01 (every ``--sim-seg-step``-th frame) and
            tracking: all frames segmented, linked by ``track_objects``, scored with
            ``link_recovery`` against ``01_GT/TRA`` (divisions included); references:
            the same linker on Otsu + watershed labels and on the ground-truth masks.

Scale: the model records the median object diameter of its training masks but no
pixel size (DSB 2018 mixes magnifications), so the pixel size in the TIFF tags
cannot rescale an input. ``object_diameter_px="auto"`` (predict, measure the
objects, predict again at the training scale when they are more than 1.5x off) is
the one global choice; the "as is" rows show the model without rescaling.

``python benchmarks/bench_nuclei_accuracy.py --out benchmarks/results/...txt``
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from microseg.instances import nuclei_instances, otsu_watershed  # noqa: E402
from microseg.metrics import (  # noqa: E402
    MatchResult,
    combine_matches,
    ctc_seg,
    match_instances,
    overlaps,
)

GOWT1_FRAMES = ("021", "031", "033", "039")
SCALES = {"as is": None, "auto diameter": "auto"}


def default_data() -> Path:
    """``$MICROSEG_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("MICROSEG_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def weights_line(weights: str | None = None) -> str:
    """The model file evaluated and the start of its SHA-256 (weights may be retrained)."""
    from microseg.modelfile import file_hash, read_metadata
    from microseg.zoo import builtin_path

    path = Path(weights) if weights else builtin_path("nuclei")
    steps = read_metadata(path).get("training", {}).get("steps")
    return f"weights {path.name} ({steps} training steps), sha256 {file_hash(path)[:12]}"


def machine_line() -> str:
    """Python, cores, load average and other busy processes (the machine is shared)."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    line = f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load}"
    try:
        ps = subprocess.run(
            ["ps", "-eo", "pid=,pcpu=,args="], capture_output=True, text=True, timeout=5
        ).stdout
        busy = []
        for row in ps.splitlines():
            pid, cpu, args = (row.split(None, 2) + ["", ""])[:3]
            if pid != str(os.getpid()) and float(cpu or 0) >= 20:
                busy.append(f"{args.strip()[:60]} ({float(cpu):.0f} % CPU)")
        if busy:
            line += "; busy: " + "; ".join(busy[:4])
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return line


# ------------------------------------------------------------------ methods
def microseg_labels(
    model, image: np.ndarray, scale: str | None, augment: bool = False
) -> np.ndarray:
    """``builtin:nuclei`` probabilities (rescaled by ``scale``; test-time augmented when
    ``augment``) to instance labels."""
    from microseg.thresholds import instance_settings

    proba = model.predict_proba(image, object_diameter_px=scale, augment=augment)
    chosen = instance_settings(model.metadata)
    return nuclei_instances(
        proba, model.classes, threshold=chosen["threshold"], h_fraction=chosen["h_fraction"]
    )


def split_merge(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int]:
    """Ground-truth objects cut into several predictions (each mostly inside it), and
    predictions covering several ground-truth objects (each mostly inside it)."""
    o = overlaps(gt, pred)
    in_gt = o.intersection > 0.5 * o.pred_area[o.pred_index]
    in_pred = o.intersection > 0.5 * o.gt_area[o.gt_index]
    split = int((np.bincount(o.gt_index[in_gt], minlength=o.gt_ids.size) >= 2).sum())
    merged = int((np.bincount(o.pred_index[in_pred], minlength=o.pred_ids.size) >= 2).sum())
    return split, merged


def method_table() -> dict[str, Callable]:
    """The methods compared: name -> (model, image) -> labels."""

    def make(scale: str | None) -> Callable:
        return lambda model, image: microseg_labels(model, image, scale)

    methods = {f"microseg {k}": make(v) for k, v in SCALES.items()}
    methods["microseg as is, augmented"] = lambda model, image: microseg_labels(
        model, image, None, augment=True
    )
    methods["Otsu + DT watershed"] = lambda model, image: otsu_watershed(image)
    return methods


def score_images(
    model, images: list[np.ndarray], truths: list[np.ndarray]
) -> dict[str, dict[str, object]]:
    """AP@0.5 (pooled, mean per image) and CTC SEG of every method on the images."""
    out: dict[str, dict[str, object]] = {}
    for name, fn in method_table().items():
        t0 = time.perf_counter()
        res: list[MatchResult] = []
        preds = []
        sm = np.zeros(2, np.int64)
        for im, gt in zip(images, truths, strict=True):
            lab = fn(model, im)
            res.append(match_instances(gt, lab, 0.5))
            preds.append(lab)
            sm += split_merge(gt, lab)
        out[name] = {
            "split_merged": tuple(int(v) for v in sm),
            "pooled": combine_matches(res),
            "per_image": [r.ap for r in res],
            "seg": ctc_seg(list(truths), preds),
            "seconds": time.perf_counter() - t0,
        }
    return out


def format_scores(title: str, scores: dict[str, dict[str, object]], per_image: bool) -> list[str]:
    """A table: one row per method."""
    lines = [title]
    lines.append(
        f"{'method':<26}{'AP@0.5 pooled':>14}{'AP mean/image':>15}{'SEG':>8}"
        f"{'TP':>7}{'FP':>7}{'FN':>7}{'split':>7}{'merged':>8}{'time [s]':>10}"
    )
    for name, s in scores.items():
        r = s["pooled"]
        sp, mg = s["split_merged"]
        lines.append(
            f"{name:<26}{r.ap:>14.3f}{np.mean(s['per_image']):>15.3f}{s['seg']:>8.3f}"
            f"{r.tp:>7d}{r.fp:>7d}{r.fn:>7d}{sp:>7d}{mg:>8d}{s['seconds']:>10.1f}"
        )
    lines.append(
        "split: GT nuclei cut into >= 2 predicted objects; merged: predicted objects "
        "covering >= 2 GT nuclei"
    )
    if per_image:
        for name, s in scores.items():
            vals = " ".join(f"{v:.3f}" for v in s["per_image"])
            lines.append(f"  per image, {name}: {vals}")
    return lines


def _crop(a: np.ndarray, side: int) -> np.ndarray:
    return a[:side, :side] if side else a


# ------------------------------------------------------------------ sections
def bench_dsb(model, data: Path, limit: int, crop: int) -> list[str]:
    """Held-out DSB 2018 images (the zoo's "test" split)."""
    from microseg.zoo.train_builtin import load_dsb, nuclei_split

    split = nuclei_split(data)
    ids = split["test"][:limit] if limit else split["test"]
    leak = set(ids) & (set(split["train"]) | set(split["val"]))
    if leak:
        raise SystemExit(f"{len(leak)} evaluation images are training images.")
    images, labels = load_dsb(data, ids)
    images = [_crop(im, crop) for im in images]
    labels = [_crop(lab, crop) for lab in labels]
    n = sum(int(np.unique(lab[lab > 0]).size) for lab in labels)
    scores = score_images(model, images, labels)
    title = (
        f"## DSB 2018 held-out split (index % 10 == 0 of {len(split['train']) + len(split['val'])}"
        f"+{len(split['test'])} sorted ids; {len(ids)} images, {n} nuclei; "
        "0 of them in the training or model-selection ids)"
    )
    return format_scores(title, scores, per_image=False)


def _pixel_size(path: Path) -> float | None:
    from microseg.io import read_image

    return read_image(path).pixel_size_um


def _scale_note(model, ps: float | None, images: list[np.ndarray]) -> str:
    """Pixel size, what it does to the model, and the estimated object diameters."""
    f = model.rescale_factor(pixel_size_um=ps)
    diam = []
    for im in images:
        d = model.estimate_object_diameter(model.predict_proba(im))
        diam.append(f"{d:.0f}" if d else "-")
    ref = model.metadata.get("object_diameter_px")
    return (
        f"pixel size {ps:.4g} µm (TIFF tags) -> zoom {f:.2f} (the model records no training "
        f"pixel size); estimated object diameter {', '.join(diam)} px vs {ref} px in training"
    )


def bench_gowt1(model, data: Path, crop: int, frames: tuple[str, ...]) -> list[str]:
    """The four fully annotated GOWT1 01 frames."""
    import tifffile

    root = data / "timelapse" / "ctc_gowt1_01"
    images = [_crop(tifffile.imread(root / "01" / f"t{t}.tif"), crop) for t in frames]
    truths = [
        _crop(tifffile.imread(root / "01_GT" / "SEG" / f"man_seg{t}.tif"), crop) for t in frames
    ]
    n = sum(int(np.unique(g[g > 0]).size) for g in truths)
    note = _scale_note(model, _pixel_size(root / "01" / f"t{frames[0]}.tif"), images)
    scores = score_images(model, images, truths)
    title = (
        f"## CTC Fluo-N2DH-GOWT1 01, fully annotated frames {','.join(frames)} ({n} nuclei); {note}"
    )
    return format_scores(title, scores, per_image=True)


def _table(labels: np.ndarray, t: int):
    from microseg.measure import object_table

    return object_table(labels, frame=t)[["frame", "label", "y", "x", "area_px"]]


def _track_score(stack: np.ndarray, markers: list[np.ndarray], gt_lineage) -> tuple[object, object]:
    """Track a label stack and score its links against the TRA ground truth."""
    import pandas as pd

    from microseg.tracking import link_recovery, track_objects

    table = pd.concat([_table(lab, t) for t, lab in enumerate(stack)], ignore_index=True)
    track_objects(table[table["frame"] < 2])  # warm-up (imports, compilation)
    t0 = time.perf_counter()
    tracks = track_objects(table)
    secs = time.perf_counter() - t0
    relabelled = tracks.relabel(stack)
    score = link_recovery(markers, gt_lineage, relabelled, tracks.lineage)
    found = n_markers = 0
    for mk, lab in zip(markers, stack, strict=True):
        o = overlaps(mk, lab)
        found += int(np.unique(o.gt_index[2 * o.intersection > o.gt_area[o.gt_index]]).size)
        n_markers += int(o.gt_ids.size)
    return score, (found / max(n_markers, 1), secs)


def bench_sim(model, data: Path, n_frames: int, seg_step: int, crop: int) -> list[str]:
    """SIM+ 01: SEG on every ``seg_step``-th frame and tracking of all frames."""
    import tifffile

    from microseg.tracking import read_ctc_tracks

    root = data / "timelapse" / "ctc_sim_plus_01"
    files = sorted((root / "01").glob("t*.tif"))
    if n_frames:
        files = files[:n_frames]
    frames = [_crop(tifffile.imread(f), crop) for f in files]
    seg_gt = [
        _crop(tifffile.imread(root / "01_GT" / "SEG" / f"man_seg{f.stem[1:]}.tif"), crop)
        for f in files
    ]
    gt_lineage, load_markers = read_ctc_tracks(root / "01_GT")
    markers = [_crop(load_markers(t), crop) for t in range(len(files))]
    note = _scale_note(model, _pixel_size(files[0]), frames[:1])
    stacks: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, fn in method_table().items():
        t0 = time.perf_counter()
        stacks[name] = np.stack([fn(model, im) for im in frames])
        seconds[name] = time.perf_counter() - t0
    from microseg.temporal import consistent_instances

    for name in [n for n in stacks if n.startswith("microseg")]:
        t0 = time.perf_counter()
        stacks[f"{name} + temporal"] = consistent_instances(stacks[name])[0]
        seconds[f"{name} + temporal"] = seconds[name] + time.perf_counter() - t0
    stacks["ground-truth masks"] = np.stack(seg_gt).astype(np.uint16)
    seg_idx = list(range(0, len(files), seg_step))
    n_seg = sum(int(np.unique(seg_gt[i][seg_gt[i] > 0]).size) for i in seg_idx)
    lines = [
        f"## CTC Fluo-N2DH-SIM+ 01: {len(files)} frames {frames[0].shape[1]}x{frames[0].shape[0]}; "
        f"{note}",
        f"CTC SEG pooled over frames {seg_idx[0]}..{seg_idx[-1]} step {seg_step} "
        f"({len(seg_idx)} frames, {n_seg} "
        "nuclei); tracking: all frames -> instances -> track_objects (defaults: laptrack, gap 1, "
        "divisions) -> link_recovery vs 01_GT/TRA",
        f"{'labels from':<36}{'SEG':>8}{'AP@0.5':>8}{'split':>7}{'merged':>8}{'markers':>9}"
        f"{'GT links':>10}{'recovered':>11}{'fraction':>10}{'divisions':>11}{'seg [s]':>9}"
        f"{'track [s]':>10}",
    ]
    for name, stack in stacks.items():
        gts = [seg_gt[i] for i in seg_idx]
        preds = [stack[i] for i in seg_idx]
        seg = ctc_seg(gts, preds)
        ap = combine_matches([match_instances(g, p, 0.5) for g, p in zip(gts, preds, strict=True)])
        sm = np.sum([split_merge(g, p) for g, p in zip(gts, preds, strict=True)], axis=0)
        score, (found, t_track) = _track_score(stack, markers, gt_lineage)
        div = f"{score.division_recovered}/{score.division_links}"
        lines.append(
            f"{name:<36}{seg:>8.3f}{ap.ap:>8.3f}{sm[0]:>7d}{sm[1]:>8d}{found:>9.3f}"
            f"{score.n_gt_links:>10d}{score.n_recovered:>11d}{score.fraction:>10.3f}{div:>11}"
            f"{seconds.get(name, 0.0):>9.1f}{t_track:>10.1f}"
        )
    lines.append(
        "markers: fraction of TRA markers (all frames) covered > 50 % by one object; "
        "divisions: mother-daughter links recovered / GT division links; + temporal: "
        "one-frame splits and merges fixed from the frames before and after "
        "(microseg.temporal.consistent_instances, what a series run does by default)"
    )
    return lines


def finish_report(lines: list[str], t_start: float, out: Path | None) -> None:
    """Print the total run time and machine line; write all ``lines`` to ``out``."""
    tail = f"total {time.perf_counter() - t_start:.0f} s; {machine_line()}"
    print(tail)
    lines.append(tail)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    """Run the selected sections; print (and optionally write) the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--sections", default="dsb,gowt1,sim")
    ap.add_argument("--dsb-limit", type=int, default=0, help="first N held-out images (0 = all)")
    ap.add_argument("--gowt1-frames", default=",".join(GOWT1_FRAMES))
    ap.add_argument("--sim-frames", type=int, default=0, help="first N SIM+ frames (0 = all)")
    ap.add_argument("--sim-seg-step", type=int, default=1, help="SEG on every k-th SIM+ frame")
    ap.add_argument("--crop", type=int, default=0, help="top-left crop side (smoke runs)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--weights", default=None, help="another nuclei model file")
    ap.add_argument("--out", type=Path, default=None, help="write the report to this file")
    a = ap.parse_args(argv)
    import torch

    from microseg.segmenter import load_segmenter

    if a.threads:
        torch.set_num_threads(a.threads)
    if not a.data.is_dir():
        print(f"{a.data} is absent; nothing to measure.")
        return 2
    model = load_segmenter(a.weights or "builtin:nuclei")
    t_all = time.perf_counter()
    lines = [
        "$ python benchmarks/bench_nuclei_accuracy.py " + " ".join(argv or sys.argv[1:]),
        "builtin:nuclei + nuclei_instances vs Otsu + distance-transform watershed "
        "(otsu_watershed, defaults), same run",
        f"{machine_line()}; torch threads {torch.get_num_threads()}",
        f"model: {a.weights or 'builtin:nuclei'}, {weights_line(a.weights)}, "
        f"held out: {model.metadata.get('held_out')}; training object diameter "
        f"{model.metadata.get('object_diameter_px')} px, pixel size "
        f"{model.metadata.get('pixel_size_um')}; instance settings "
        f"{model.metadata.get('instances', {}).get('threshold', 0.5)} threshold, "
        f"{model.metadata.get('instances', {}).get('h_fraction', 0.15)} h fraction "
        f"(chosen on: {model.metadata.get('instances', {}).get('chosen_on', 'defaults')})",
        "scale: 'as is' = no rescaling ('microseg nuclei --diameter none'); 'auto diameter' = "
        "predict_proba(object_diameter_px='auto'), the one documented global rescaling choice "
        "and the default of FrameSegmenter, 'microseg nuclei' and the Nuclei page; 'augmented' = test-time augmentation (mean over the 8 flips and "
        "quarter turns, 'microseg nuclei --augment'); no constant was tuned on these images",
        "",
    ]
    print("\n".join(lines), flush=True)
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    for s in sections:
        t0 = time.perf_counter()
        if s == "dsb":
            part = bench_dsb(model, a.data, a.dsb_limit, a.crop)
        elif s == "gowt1":
            part = bench_gowt1(model, a.data, a.crop, tuple(a.gowt1_frames.split(",")))
        elif s == "sim":
            part = bench_sim(model, a.data, a.sim_frames, a.sim_seg_step, a.crop)
        else:
            raise SystemExit(f"Unknown section '{s}'; use dsb, gowt1 or sim.")
        part.append(f"({s}: {time.perf_counter() - t0:.0f} s)")
        part.append("")
        print("\n".join(part), flush=True)
        lines += part
    finish_report(lines, t_all, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
