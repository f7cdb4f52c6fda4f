"""Nuclei pipeline: frames -> instances -> measurements -> tracks.

:class:`FrameSegmenter` turns one frame into instance labels (model
probabilities, then seeded watershed) and :class:`FrameMeasurer` turns labels and
pixels into the frame's object table; both are picklable module-level classes, so
Dask workers can run them. :func:`run_nuclei` runs them over every frame and
slice of an image, links frames into tracks and gathers the tables as a
:class:`NucleiRun`. The app, ``microseg nuclei``, ``microseg batch`` and the
benchmarks share this module.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.segmenter import Segmenter
from microseg.timeseries import SeriesResult

if TYPE_CHECKING:
    from microseg.regions import RegionImage
    from microseg.tiled_objects import TiledObjects

#: h-maxima height that keeps one seed per connected foreground region (no splitting)
_NO_SPLIT_H = 1e9

#: columns every object table starts with (GUIDE §2)
FIRST_COLUMNS = [
    "frame",
    "label",
    "y",
    "x",
    "area_px",
    "area_um2",
    "mean_intensity",
    "touches_border",
]


class FrameSegmenter:
    """One frame to nuclei instance labels: model probabilities, then seeded watershed.

    Picklable (a module-level class), so Dask workers can run it.

    Parameters
    ----------
    model : Segmenter
        A nuclei model (classes with a "nucleus" channel; "border" when it has one).
    channel : int or None
        Channel passed to the model for a ``(C, Y, X)`` frame; ``None`` passes all.
    min_area_px : int or None
        Objects smaller than this are removed as debris; ``None`` estimates it
        from the typical nucleus size.
    split_touching : bool
        Split touching nuclei (seeded watershed); ``False`` keeps one object per
        connected foreground region.
    augment : bool
        Test-time augmentation of a deep-learning model (mean over the eight flips
        and quarter turns; 8x slower). Refused for other models.
    object_diameter_px : float, "auto" or None
        Typical nucleus diameter in the input: the frame is rescaled so that nuclei
        have the size the model was trained at. ``"auto"`` (default): measured in a
        first prediction, and applied when it differs from the training size by more
        than 1.5x, for models that record that size (others run as they are);
        ``None``: no rescaling; a number needs a model that records its size.
    threshold : float or None
        Foreground probability threshold of the instances; ``None``: the one the
        model records (chosen on validation images, see :mod:`microseg.thresholds`),
        else 0.5.
    h_fraction : float or None
        Split depth: touching nuclei are cut at a neck only where the neck is
        narrower than both sides by this fraction of the typical nucleus radius
        (higher: fewer splits); ``None``: the one the model records, else
        :data:`~microseg.instances.H_FRACTION`.
    """

    def __init__(
        self,
        model: Segmenter,
        channel: int | None = None,
        min_area_px: int | None = None,
        split_touching: bool = True,
        augment: bool = False,
        object_diameter_px: float | str | None = "auto",
        threshold: float | None = None,
        h_fraction: float | None = None,
    ) -> None:
        if augment and model.metadata.get("kind") != "unet":
            raise InputError("Test-time augmentation needs a deep-learning (U-Net) model.")
        if object_diameter_px == "auto" and not model.metadata.get("object_diameter_px"):
            object_diameter_px = None  # nothing to rescale to
        if object_diameter_px is not None:
            if not model.metadata.get("object_diameter_px"):
                raise InputError(
                    "This model records no training object size, so it cannot rescale to a "
                    "nucleus diameter; use a model that does, such as builtin:nuclei."
                )
            if object_diameter_px != "auto":
                try:
                    object_diameter_px = float(object_diameter_px)
                except (TypeError, ValueError):
                    object_diameter_px = -1.0
                if not np.isfinite(object_diameter_px) or object_diameter_px <= 0:
                    raise InputError("The nucleus diameter must be a positive number of pixels.")
        self.model = model
        self.channel = channel
        self.min_area_px = int(min_area_px) if min_area_px else None
        self.split_touching = bool(split_touching)
        self.augment = bool(augment)
        self.object_diameter_px = object_diameter_px
        if threshold is not None and not 0.0 < float(threshold) < 1.0:
            raise InputError("The foreground threshold must lie between 0 and 1.")
        from microseg.thresholds import instance_settings

        self.instance_params = instance_settings(model.metadata)
        if threshold is not None:
            self.instance_params["threshold"] = float(threshold)
        if h_fraction is not None:
            if not 0.0 < float(h_fraction) <= 1.0:
                raise InputError(
                    "The split depth must lie between 0 and 1 (a fraction of the radius)."
                )
            self.instance_params["h_fraction"] = float(h_fraction)

    def with_diameter(self, object_diameter_px: float | str | None) -> FrameSegmenter:
        """A copy that rescales by ``object_diameter_px`` (see the class parameters)."""
        other = copy.copy(self)
        other.instance_params = dict(self.instance_params)
        other.object_diameter_px = object_diameter_px
        return other

    def model_input(self, frame: np.ndarray) -> np.ndarray:
        """The part of ``frame`` the model sees (one channel or all)."""
        frame = np.asarray(frame)
        if self.channel is None or frame.ndim == 2:
            return frame
        if not 0 <= int(self.channel) < frame.shape[0]:
            raise InputError(
                f"Channel {self.channel} does not exist; the image has {frame.shape[0]} channel(s)."
            )
        return frame[int(self.channel)]

    def network_zoom(self, labels: np.ndarray) -> float:
        """The zoom at which the network saw a frame whose nuclei came out as ``labels``
        (1: as it is), for measuring the frame as the network saw it."""
        ref = self.model.metadata.get("object_diameter_px")
        if self.object_diameter_px is None or not ref:
            return 1.0
        if self.object_diameter_px != "auto":
            return float(ref) / float(self.object_diameter_px)
        fg = np.asarray(labels) > 0
        d = self.model.estimate_object_diameter(np.stack([~fg, fg]).astype(np.float32))
        return self.model.auto_zoom(d)

    def probabilities(self, frame: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities ``(K, Y, X)`` of ``frame`` (normalised by the model;
        ``reference``: the whole image's percentile sample when ``frame`` is a window)."""
        x = self.model_input(frame)
        kw: dict[str, Any] = {}
        if reference is not None:
            ref = np.asarray(reference)
            if self.channel is not None and np.asarray(frame).ndim == 3:
                ref = ref[int(self.channel) : int(self.channel) + 1]
            kw["reference"] = ref
        if self.augment:
            kw["augment"] = True
        if self.object_diameter_px is not None:
            kw["object_diameter_px"] = self.object_diameter_px
        return np.asarray(self.model.predict_proba(x, **kw), np.float32)

    def instances(self, proba: np.ndarray) -> np.ndarray:
        """Instance labels from class probabilities."""
        from microseg.instances import nuclei_instances

        chosen = self.instance_params
        if self.split_touching:
            return nuclei_instances(
                proba,
                self.model.classes,
                threshold=chosen["threshold"],
                min_area_px=self.min_area_px,
                h_fraction=chosen["h_fraction"],
            )
        return nuclei_instances(
            proba,
            self.model.classes,
            threshold=chosen["threshold"],
            min_area_px=self.min_area_px,
            seeds="distance",
            h=_NO_SPLIT_H,
        )

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.instances(self.probabilities(frame))

    def settings(self) -> dict[str, Any]:
        """The parameters, for provenance."""
        return {
            "channel": self.channel,
            "min_area_px": self.min_area_px if self.min_area_px else "auto",
            "split_touching": self.split_touching,
            "test_time_augmentation": self.augment,
            "object_diameter_px": self.object_diameter_px,
            "model_object_diameter_px": self.model.metadata.get("object_diameter_px"),
            "instance_settings": dict(self.instance_params),
        }


