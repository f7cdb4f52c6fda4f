"""Classical pixel classification: microseg vs scikit-image's trainable segmentation.

Runs both pipelines in one process on the same image and strokes and prints a
side-by-side table: feature, fit and predict time, total, peak memory, foreground
F1 against the ground truth, and the ratios; plus microseg's live update (refit
and predict with the features cached, as the app does after each stroke).

Reference: ``skimage.feature.multiscale_basic_features`` with its defaults and
``RandomForestClassifier(n_estimators=100, max_depth=10)`` fitted and applied with
``skimage.future.fit_segmenter`` / ``predict_segmenter`` (what ``TrainableSegmenter``
runs), both given the same number of threads as microseg.

Default data: Cell Tracking Challenge Fluo-N2DH-GOWT1 sequence 01, frame 021, with
its supplied strokes (1 background, 2 nucleus); foreground = nucleus class vs
ground-truth labels > 0.

Usage::

    python benchmarks/bench_classical.py [--repeats 5] [--size 512] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from microseg.classical import RandomForestSegmenter, probabilities_to_classes  # noqa: E402
from microseg.features import FeatureSet, compute_features  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
GOWT1 = "timelapse/ctc_gowt1_01"


def default_paths(frame: str = "021") -> tuple[Path, Path, Path]:
    """Image, strokes and ground truth of a GOWT1 frame in the shared data."""
    base = Path(os.environ.get("MICROSEG_DATA", DATA))
    return (
        base / GOWT1 / "01" / f"t{frame}.tif",
        base / "strokes" / GOWT1 / f"t{frame}_strokes.tif",
        base / GOWT1 / "01_GT" / "SEG" / f"man_seg{frame}.tif",
    )


def synthetic_case(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dim noisy blobs with ground truth and short strokes (for smoke runs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    gt = np.zeros((size, size), np.uint16)
    strokes = np.zeros((size, size), np.uint8)
    n = max(2, size // 24)
    for i in range(n):
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(0.05, 0.09) * size
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i + 1
        strokes[(np.abs(yy - cy) <= 1) & (np.abs(xx - cx) <= r / 2)] = 2
    img = 30.0 * (gt > 0) + rng.normal(5.0, 3.0, (size, size))
    bg = (gt == 0) & ((yy % 29) == 3) & ((xx % 37) < 8)
    strokes[bg] = 1
    return np.clip(img, 0, 255).astype(np.uint8), strokes, gt


def best_crop(strokes: np.ndarray, size: int) -> tuple[slice, slice]:
    """The ``size`` x ``size`` window (on a coarse grid) with most strokes of its rarest class."""
    ny, nx = strokes.shape
    size = min(size, ny, nx)
    step = max(1, size // 4)
    best, where = -1, (0, 0)
    for y0 in range(0, ny - size + 1, step):
        for x0 in range(0, nx - size + 1, step):
            win = strokes[y0 : y0 + size, x0 : x0 + size]
            counts = np.bincount(win.ravel(), minlength=3)[1:]
            score = int(counts.min())
            if score > best:
                best, where = score, (y0, x0)
    y0, x0 = where
    return slice(y0, y0 + size), slice(x0, x0 + size)


def f1_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """F1 (Dice) of two boolean masks."""
    tp = np.count_nonzero(pred & truth)
    denom = np.count_nonzero(pred) + np.count_nonzero(truth)
    return 2.0 * tp / denom if denom else 1.0


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _peak_mib(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def microseg_pipeline(
    image: np.ndarray, strokes: np.ndarray, workers: int, feature_set: FeatureSet | None = None
) -> dict[str, Any]:
    """Features, fit and predict with microseg; returns times, class map and the model."""
    fs = feature_set or FeatureSet()
    feats, t_feat = _timed(lambda: compute_features(image, fs, workers=workers))
    model = RandomForestSegmenter(workers=workers)
    _, t_fit = _timed(
        lambda: model.fit(None, strokes, task="nuclei", feature_set=fs, features=feats)
    )
    classes, t_pred = _timed(
        lambda: probabilities_to_classes(model.predict_proba(None, features=feats))
    )
    return {"features": t_feat, "fit": t_fit, "predict": t_pred, "classes": classes, "feats": feats}


def reference_pipeline(image: np.ndarray, strokes: np.ndarray, workers: int) -> dict[str, Any]:
    """scikit-image multiscale_basic_features + RF(100 trees, depth 10) via fit/predict_segmenter."""
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    feats, t_feat = _timed(lambda: multiscale_basic_features(image, workers=workers))
    clf = RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=workers, random_state=0)
    clf, t_fit = _timed(lambda: fit_segmenter(strokes, feats, clf))
    classes, t_pred = _timed(lambda: predict_segmenter(feats, clf))
    return {"features": t_feat, "fit": t_fit, "predict": t_pred, "classes": classes}


def run(
    image: np.ndarray,
    strokes: np.ndarray,
    truth: np.ndarray,
    repeats: int = 3,
    workers: int = 2,
    feature_set: FeatureSet | None = None,
    memory: bool = True,
) -> dict[str, Any]:
    """Run both pipelines ``repeats`` times (interleaved) and collect medians.

    Returns a dict with ``"microseg"`` and ``"reference"`` rows (seconds, MiB, F1)
    and ``"live"`` (microseg refit + predict with cached features).
    """
    fg = truth > 0
    # warm up imports and thread pools outside the timings
    small = (slice(0, min(64, image.shape[0])), slice(0, min(64, image.shape[1])))
    warm_strokes = np.zeros(strokes[small].shape, np.uint8)
    warm_strokes[0, :2], warm_strokes[-1, -2:] = 1, 2
    microseg_pipeline(image[small], warm_strokes, workers, feature_set)
    reference_pipeline(image[small], warm_strokes, workers)
    rows: dict[str, dict[str, list[float]]] = {"microseg": {}, "reference": {}}
    f1: dict[str, float] = {}
    feats = None
    for _ in range(max(1, repeats)):
        for name, fn in (
            ("microseg", lambda: microseg_pipeline(image, strokes, workers, feature_set)),
            ("reference", lambda: reference_pipeline(image, strokes, workers)),
        ):
            res = fn()
            for key in ("features", "fit", "predict"):
                rows[name].setdefault(key, []).append(res[key])
            rows[name].setdefault("total", []).append(res["features"] + res["fit"] + res["predict"])
            f1[name] = f1_score(res["classes"] == 2, fg)
            if name == "microseg":
                feats = res["feats"]
            del res

    out: dict[str, Any] = {}
    for name, cols in rows.items():
        out[name] = {k: float(np.median(v)) for k, v in cols.items()}
        out[name]["f1"] = f1[name]
    if memory:
        out["microseg"]["peak_mib"] = _peak_mib(
            lambda: microseg_pipeline(image, strokes, workers, feature_set)
        )
        out["reference"]["peak_mib"] = _peak_mib(
            lambda: reference_pipeline(image, strokes, workers)
        )

    # live update: a new stroke -> refit on strokes + predict, features cached
    model = RandomForestSegmenter(workers=workers)
    fs = feature_set or FeatureSet()
    live_full, live_preview = [], []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model.fit(None, strokes, task="nuclei", feature_set=fs, features=feats)
        probabilities_to_classes(model.predict_proba(None, features=feats))
        t1 = time.perf_counter()
        model.fit(None, strokes, task="nuclei", feature_set=fs, features=feats)
        probabilities_to_classes(model.predict_proba(None, features=feats[:, ::2, ::2]))
        t2 = time.perf_counter()
        live_full.append(t1 - t0)
        live_preview.append(t2 - t1)
    out["live"] = {"full": float(np.median(live_full)), "preview": float(np.median(live_preview))}
    out["n_features"] = {"microseg": int(feats.shape[0]), "reference": 24}
    return out


def format_table(result: dict[str, Any], title: str = "") -> str:
    """Side-by-side text table of :func:`run` output."""
    ms, ref = result["microseg"], result["reference"]
    lines = [title] if title else []
    lines.append(f"{'':18s}{'microseg':>12s}{'reference':>12s}{'ref/microseg':>14s}")
    for key, label in (
        ("features", "features [s]"),
        ("fit", "fit [s]"),
        ("predict", "predict [s]"),
        ("total", "total [s]"),
        ("peak_mib", "peak memory [MiB]"),
    ):
        if key not in ms:
            continue
        ratio = ref[key] / ms[key] if ms[key] > 0 else float("nan")
        lines.append(f"{label:18s}{ms[key]:12.3f}{ref[key]:12.3f}{ratio:13.2f}x")
    lines.append(
        f"{'foreground F1':18s}{ms['f1']:12.4f}{ref['f1']:12.4f}{ms['f1'] - ref['f1']:+14.4f}"
    )
    nf = result.get("n_features", {})
    if nf:
        lines.append(f"{'features [count]':18s}{nf['microseg']:12d}{nf['reference']:12d}")
    live = result["live"]
    lines.append(
        f"live update (cached features): fit + predict full image {live['full']:.3f} s, "
        f"fit + half-resolution preview {live['preview']:.3f} s"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the benchmark and print (and optionally save) the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", default="021,031", help="GOWT1 frames (comma separated)")
    p.add_argument("--image", type=Path, help="image file (instead of GOWT1 frames)")
    p.add_argument("--strokes", type=Path, help="strokes file for --image")
    p.add_argument("--truth", type=Path, help="ground-truth labels for --image")
    p.add_argument("--synthetic", action="store_true", help="use a synthetic image (smoke runs)")
    p.add_argument("--size", type=int, default=0, help="crop to SIZE x SIZE (0: whole image)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--out", type=Path, help="also write the report to this file")
    args = p.parse_args(argv)

    import tifffile

    cases: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    if args.synthetic:
        img, st, gt = synthetic_case(args.size or 128)
        cases.append(("synthetic", img, st, gt))
    elif args.image is not None:
        if args.strokes is None or args.truth is None:
            p.error("--image needs --strokes and --truth")
        cases.append(
            (
                args.image.name,
                tifffile.imread(args.image),
                tifffile.imread(args.strokes),
                tifffile.imread(args.truth),
            )
        )
    else:
        for frame in [f.strip() for f in args.frames.split(",") if f.strip()]:
            paths = default_paths(frame)
            missing = [str(q) for q in paths if not q.is_file()]
            if missing:
                print(f"missing data: {', '.join(missing)}", file=sys.stderr)
                return 2
            img, st, gt = (tifffile.imread(q) for q in paths)
            cases.append((f"GOWT1 01 frame {frame}", img, st, gt))

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    report = [
        "microseg classical pipeline vs scikit-image trainable segmentation",
        f"python {platform.python_version()}, {os.cpu_count()} CPUs{load}, workers={args.workers}, "
        f"repeats={args.repeats} (medians, runs interleaved)",
        f"microseg features: {FeatureSet().describe()}; reference: multiscale_basic_features "
        "defaults + RandomForestClassifier(n_estimators=100, max_depth=10)",
    ]
    for name, img, st, gt in cases:
        if args.size and not args.synthetic:
            sy, sx = best_crop(st, args.size)
            img, st, gt = img[sy, sx], st[sy, sx], gt[sy, sx]
        res = run(
            img, st, gt, repeats=args.repeats, workers=args.workers, memory=not args.no_memory
        )
        title = f"\n{name}: {img.shape[0]}x{img.shape[1]} {img.dtype}, " + ", ".join(
            f"class {k}: {int((st == k).sum())} px" for k in (1, 2)
        )
        report.append(format_table(res, title))
    text = "\n".join(report)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
