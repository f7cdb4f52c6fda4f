"""Time series: stream frames through a segmenter and collect labels and tables.

Frames are read one at a time in their stored dtype (no float copy of the
whole stack); the label stack is preallocated (uint16, widened to uint32 only
when a frame holds more than 65535 objects). A run can be stopped between
frames and keeps every frame finished so far. The same per-frame step runs
in threads (:func:`process_series`) or on a Dask cluster
(:func:`process_series_dask`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.preprocess import normalize_percentile

SegmentFn = Callable[[np.ndarray], np.ndarray]
MeasureFn = Callable[[np.ndarray, np.ndarray], pd.DataFrame]
ProgressFn = Callable[[int, int], None]

SUMMARY_COLUMNS = ["frame", "count", "mean_area_px", "total_area_px", "mean_intensity"]


@dataclass
class SeriesResult:
    """What a time-series run produced.

    Attributes
    ----------
    labels : ndarray
        ``(n_done, Y, X)`` instance labels (uint16, or uint32 when a frame holds
        more than 65535 objects); ids are unique per frame.
    tables : DataFrame
        One row per object with a ``frame`` column (0-based) first.
    frames : DataFrame
        One row per finished frame: ``frame, count, mean_area_px, total_area_px,
        mean_intensity`` (plus means of ``area_um2`` when measured).
    stopped : bool
        True when the run was stopped before the last frame.
    n_done : int
        Number of finished frames (always the first ``n_done`` frames).
    n_total : int
        Number of frames in the series.
    """

    labels: np.ndarray
    tables: pd.DataFrame
    frames: pd.DataFrame
    stopped: bool
    n_done: int
    n_total: int = 0
    params: dict[str, Any] = field(default_factory=dict)


def normalize_frame(frame: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Scale one frame on its own (percentiles ``low``/``high`` to 0/1).

    Same as :func:`microseg.preprocess.normalize_percentile`; returns float32
    ``(C, Y, X)``. Segmenters normalise each frame themselves; this is offered for
    custom ``segment_frame`` callables.
    """
    return normalize_percentile(frame, low=low, high=high)


def _check_source(micro_image: MicroImage, channel: int | None, z: int | str) -> None:
    if not isinstance(micro_image, MicroImage):
        raise InputError("A time series must be given as a MicroImage.")
    if channel is not None and not 0 <= int(channel) < micro_image.n_channels:
        raise InputError(
            f"Channel {channel} does not exist; the image has {micro_image.n_channels} channel(s)."
        )
    if z != "max" and not 0 <= int(z) < micro_image.n_slices:
        raise InputError(
            f"Z slice {z} does not exist; the image has {micro_image.n_slices} slice(s)."
        )


def _read_frame(micro_image: MicroImage, t: int, channel: int | None, z: int | str) -> np.ndarray:
    if channel is None:
        return micro_image.frame(t, z)
    if z == "max":
        return micro_image.data[t, :, int(channel)].max(axis=0)
    return micro_image.data[t, int(z), int(channel)]