class FrameMeasurer:
    """One frame's labels and pixels to its object table (picklable).

    Parameters
    ----------
    pixel_size_um : float or None
        Pixel size; ``area_um2`` (and the other µm columns) stay empty without it.
    """

    def __init__(self, pixel_size_um: float | None = None) -> None:
        self.pixel_size_um = float(pixel_size_um) if pixel_size_um else None

    def __call__(self, labels: np.ndarray, frame: np.ndarray) -> pd.DataFrame:
        return measure_nuclei(labels, frame, self.pixel_size_um)


def measure_nuclei(
    labels: np.ndarray, frame: np.ndarray, pixel_size_um: float | None = None
) -> pd.DataFrame:
    """Per-nucleus table of one frame, ``FIRST_COLUMNS`` first (without ``frame``).

    Parameters
    ----------
    labels : ndarray
        ``(Y, X)`` instance labels.
    frame : ndarray
        ``(Y, X)`` or ``(C, Y, X)`` pixels (intensities are measured per channel).
    pixel_size_um : float or None
        Pixel size in µm.

    Returns
    -------
    DataFrame
        One row per object.
    """
    from microseg.measure import object_table

    table = object_table(labels, frame, pixel_size_um=pixel_size_um)
    return order_columns(table)


def order_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Put :data:`FIRST_COLUMNS` first (adding an empty ``area_um2`` when missing)."""
    table = table.copy()
    if "area_um2" not in table.columns:
        table["area_um2"] = np.nan
    first = [c for c in FIRST_COLUMNS if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


def empty_objects() -> pd.DataFrame:
    """An object table without rows (the :data:`FIRST_COLUMNS`)."""
    return pd.DataFrame({c: pd.Series(dtype=float) for c in FIRST_COLUMNS})


def frame_table(table: pd.DataFrame, frames: Iterable[int]) -> pd.DataFrame:
    """One row per frame of ``frames``: count, mean/total area, mean intensity.

    Frames without objects get a count of 0 (means are then empty).
    """
    index = pd.Index(np.asarray(list(frames), np.int64), name="frame")
    g = table.groupby("frame")
    out = pd.DataFrame(index=index)
    out["count"] = g.size().reindex(index, fill_value=0).astype(np.int64)
    for column, name, how in (
        ("area_px", "mean_area_px", "mean"),
        ("area_um2", "mean_area_um2", "mean"),
        ("area_px", "total_area_px", "sum"),
        ("mean_intensity", "mean_intensity", "mean"),
    ):
        if column in table.columns:
            out[name] = getattr(g[column], how)().reindex(index).astype(float)
    if "total_area_px" in out.columns:
        out["total_area_px"] = out["total_area_px"].fillna(0.0)
    return out.reset_index()


@dataclass
class NucleiRun:
    """Labels, tables and tracks of one image or series.

    Attributes
    ----------
    labels : ndarray
        ``(T, Z, Y, X)`` instance labels (track ids when tracked).
    objects : DataFrame
        One row per nucleus (``z`` column only for z stacks).
    frames : DataFrame
        One row per frame (and slice).
    tracks : DataFrame or None
        ``track_id, frame, label, parent_track_id, y, x`` (``z`` for z stacks).
    track_summary : DataFrame or None
        One row per track.
    stopped : bool
        True when a stop request ended the run early.
    """

    labels: np.ndarray
    objects: pd.DataFrame
    frames: pd.DataFrame
    tracks: pd.DataFrame | None = None
    track_summary: pd.DataFrame | None = None
    stopped: bool = False
    track_params: dict | None = None


def default_workers() -> int:
    """Frames processed at once: two on machines with at least two cores."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


