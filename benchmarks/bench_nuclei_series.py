"""Nuclei time-series benchmark (issue 5): speed, memory and count robustness.

* ``synth``  the synthetic series (``synth_nuclei_series``, 170 frames of 512x512 with
             brightness drift and exact labels): segmentation + instances +
             measurements + tracking with ``builtin:nuclei`` through the CLI pipeline
             (``microseg.nuclei.run_nuclei`` with ``FrameSegmenter`` and
             ``FrameMeasurer``, frames streamed from a memory-mapped TIFF), beside the
             same steps done frame by frame naively (the whole stack normalised up
             front as a float64 copy, each frame predicted untiled by the plain
             network, ``skimage.measure.regionprops`` object by object, one loop, no
             worker threads). Each pipeline runs in a fresh process so its peak
             resident memory is its own. Robustness: per-frame count error against
             the exact counts, beside Otsu + distance-transform watershed.
* ``cancer`` ``timelapse/cancer_cell_migration`` (48 frames, no ground truth): count per
             frame from the same pipeline and from Otsu + watershed, as a CSV and a
             PNG plot.

``python benchmarks/bench_nuclei_series.py --out benchmarks/results/...txt``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATE = "2026-11-24"
RESULTS = ROOT / "benchmarks" / "results"
TARGET_FPS = 5.0
TARGET_MB = 2048.0


def _bench_acc():
    """The accuracy benchmark module (shared helpers: data folder, machine line)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_nuclei_accuracy", ROOT / "benchmarks" / "bench_nuclei_accuracy.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _status_mb(key: str) -> float | None:
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith(key + ":"):
                return float(row.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    """Peak resident memory of this process (MB): ``VmHWM`` where Linux offers it.

    ``ru_maxrss`` is not used when ``VmHWM`` exists: Linux keeps the parent's peak in
    it across fork and exec, so a fresh process would report its parent's peak.
    """
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> float:
    """Current resident memory (MB); resets the peak to it where Linux allows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    now = _status_mb("VmRSS")
    return now if now is not None else _rss_mb()


def _cpu_s() -> float:
    """CPU seconds used by this process so far (all threads, user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------ pipelines
class _Clock:
    """Thread-safe sums of stage durations."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total: dict[str, float] = {}

    def add(self, key: str, seconds: float) -> None:
        with self.lock:
            self.total[key] = self.total.get(key, 0.0) + seconds


def run_microseg(
    frames: np.ndarray, pixel_size_um: float, workers: int | None, threads: int | None
) -> dict[str, Any]:
    """The CLI pipeline on a ``(T, Y, X)`` array (memory-mapped: streamed frame by frame)."""
    import torch

    from microseg.image import MicroImage
    from microseg.nuclei import (
        FrameMeasurer,
        FrameSegmenter,
        default_workers,
        run_nuclei,
    )
    from microseg.segmenter import load_segmenter

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = load_segmenter("builtin:nuclei")
    t_load = time.perf_counter() - t0
    clock = _Clock()
    seen_threads: set[int] = set()

    class TimedSegmenter(FrameSegmenter):
        def probabilities(self, frame: np.ndarray) -> np.ndarray:
            seen_threads.add(torch.get_num_threads())
            t = time.perf_counter()
            p = super().probabilities(frame)
            clock.add("U-Net (normalise + forward)", time.perf_counter() - t)
            return p

        def instances(self, proba: np.ndarray) -> np.ndarray:
            t = time.perf_counter()
            lab = super().instances(proba)
            clock.add("instances (watershed)", time.perf_counter() - t)
            return lab

    class TimedMeasurer(FrameMeasurer):
        def __call__(self, labels: np.ndarray, frame: np.ndarray):  # noqa: ANN204
            t = time.perf_counter()
            table = super().__call__(labels, frame)
            clock.add("measurements (object_table)", time.perf_counter() - t)
            return table

    image = MicroImage.from_array(frames, axes="TYX", pixel_size_um=pixel_size_um)
    n = image.n_frames
    seg_end = [0.0]

    def progress(msg: str) -> None:
        if msg.endswith(f" {n}/{n} frames"):
            seg_end[0] = time.perf_counter()

    workers = workers or default_workers()
    rss0 = _reset_peak()
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    run = run_nuclei(
        image, TimedSegmenter(model), TimedMeasurer(pixel_size_um), True, progress, None, workers
    )
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    stages = dict(clock.total)
    t_seg = (seg_end[0] or time.perf_counter()) - t0
    stages["tracking + tables (after the last frame)"] = wall - t_seg
    single = _single_thread_profile(model, frames, pixel_size_um, min(n, 10))
    counts = run.frames["count"].to_numpy(np.int64)
    return {
        "name": "microseg",
        "how": f"run_nuclei(track=True), workers={workers}, torch threads "
        f"{'/'.join(str(v) for v in sorted(seen_threads))} per worker",
        "frames": n,
        "wall": wall,
        "cpu": cpu,
        "load_model": t_load,
        "stages": stages,
        "rss_before": rss0,
        "rss_peak": _rss_mb(),
        "counts": counts.tolist(),
        "labels": run.labels[:, 0],
        "lineage": run.track_summary[["track_id", "parent_track_id"]]
        if run.track_summary is not None
        else None,
        "n_tracks": int(run.tracks["track_id"].nunique()) if run.tracks is not None else 0,
        "single": single,
    }


def _single_thread_profile(
    model, frames: np.ndarray, pixel_size_um: float, n: int
) -> dict[str, float]:
    """Seconds per frame of each step in one thread (torch too), on the first ``n`` frames."""
    import torch

    from microseg.nuclei import FrameMeasurer, FrameSegmenter

    seg, meas = FrameSegmenter(model), FrameMeasurer(pixel_size_um)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {"U-Net": 0.0, "instances": 0.0, "measurements": 0.0}
    try:
        for i in range(n):
            frame = np.asarray(frames[i])
            t = time.perf_counter()
            p = seg.probabilities(frame)
            t1 = time.perf_counter()
            lab = seg.instances(p)
            t2 = time.perf_counter()
            meas(lab, frame)
            t3 = time.perf_counter()
            out["U-Net"] += t1 - t
            out["instances"] += t2 - t1
            out["measurements"] += t3 - t2
    finally:
        torch.set_num_threads(before)
    return {k: v / max(n, 1) for k, v in out.items()}


def naive_measure(labels: np.ndarray, frame: np.ndarray, t: int) -> list[dict[str, Any]]:
    """One dict per object from ``skimage.measure.regionprops``, object by object."""
    from skimage.measure import regionprops

    rows = []
    h, w = labels.shape
    for r in regionprops(labels, intensity_image=frame):
        y0, x0, y1, x1 = r.bbox
        rows.append(
            {
                "frame": t,
                "label": r.label,
                "y": r.centroid[0],
                "x": r.centroid[1],
                "area_px": r.area,
                "equivalent_diameter_px": r.equivalent_diameter_area,
                "perimeter_px": r.perimeter,
                "major_axis_px": r.axis_major_length,
                "minor_axis_px": r.axis_minor_length,
                "eccentricity": r.eccentricity,
                "solidity": r.solidity,
                "orientation": r.orientation,
                "mean_intensity": r.intensity_mean,
                "max_intensity": r.intensity_max,
                "touches_border": y0 == 0 or x0 == 0 or y1 == h or x1 == w,
            }
        )
    return rows


def run_naive(frames: np.ndarray, pixel_size_um: float, threads: int | None) -> dict[str, Any]:
    """The same steps done the straightforward way, one frame after the other."""
    import pandas as pd
    import torch

    from microseg.instances import nuclei_instances
    from microseg.segmenter import load_segmenter
    from microseg.tracking import track_objects

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = load_segmenter("builtin:nuclei")
    t_load = time.perf_counter() - t0
    net = model.net.eval()  # as trained: BatchNorm not folded, NCHW
    rss0 = _reset_peak()
    cpu0 = _cpu_s()
    stages: dict[str, float] = {}

    def clock(key: str, t: float) -> None:
        stages[key] = stages.get(key, 0.0) + time.perf_counter() - t

    t0 = time.perf_counter()
    t = time.perf_counter()
    stack = np.asarray(frames, dtype=np.float64)  # float64 copy of the whole stack
    lo = np.percentile(stack, 1.0, axis=(1, 2), keepdims=True)
    hi = np.percentile(stack, 99.8, axis=(1, 2), keepdims=True)
    norm = (stack - lo) / np.maximum(hi - lo, 1e-12)
    clock("normalise the stack (float64)", t)
    n, h, w = norm.shape
    m = net.config.multiple
    ph, pw = -(-h // m) * m, -(-w // m) * m
    labels, rows = [], []
    for i in range(n):
        t = time.perf_counter()
        x = np.pad(norm[i], ((0, ph - h), (0, pw - w)), mode="reflect").astype(np.float32)
        with torch.no_grad():
            proba = torch.softmax(net(torch.from_numpy(x)[None, None]), 1)[0, :, :h, :w].numpy()
        clock("U-Net (forward, untiled)", t)
        t = time.perf_counter()
        lab = nuclei_instances(proba, model.classes)
        clock("instances (watershed)", t)
        t = time.perf_counter()
        rows += naive_measure(lab, frames[i], i)
        clock("measurements (regionprops loop)", t)
        labels.append(lab.astype(np.int32))
    t = time.perf_counter()
    table = pd.DataFrame(rows)
    table["area_um2"] = table["area_px"] * pixel_size_um**2
    tracks = track_objects(table)
    relabelled = tracks.relabel(np.stack(labels))
    clock("tracking", t)
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    counts = table.groupby("frame").size().reindex(range(n), fill_value=0).to_numpy(np.int64)
    return {
        "name": "naive",
        "how": f"one loop, torch threads {torch.get_num_threads()}",
        "frames": n,
        "wall": wall,
        "cpu": cpu,
        "load_model": t_load,
        "stages": stages,
        "rss_before": rss0,
        "rss_peak": _rss_mb(),
        "counts": counts.tolist(),
        "labels": relabelled,
        "lineage": tracks.lineage.rename(columns={"parent": "parent_track_id"}),
        "n_tracks": tracks.n_tracks,
    }


def _child(a: argparse.Namespace) -> int:
    """Run one pipeline on the series file and write its result (``--child``)."""
    import tifffile

    frames = tifffile.memmap(a.series)
    ps = float(a.pixel_size)
    if a.child == "microseg":
        res = run_microseg(frames, ps, a.workers, a.threads)
    else:
        res = run_naive(frames, ps, a.threads)
    np.save(a.result.with_suffix(".labels.npy"), res.pop("labels"))
    lin = res.pop("lineage")
    if lin is not None:
        lin.to_csv(a.result.with_suffix(".lineage.csv"), index=False)
    a.result.write_text(json.dumps(res), encoding="utf-8")
    return 0


def run_pipeline(
    kind: str, series: Path, pixel_size_um: float, a: argparse.Namespace
) -> dict[str, Any]:
    """Run pipeline ``kind`` in a fresh process (or here with ``--in-process``)."""
    import pandas as pd

    result = series.with_name(f"{kind}.json")
    argv = [
        "--child",
        kind,
        "--series",
        str(series),
        "--result",
        str(result),
        "--pixel-size",
        str(pixel_size_um),
    ]
    if a.workers:
        argv += ["--workers", str(a.workers)]
    threads = a.naive_threads if kind == "naive" else a.threads
    if threads:
        argv += ["--threads", str(threads)]
    if a.in_process:
        rc = main(argv)
    else:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), *argv], capture_output=True, text=True
        )
        rc = proc.returncode
        if rc != 0:
            raise RuntimeError(f"{kind} pipeline failed:\n{proc.stderr[-3000:]}")
    if rc != 0:
        raise RuntimeError(f"{kind} pipeline failed")
    res = json.loads(result.read_text(encoding="utf-8"))
    res["labels"] = np.load(result.with_suffix(".labels.npy"))
    lin = result.with_suffix(".lineage.csv")
    res["lineage"] = pd.read_csv(lin) if lin.is_file() else None
    return res


# ------------------------------------------------------------------ figures
def count_errors(counts: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Relative per-frame count error: max, mean, frames above 5 %."""
    err = np.abs(np.asarray(counts, float) - truth) / np.maximum(truth, 1)
    return {
        "max": float(err.max()),
        "mean": float(err.mean()),
        "over5": int((err > 0.05).sum()),
        "worst_frame": int(err.argmax()),
    }


def otsu_counts(frames: np.ndarray) -> tuple[np.ndarray, float]:
    """Objects per frame from Otsu + distance-transform watershed, and seconds taken."""
    from microseg.instances import otsu_watershed

    t = time.perf_counter()
    counts = np.array([int(otsu_watershed(f).max()) for f in frames])
    return counts, time.perf_counter() - t


def _links(series, res: dict[str, Any]) -> str:
    """Link recovery of a pipeline's tracks against the exact synthetic tracks."""
    import pandas as pd

    from microseg.tracking import link_recovery

    if res.get("lineage") is None:
        return "-"
    gt = pd.DataFrame(
        {
            "track_id": series.tracks["track_id"],
            "start": series.tracks["start_frame"],
            "end": series.tracks["end_frame"],
            "parent": series.tracks["parent_track_id"],
        }
    )
    s = link_recovery(series.labels, gt, res["labels"], res["lineage"])
    return (
        f"{s.fraction:.3f} ({s.n_recovered}/{s.n_gt_links}, "
        f"divisions {s.division_recovered}/{s.division_links})"
    )


def _ap(series, res: dict[str, Any], step: int) -> float:
    from microseg.metrics import combine_matches, match_instances

    idx = range(0, len(series.labels), step)
    return combine_matches(
        [match_instances(series.labels[i], res["labels"][i], 0.5) for i in idx]
    ).ap


def bench_synth(a: argparse.Namespace, lines: list[str]) -> None:
    """Speed, memory and count robustness on the synthetic series."""
    import tifffile

    from microseg.synth import synth_nuclei_series

    t = time.perf_counter()
    s = synth_nuclei_series(n_frames=a.frames, shape=(a.size, a.size), seed=a.seed)
    t_gen = time.perf_counter() - t
    truth = s.counts.astype(float)
    with tempfile.TemporaryDirectory(prefix="bench_nuclei_") as tmp:
        path = Path(tmp) / "series.tif"
        tifffile.imwrite(path, s.frames, photometric="minisblack")
        runs = [run_pipeline("microseg", path, s.pixel_size_um, a)]
        if not a.no_naive:
            runs.append(run_pipeline("naive", path, s.pixel_size_um, a))
    o_counts, t_otsu = otsu_counts(s.frames)
    lines.append(
        f"## Synthetic series: {a.frames} frames {a.size}x{a.size} uint16, seed {a.seed} "
        f"(generated in {t_gen:.0f} s), {int(truth.min())}-{int(truth.max())} nuclei per frame, "
        f"{s.divisions} divisions, drift (0.4, 1.6) + 25 % bleaching"
    )
    lines.append(
        f"{'pipeline':<12}{'frames/s':>9}{'wall [s]':>10}{'CPU s/frame':>12}"
        f"{'peak RSS [MB]':>15}{'RSS before [MB]':>17}{'AP@0.5':>8}  how"
    )
    for r in runs:
        lines.append(
            f"{r['name']:<12}{r['frames'] / r['wall']:>9.2f}{r['wall']:>10.1f}"
            f"{r['cpu'] / r['frames']:>12.3f}{r['rss_peak']:>15.0f}{r['rss_before']:>17.0f}"
            f"{_ap(s, r, a.ap_step):>8.3f}  {r['how']}"
        )
    if len(runs) == 2:
        lines.append(
            f"speed-up microseg vs naive: {runs[1]['wall'] / runs[0]['wall']:.2f}x wall clock, "
            f"{runs[1]['cpu'] / runs[0]['cpu']:.2f}x CPU time"
        )
    fps = runs[0]["frames"] / runs[0]["wall"]
    ideal = 2.0 * runs[0]["frames"] / runs[0]["cpu"]
    lines.append(
        f"targets: >= {TARGET_FPS:.0f} frames/s on 2 cores -> "
        f"{'met' if fps >= TARGET_FPS else 'NOT met'} "
        f"at {fps:.2f} frames/s on this shared machine (its CPU time would allow at most "
        f"{ideal:.1f} frames/s on 2 idle cores); peak memory < {TARGET_MB:.0f} MB -> "
        f"{'met' if runs[0]['rss_peak'] < TARGET_MB else 'NOT met'} "
        "(peak RSS of the whole process: Python, torch, model, memory-mapped input)"
    )
    lines.append("where the time goes (seconds summed over frames; threads overlap):")
    for r in runs:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
        lines.append(f"  {r['name']}: {parts}; model load {r['load_model']:.1f}")
        lines.append(
            f"  {r['name']}: per frame "
            + ", ".join(
                f"{k.split(' (')[0]} {1000 * v / r['frames']:.0f} ms"
                for k, v in r["stages"].items()
            )
        )
    for r in runs:
        if r.get("single"):
            one = r["single"]
            track = r["stages"]["tracking + tables (after the last frame)"] / r["frames"]
            total = sum(one.values()) + track
            lines.append(
                f"  {r['name']}, one thread, first 10 frames: "
                + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in one.items())
                + f", tracking {1000 * track:.0f} ms -> {total * 1000:.0f} ms per frame = "
                f"{1 / total:.1f} frames/s per core"
            )
    lines.append("tracking vs the exact tracks (link_recovery, full masks as markers):")
    for r in runs:
        lines.append(f"  {r['name']}: {r['n_tracks']} tracks, links recovered {_links(s, r)}")
    lines.append("count robustness: |count - true| / true per frame")
    lines.append(f"{'labels from':<26}{'max':>8}{'mean':>8}{'frames > 5 %':>14}{'worst frame':>13}")
    rows = [(r["name"], np.asarray(r["counts"])) for r in runs]
    rows.append(("Otsu + DT watershed", o_counts))
    for name, c in rows:
        e = count_errors(c, truth)
        w = e["worst_frame"]
        lines.append(
            f"{name:<26}{e['max']:>8.3f}{e['mean']:>8.3f}{e['over5']:>9d}/{len(truth):<4d}"
            f"{w:>6d} ({int(c[w])} vs {int(truth[w])})"
        )
    lines.append(f"(Otsu + watershed counts took {t_otsu:.1f} s)")
    lines.append(
        "counts over time (every 10th frame) true / microseg / Otsu: "
        + " ".join(
            f"{i}:{int(truth[i])}/{int(rows[0][1][i])}/{int(o_counts[i])}"
            for i in range(0, len(truth), 10)
        )
    )


# ------------------------------------------------------------------ cancer cell migration
def _plot_png(path: Path, series: dict[str, np.ndarray], title: str) -> bool:
    """A small line plot of counts per frame with Pillow; False when Pillow is absent."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return False
    w, h, ml, mr, mt, mb = 720, 400, 60, 170, 40, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    n = max(len(v) for v in series.values())
    top = max(float(np.max(v)) for v in series.values()) * 1.1 or 1.0

    def xy(i: float, v: float) -> tuple[float, float]:
        return (
            ml + (w - ml - mr) * i / max(n - 1, 1),
            h - mb - (h - mt - mb) * v / top,
        )

    d.rectangle([ml, mt, w - mr, h - mb], outline="black")
    for k in range(6):
        v = top * k / 5
        y = xy(0, v)[1]
        d.line([ml - 4, y, ml, y], fill="black")
        d.text((8, y - 6), f"{v:.0f}", fill="black")
    for i in range(0, n, max(1, n // 8)):
        x = xy(i, 0)[0]
        d.line([x, h - mb, x, h - mb + 4], fill="black")
        d.text((x - 6, h - mb + 8), str(i), fill="black")
    d.text((ml, 12), title, fill="black")
    d.text(((w - mr + ml) // 2 - 20, h - 20), "frame", fill="black")
    d.text((8, mt - 20), "count", fill="black")
    colours = ["#1f77b4", "#d62728", "#2ca02c"]
    for k, (name, v) in enumerate(series.items()):
        pts = [xy(i, float(c)) for i, c in enumerate(v)]
        d.line(pts, fill=colours[k % 3], width=2)
        for p in pts:
            d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colours[k % 3])
        d.line(
            [w - mr + 10, mt + 10 + 18 * k, w - mr + 30, mt + 10 + 18 * k],
            fill=colours[k % 3],
            width=2,
        )
        d.text((w - mr + 34, mt + 4 + 18 * k), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return True


def bench_cancer(a: argparse.Namespace, lines: list[str], data: Path) -> None:
    """Counts per frame of the cancer cell migration crop (no ground truth)."""
    import pandas as pd

    from microseg.io import read_image
    from microseg.nuclei import (
        FrameMeasurer,
        FrameSegmenter,
        default_workers,
        run_nuclei,
    )
    from microseg.segmenter import load_segmenter

    path = data / "timelapse" / "cancer_cell_migration" / "cancer_cell_migration_crop.tif"
    image = read_image(path)
    if a.cancer_frames:
        image.data = image.data[: a.cancer_frames]
    model = load_segmenter("builtin:nuclei")
    t = time.perf_counter()
    workers = a.workers or default_workers()
    run = run_nuclei(
        image, FrameSegmenter(model), FrameMeasurer(image.pixel_size_um), workers=workers
    )
    secs = time.perf_counter() - t
    frames = np.stack([image.frame(i) for i in range(image.n_frames)])
    counts = run.frames["count"].to_numpy(np.int64)
    o_counts, _ = otsu_counts(frames)
    diam = [
        model.estimate_object_diameter(model.predict_proba(frames[i]))
        for i in (0, len(frames) // 2, len(frames) - 1)
    ]
    means = frames.reshape(len(frames), -1).mean(axis=1)
    table = pd.DataFrame(
        {
            "frame": np.arange(len(counts)),
            "count_microseg": counts,
            "count_otsu_watershed": o_counts,
            "mean_frame_intensity": means,
        }
    )
    csv = a.cancer_csv or RESULTS / f"cancer_cell_migration_counts_{DATE}.csv"
    png = a.cancer_png or RESULTS / f"cancer_cell_migration_counts_{DATE}.png"
    csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    drew = _plot_png(
        png,
        {"builtin:nuclei": counts, "Otsu + watershed": o_counts},
        "cancer_cell_migration: nuclei per frame (no ground truth)",
    )
    c = counts.astype(float)
    step = np.abs(np.diff(c)) / np.maximum(c[:-1], 1)
    lines.append(
        f"## cancer_cell_migration: {image.n_frames} frames "
        f"{image.shape_yx[1]}x{image.shape_yx[0]} "
        f"{image.data.dtype}, mean intensity {means.min():.0f}-{means.max():.0f} over frames "
        f"(drift), no ground truth; run_nuclei, workers={workers}: {secs:.1f} s; "
        "estimated object diameter "
        + ", ".join(f"{d:.0f}" if d else "-" for d in diam)
        + f" px (frames 0, {len(frames) // 2}, {len(frames) - 1})"
    )
    lines.append(
        f"builtin:nuclei counts: min {int(c.min())}, max {int(c.max())}, "
        f"median {np.median(c):.0f}, largest frame-to-frame change {step.max():.1%}; "
        f"Otsu + watershed: min {int(o_counts.min())}, "
        f"max {int(o_counts.max())}, median {np.median(o_counts):.0f}, largest change "
        f"{(np.abs(np.diff(o_counts)) / np.maximum(o_counts[:-1], 1)).max():.1%}"
    )
    lines.append(
        "frame: microseg/Otsu " + " ".join(f"{i}:{counts[i]}/{o_counts[i]}" for i in range(len(c)))
    )
    lines.append(f"CSV {_rel(csv)}" + (f", plot {_rel(png)}" if drew else " (no Pillow: no plot)"))


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one pipeline in this process)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="synth,cancer")
    ap.add_argument("--frames", type=int, default=170)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="pipeline workers (default: CLI's)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads, microseg pipeline")
    ap.add_argument("--naive-threads", type=int, default=None, help="torch threads, naive loop")
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--ap-step", type=int, default=10, help="AP@0.5 on every k-th frame")
    ap.add_argument("--in-process", action="store_true", help="no fresh processes (smoke runs)")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the report to this file")
    ap.add_argument("--cancer-frames", type=int, default=0, help="first N frames (0 = all)")
    ap.add_argument("--cancer-csv", type=Path, default=None)
    ap.add_argument("--cancer-png", type=Path, default=None)
    ap.add_argument("--child", choices=("microseg", "naive"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--series", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--pixel-size", type=float, default=0.65, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return _child(a)
    import torch

    acc = _bench_acc()
    data = a.data or acc.default_data()
    t_all = time.perf_counter()
    lines = [
        "$ python benchmarks/bench_nuclei_series.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "builtin:nuclei time series: microseg CLI pipeline vs the same steps done naively, same run"
        + ("" if not a.in_process else " (in one process: memory figures are cumulative)"),
        f"{acc.machine_line()}; torch default threads {torch.get_num_threads()}",
        f"model builtin:nuclei, {acc.weights_line()}",
        "",
    ]
    print("\n".join(lines), flush=True)
    for s in [x.strip() for x in a.sections.split(",") if x.strip()]:
        part: list[str] = []
        t0 = time.perf_counter()
        if s == "synth":
            bench_synth(a, part)
        elif s == "cancer":
            if not data.is_dir():
                part.append(f"## cancer_cell_migration: skipped, {data} is absent")
            else:
                bench_cancer(a, part, data)
        else:
            raise SystemExit(f"Unknown section '{s}'; use synth or cancer.")
        part += [f"({s}: {time.perf_counter() - t0:.0f} s)", ""]
        print("\n".join(part), flush=True)
        lines += part
    acc.finish_report(lines, t_all, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