def iter_frames(
    micro_image: MicroImage, channel: int | None = None, z: int | str = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, frame)`` for every time point, one frame at a time.

    Parameters
    ----------
    micro_image : MicroImage
        The series (axes TZCYX).
    channel : int or None
        One channel as ``(Y, X)``; ``None`` gives all channels (``(Y, X)`` when there
        is one, else ``(C, Y, X)``).
    z : int or "max"
        Z slice, or ``"max"`` for a maximum-intensity projection.

    Yields
    ------
    (int, ndarray)
        Frame index and the frame in the stored dtype (a view where possible).
    """
    _check_source(micro_image, channel, z)
    for t in range(micro_image.n_frames):
        yield t, _read_frame(micro_image, t, channel, z)


def _as_labels(labels: Any, shape: tuple[int, int]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != shape:
        raise ValueError(f"segment_frame returned shape {labels.shape}, expected {shape}.")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"segment_frame returned {labels.dtype} instead of integer labels.")
    return labels


def _default_measure(labels: np.ndarray, frame: np.ndarray) -> pd.DataFrame:
    """Label, centroid, area and mean intensity of every object (bincount, no loops)."""
    flat = labels.ravel().astype(np.intp, copy=False)
    n = int(flat.max()) + 1 if flat.size else 1
    area = np.bincount(flat, minlength=n)
    ids = np.flatnonzero(area)
    ids = ids[ids > 0]
    yy, xx = np.indices(labels.shape, dtype=np.float32)
    a = area[ids].astype(np.float64)
    table = {
        "label": ids.astype(np.int64),
        "y": np.bincount(flat, weights=yy.ravel(), minlength=n)[ids] / a,
        "x": np.bincount(flat, weights=xx.ravel(), minlength=n)[ids] / a,
        "area_px": area[ids].astype(np.int64),
    }
    chans = frame[None] if frame.ndim == 2 else frame
    for c, ch in enumerate(chans):
        mean = np.bincount(flat, weights=ch.ravel().astype(np.float32), minlength=n)[ids] / a
        table["mean_intensity" if c == 0 else f"mean_intensity_{c}"] = mean
    return pd.DataFrame(table)


def _summary_row(t: int, labels: np.ndarray, table: pd.DataFrame) -> dict[str, Any]:
    if "area_px" in table.columns:
        areas = table["area_px"].to_numpy(np.float64)
    else:
        counts = np.bincount(labels.ravel().astype(np.intp, copy=False))
        areas = counts[1:][counts[1:] > 0].astype(np.float64)
    count = int(len(table)) if "label" in table.columns else int(areas.size)
    row: dict[str, Any] = {
        "frame": t,
        "count": count,
        "mean_area_px": float(areas.mean()) if areas.size else np.nan,
        "total_area_px": float(areas.sum()),
        "mean_intensity": (
            float(table["mean_intensity"].mean())
            if "mean_intensity" in table.columns and len(table)
            else np.nan
        ),
    }
    if "area_um2" in table.columns:
        row["mean_area_um2"] = float(table["area_um2"].mean()) if len(table) else np.nan
    return row


def process_frame(
    frame: np.ndarray, segment_frame: SegmentFn, measure_frame: MeasureFn | None = None
) -> tuple[np.ndarray, pd.DataFrame]:
    """Segment and measure one frame; the step every runner (threads, Dask) shares.

    Parameters
    ----------
    frame : ndarray
        ``(Y, X)`` or ``(C, Y, X)`` in any dtype.
    segment_frame : callable
        ``frame -> (Y, X)`` integer instance labels (0 = background).
    measure_frame : callable or None
        ``(labels, frame) -> DataFrame`` with one row per object; ``None`` measures
        label, centroid ``y, x``, ``area_px`` and ``mean_intensity``.

    Returns
    -------
    (ndarray, DataFrame)
        Labels and the frame's table.
    """
    shape = tuple(frame.shape[-2:])
    labels = _as_labels(segment_frame(frame), shape)  # type: ignore[arg-type]
    measure = measure_frame or _default_measure
    table = measure(labels, frame)
    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame(table)
    return labels, table


class _Collector:
    """Writes finished frames into a preallocated stack and gathers tables."""

    def __init__(self, n_total: int, shape: tuple[int, int] | None) -> None:
        self.n_total = n_total
        self.labels: np.ndarray | None = None
        if shape is not None:
            self.labels = np.zeros((n_total, *shape), np.uint16)
        self.tables: dict[int, pd.DataFrame] = {}
        self.rows: dict[int, dict[str, Any]] = {}

    def add(self, t: int, labels: np.ndarray, table: pd.DataFrame) -> None:
        if self.labels is None:
            self.labels = np.zeros((self.n_total, *labels.shape), np.uint16)
        if labels.shape != self.labels.shape[1:]:
            raise InputError(
                f"Frame {t} is {labels.shape[1]}x{labels.shape[0]} pixels but earlier frames "
                f"are {self.labels.shape[2]}x{self.labels.shape[1]}."
            )
        top = int(labels.max()) if labels.size else 0
        if top > np.iinfo(self.labels.dtype).max:
            self.labels = self.labels.astype(np.uint32)
        self.labels[t] = labels
        table = table.copy()
        if "frame" in table.columns:
            table = table.drop(columns="frame")
        table.insert(0, "frame", t)
        self.tables[t] = table
        self.rows[t] = _summary_row(t, labels, table)

    def result(self, n_done: int, stopped: bool, params: dict[str, Any]) -> SeriesResult:
        stopped = stopped and n_done < self.n_total
        labels = self.labels if self.labels is not None else np.zeros((0, 0, 0), np.uint16)
        labels = labels[:n_done]
        if n_done < self.n_total:
            labels = labels.copy()  # release the unused part of the preallocation
        done = range(n_done)
        tables = [self.tables[t] for t in done if len(self.tables[t])]
        table = (
            pd.concat(tables, ignore_index=True)
            if tables
            else pd.DataFrame({"frame": pd.Series(dtype=np.int64)})
        )
        frames = pd.DataFrame([self.rows[t] for t in done])
        if frames.empty:
            frames = pd.DataFrame(columns=SUMMARY_COLUMNS)
        return SeriesResult(labels, table, frames, stopped, n_done, self.n_total, params)


def process_series(
    micro_image: MicroImage,
    segment_frame: SegmentFn,
    measure_frame: MeasureFn | None = None,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    workers: int = 1,
    channel: int | None = None,
    z: int | str = 0,
) -> SeriesResult:
    """Segment and measure every frame of a series, streaming one frame at a time.

    Parameters
    ----------
    micro_image : MicroImage
        The series.
    segment_frame : callable
        ``frame -> (Y, X)`` integer labels; it normalises the frame itself
        (see :func:`normalize_frame`).
    measure_frame : callable or None
        ``(labels, frame) -> DataFrame``, one row per object; ``None`` measures label,
        ``y, x``, ``area_px`` and ``mean_intensity``.
    progress : callable or None
        Called as ``progress(done, total)`` after each frame.
    stop : threading.Event or None
        When set, no new frame starts; frames already started finish and are kept.
    workers : int
        Frames processed at once in threads (at most ``2 * workers`` frames are held).
    channel, z
        Which channel and slice to pass (see :func:`iter_frames`).

    Returns
    -------
    SeriesResult
        Labels, object table, per-frame summary, and whether the run was stopped.
    """
    _check_source(micro_image, channel, z)
    n_total = micro_image.n_frames
    coll = _Collector(n_total, micro_image.shape_yx)
    params = {"channel": channel, "z": z, "workers": int(workers)}
    n_done = 0
    stopped = False
    if workers <= 1:
        for t, frame in iter_frames(micro_image, channel, z):
            if stop is not None and stop.is_set():
                stopped = True
                break
            coll.add(t, *process_frame(frame, segment_frame, measure_frame))
            n_done += 1
            if progress is not None:
                progress(n_done, n_total)
        return coll.result(n_done, stopped, params)

    window = 2 * int(workers)
    pending: deque[tuple[int, Future]] = deque()
    with ThreadPoolExecutor(max_workers=int(workers)) as pool:
        frames = iter_frames(micro_image, channel, z)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                if stop is not None and stop.is_set():
                    stopped = True
                    exhausted = True
                    break
                item = next(frames, None)
                if item is None:
                    exhausted = True
                    break
                t, frame = item
                pending.append((t, pool.submit(process_frame, frame, segment_frame, measure_frame)))
            if not pending:
                break
            t, fut = pending.popleft()
            coll.add(t, *fut.result())
            n_done += 1
            if progress is not None:
                progress(n_done, n_total)
    return coll.result(n_done, stopped, params)


def replace_frames(
    result: SeriesResult,
    labels: np.ndarray,
    frames: Sequence[int],
    micro_image: MicroImage,
    measure_frame: MeasureFn | None = None,
    channel: int | None = None,
    z: int | str = 0,
) -> SeriesResult:
    """A copy of ``result`` with new ``labels`` whose ``frames`` are measured again.

    Parameters
    ----------
    result : SeriesResult
        A finished run.
    labels : ndarray
        ``(n_done, Y, X)`` corrected labels (only ``frames`` differ from the result's).
    frames : sequence of int
        Frames to measure again (their pixels are read from ``micro_image``).
    micro_image, measure_frame, channel, z
        As given to :func:`process_series`.

    Returns
    -------
    SeriesResult
        Same run, with these frames' labels, table rows and summary rows replaced.
    """
    if labels.shape != result.labels.shape:
        raise InputError(f"Labels {labels.shape} do not match the run's {result.labels.shape}.")
    measure = measure_frame or _default_measure
    changed = sorted({int(t) for t in frames})
    tables = result.tables
    keep = tables[~tables["frame"].isin(changed)] if "frame" in tables else tables
    parts = [keep]
    rows = {int(r["frame"]): r for r in result.frames.to_dict("records")}
    for t in changed:
        table = measure(labels[t], _read_frame(micro_image, t, channel, z))
        table = table.drop(columns="frame") if "frame" in table.columns else table
        table.insert(0, "frame", t)
        parts.append(table)
        rows[t] = _summary_row(t, labels[t], table)
    non_empty = [p for p in parts if len(p)]
    table = pd.concat(non_empty, ignore_index=True) if non_empty else keep
    if len(table) and "label" in table.columns:
        table = table.sort_values(["frame", "label"], kind="stable").reset_index(drop=True)
    summary = pd.DataFrame([rows[t] for t in sorted(rows)]) if rows else result.frames
    return SeriesResult(
        labels,
        table,
        summary,
        result.stopped,
        result.n_done,
        result.n_total,
        dict(result.params),
    )


# --------------------------------------------------------------------------- Dask


def read_frame_file(path: str | Path) -> np.ndarray:
    """Read one frame from an image file (TIFF via tifffile, others via imageio)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file.")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    from skimage.io import imread

    return np.asarray(imread(path))


def _process_path(
    path: str, reader: Callable[[str], np.ndarray], segment_frame, measure_frame
) -> tuple[np.ndarray, pd.DataFrame]:
    return process_frame(reader(path), segment_frame, measure_frame)


def process_series_dask(
    source: MicroImage | Sequence[str | Path] | Sequence[np.ndarray] | np.ndarray,
    segment_frame: SegmentFn,
    measure_frame: MeasureFn | None = None,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    scheduler_address: str | None = None,
    n_workers: int = 2,
    channel: int | None = None,
    z: int | str = 0,
    reader: Callable[[str], np.ndarray] | None = None,
) -> SeriesResult:
    """Run :func:`process_frame` for every frame on a Dask cluster.

    Parameters
    ----------
    source : MicroImage, sequence of paths, sequence of frames or ``(T, Y, X)`` array
        Paths are read on the workers (one frame per file); frames are sent to them.
    segment_frame, measure_frame, progress, stop
        As in :func:`process_series`; the callables must be picklable (defined at
        module level).
    scheduler_address : str or None
        ``tcp://HOST:PORT`` of a running scheduler; ``None`` starts a local cluster
        on the loopback interface (``n_workers`` processes, one thread each) and
        closes it afterwards.
    n_workers : int
        Workers of the local cluster.
    channel, z
        Which channel and slice of a MicroImage to send.
    reader : callable or None
        ``path -> frame`` used on the workers; default :func:`read_frame_file`.

    Returns
    -------
    SeriesResult
        As :func:`process_series`; ``labels`` has the same content.
    """
    from distributed import Client, LocalCluster

    if isinstance(source, MicroImage):
        _check_source(source, channel, z)
        n_total = source.n_frames
        shape: tuple[int, int] | None = source.shape_yx
        kind = "image"
    else:
        items = list(source) if not isinstance(source, np.ndarray) else source
        n_total = len(items)
        kind = "paths" if n_total and isinstance(items[0], (str, Path)) else "frames"
        shape = None
    params = {"channel": channel, "z": z, "scheduler": scheduler_address or "local"}

    cluster = None
    if scheduler_address is None:
        cluster = LocalCluster(
            n_workers=int(n_workers),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler_address, timeout=10)
        except OSError as exc:
            raise InputError(f"No Dask scheduler answers at {scheduler_address}.") from exc
    coll = _Collector(n_total, shape)
    n_done = 0
    stopped = False
    try:
        n_slots = max(1, sum(client.nthreads().values()))
        window = 2 * n_slots
        pending: deque[tuple[int, Any]] = deque()
        t_next = 0
        while True:
            while t_next < n_total and len(pending) < window:
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                if kind == "image":
                    frame = _read_frame(source, t_next, channel, z)  # type: ignore[arg-type]
                    fut = client.submit(
                        process_frame, frame, segment_frame, measure_frame, pure=False
                    )
                elif kind == "paths":
                    fut = client.submit(
                        _process_path,
                        str(items[t_next]),
                        reader or read_frame_file,
                        segment_frame,
                        measure_frame,
                        pure=False,
                    )
                else:
                    fut = client.submit(
                        process_frame,
                        np.asarray(items[t_next]),
                        segment_frame,
                        measure_frame,
                        pure=False,
                    )
                pending.append((t_next, fut))
                t_next += 1
            if not pending:
                break
            t, fut = pending.popleft()
            coll.add(t, *fut.result())
            n_done += 1
            if progress is not None:
                progress(n_done, n_total)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return coll.result(n_done, stopped, params)