@contextmanager
def inference_threads(workers: int) -> Iterator[None]:
    """Give torch ``cores // workers`` intra-op threads while ``workers`` frames run at once.

    With torch's default of one thread per core, frames processed in parallel
    oversubscribe the cores and every network layer waits for descheduled threads.
    Nothing changes for one worker, when torch is not loaded (no U-Net in use) or
    when fewer threads are set already; the setting is restored afterwards.
    """
    torch = sys.modules.get("torch")
    want = max(1, (os.cpu_count() or 1) // max(1, int(workers)))
    before = torch.get_num_threads() if torch is not None else 0
    if torch is None or workers <= 1 or want >= before:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def segment_image(
    image: MicroImage,
    segmenter: FrameSegmenter,
    measurer: FrameMeasurer,
    z: int | str = 0,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    workers: int = 1,
    temporal: bool = True,
) -> SeriesResult:
    """Segment and measure every frame of one slice (``z``) of ``image``.

    With ``temporal`` (and at least three frames), one-frame splits and merges are
    fixed from the frames before and after (:func:`microseg.temporal.consistent_instances`)
    and the frames that changed are measured again; ``params["temporal"]`` says what
    changed.
    """
    from microseg.temporal import consistent_instances
    from microseg.timeseries import process_series, replace_frames

    res = process_series(
        image,
        segmenter,
        measurer,
        progress=progress,
        stop=stop,
        workers=workers,
        channel=None,
        z=z,
    )
    if not temporal or res.n_done < 3:
        return res
    labels, report = consistent_instances(res.labels)
    if report.frames_changed:
        res = replace_frames(res, labels, report.frames_changed, image, measurer, None, z)
    res.params["temporal"] = {
        "merged_fragments": report.merged,
        "split_merges": report.split,
        "frames_changed": len(report.frames_changed),
    }
    return res


def track_series(objects: pd.DataFrame, labels: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, Any]:
    """Link ``objects`` over frames; relabel ``labels`` ``(T, Y, X)`` to track ids.

    Returns
    -------
    (DataFrame, ndarray, Tracks)
        The object table with ``label`` = track id (and a ``track_id`` column), the
        relabelled stack, and the :class:`~microseg.tracking.Tracks`.
    """
    from microseg.tracking import track_objects

    tracks = track_objects(objects)
    relabelled = tracks.relabel(labels)
    key = tracks.links[["frame", "label", "track_id"]]
    merged = objects.merge(key, on=["frame", "label"], how="left")
    merged["track_id"] = merged["track_id"].fillna(0).astype(np.int64)
    merged["label"] = merged["track_id"]
    return merged, relabelled, tracks


def _track_tables(objects: pd.DataFrame, tracks: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Track links with positions and the per-track summary, for a relabelled table."""
    from microseg.tracking import Tracks, per_track_measurements

    links = tracks.links.assign(label=tracks.links["track_id"])
    summary = per_track_measurements(
        objects.drop(columns="track_id"), Tracks(links, tracks.lineage, tracks.params)
    )
    links = links.merge(objects[["frame", "label", "y", "x"]], on=["frame", "label"], how="left")
    return links, summary


def run_nuclei(
    image: MicroImage,
    segmenter: FrameSegmenter,
    measurer: FrameMeasurer,
    track: bool = False,
    progress: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    workers: int = 1,
    temporal: bool = True,
) -> NucleiRun:
    """Segment, measure (and track) every frame and slice of ``image``.

    Z slices are handled one by one (2-D models); tracking links frames of the
    same slice, and track ids are unique over the whole image. ``temporal`` fixes
    one-frame splits and merges from the neighbouring frames (see :func:`segment_image`).
    """
    nt, nz = image.n_frames, image.n_slices
    h, w = image.shape_yx
    stack: np.ndarray | None = None
    objects: list[pd.DataFrame] = []
    frames: list[pd.DataFrame] = []
    links_all: list[pd.DataFrame] = []
    summaries: list[pd.DataFrame] = []
    stopped = False
    track_params = None
    offset = 0
    step = max(1, nt // 10)
    for z in range(nz):
        where = f" slice {z + 1}/{nz}" if nz > 1 else ""

        def report(done: int, total: int, where: str = where) -> None:
            if progress is not None and (done % step == 0 or done == total) and total > 1:
                progress(f"{image.name}{where}: {done}/{total} frames")

        with inference_threads(workers if nt > 1 else 1):
            res = segment_image(
                image,
                segmenter,
                measurer,
                z=z,
                progress=report,
                stop=stop,
                workers=workers,
                temporal=temporal,
            )
        labels = res.labels
        if stack is None:
            stack = np.zeros((nt, nz, h, w), labels.dtype)
        table = order_columns(res.tables) if len(res.tables) else empty_objects()
        if track and len(table):
            table, labels, tracks = track_series(table, labels)
            track_params = tracks.params
            links, summary = _track_tables(table, tracks)
            if offset:
                for df, cols in (
                    (table, ["label", "track_id"]),
                    (links, ["track_id", "label"]),
                    (summary, ["track_id"]),
                ):
                    for c in cols:
                        df[c] = np.where(df[c] > 0, df[c] + offset, 0)
                for df, c in ((links, "parent_track_id"), (summary, "parent_track_id")):
                    df[c] = np.where(df[c] > 0, df[c] + offset, 0)
                labels = np.where(labels > 0, labels.astype(np.int64) + offset, 0)
            offset = max(offset, int(table["track_id"].max()))
            if nz > 1:
                links.insert(2, "z", z)
                summary.insert(1, "z", z)
            links_all.append(links)
            summaries.append(summary)
        elif track:
            summaries.append(pd.DataFrame())
        if stack.dtype != labels.dtype and int(labels.max(initial=0)) > np.iinfo(stack.dtype).max:
            stack = stack.astype(labels.dtype)
        stack[: labels.shape[0], z] = labels
        summary_rows = frame_table(table, range(res.n_done))
        if nz > 1:
            table.insert(1, "z", z)
            summary_rows.insert(1, "z", z)
        objects.append(table)
        frames.append(summary_rows)
        if res.stopped:
            stopped = True
            break
    assert stack is not None
    from microseg.io import label_dtype

    top = int(stack.max(initial=0))
    stack = stack.astype(label_dtype(top), copy=False)
    run = NucleiRun(
        labels=stack,
        objects=pd.concat(objects, ignore_index=True) if objects else empty_objects(),
        frames=pd.concat(frames, ignore_index=True),
        stopped=stopped,
    )
    if track:
        run.tracks = (
            pd.concat(links_all, ignore_index=True)
            if links_all
            else pd.DataFrame(columns=["track_id", "frame", "label", "parent_track_id", "y", "x"])
        )
        non_empty = [s for s in summaries if len(s)]
        run.track_summary = pd.concat(non_empty, ignore_index=True) if non_empty else None
        run.track_params = track_params
    return run


CENTRAL_WINDOW = 2048
"""Side of the central window the nucleus diameter of a tiled run is measured in."""


def tiled_diameter(
    image: RegionImage, segmenter: FrameSegmenter, reference: np.ndarray
) -> float | str | None:
    """The fixed nucleus diameter a tiled run uses: ``"auto"`` is measured once, in the
    central :data:`CENTRAL_WINDOW` of the image (so every window is rescaled alike)."""
    d = segmenter.object_diameter_px
    if d != "auto":
        return d
    from microseg.regions import central_window

    ys, xs = central_window(image.shape_yx, CENTRAL_WINDOW)
    p = segmenter.with_diameter(None).probabilities(image.read(ys, xs), reference)
    model = segmenter.model
    measured = model.clamp_diameter(model.estimate_object_diameter(p))
    return None if model.auto_zoom(measured) == 1.0 else measured


def segment_tiled(
    image: RegionImage,
    segmenter: FrameSegmenter,
    labels_out: Any,
    pixel_size_um: float | None = None,
    *,
    tile: int = 1024,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> tuple[TiledObjects, dict[str, Any]]:
    """Nuclei of a single-plane image larger than memory, window by window
    (:mod:`microseg.tiled_objects`), into ``labels_out`` and one table.

    Every window is normalised with the whole image's percentiles and rescaled by one
    diameter (:func:`tiled_diameter`); the margin around each core is three nucleus
    diameters (at least 64 px), so a nucleus cut by a tile border is found whole.

    Returns
    -------
    TiledObjects, dict
        The objects and the settings used (diameter, margin, tile).
    """
    from microseg.tiled_objects import objects_tiled

    reference = image.percentile_sample()
    diameter = tiled_diameter(image, segmenter, reference)
    fixed = segmenter.with_diameter(diameter)
    size = diameter if isinstance(diameter, float | int) else None
    size = size or float(segmenter.model.metadata.get("object_diameter_px") or 20.0)
    margin = max(64, int(np.ceil(3 * float(size))))

    def find(window: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        frame = window[0] if window.shape[0] == 1 else window
        return fixed.instances(fixed.probabilities(frame, reference))

    def measure(labels: np.ndarray, window: np.ndarray) -> pd.DataFrame:
        return measure_nuclei(labels, window[0] if window.shape[0] == 1 else window, pixel_size_um)

    found = objects_tiled(
        image,
        find,
        labels_out,
        tile=tile,
        margin=margin,
        measure=measure,
        progress=progress,
        stop=stop,
    )
    if len(found.table):
        found.table["frame"] = 0
        found.table = order_columns(found.table)
    settings = dict(
        fixed.settings(),
        tile=tile,
        margin_px=margin,
        diameter_measured_in=(
            f"the central {CENTRAL_WINDOW} px window"
            if segmenter.object_diameter_px == "auto"
            else None
        ),
    )
    return found, settings
