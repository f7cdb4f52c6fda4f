"""Objects (nuclei) of an image larger than memory, window by window.

The image is cut into cores of ``tile`` pixels; each core is processed inside a window
that adds ``margin`` pixels of context on every side (clipped at the image edge). A
window's objects are found by the caller's function, and a window keeps only the
objects it owns: those whose centroid lies in its core. An object cut by the
window's edge inside the image is bigger than the margin; it is kept (its centroid
is in the core) and counted in ``cut``, so the margin can be raised. Owned objects are
written into the label array with ids unique over the image, on pixels no earlier
window has claimed, and measured in their window, where they are whole.

With a margin larger than the objects, an object cut by a tile border is found whole
in the window that owns it, so it is one object with one row in the table, as in
whole-image processing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from microseg.errors import InputError
from microseg.regions import RegionImage
from microseg.tiled import Cancelled, TileProgress

WindowObjects = Callable[[np.ndarray, tuple[int, int]], np.ndarray]
"""``(window (C, h, w), (y0, x0) of the window) -> (h, w)`` instance labels."""

WindowMeasure = Callable[[np.ndarray, np.ndarray], pd.DataFrame]
"""``(labels (h, w), window (C, h, w)) -> table`` with ``label``, ``y``, ``x`` columns."""


@dataclass
class TiledObjects:
    """What :func:`objects_tiled` found.

    Attributes
    ----------
    table : DataFrame
        One row per object (``label`` = its id in the label array; ``y, x`` in image
        pixels; ``touches_border`` of the image).
    n_objects : int
        Objects written.
    cut : int
        Owned objects that touched their window's inner edge (bigger than the margin).
    windows : int
        Windows processed.
    """

    table: pd.DataFrame
    n_objects: int
    cut: int
    windows: int
    notes: list[str] = field(default_factory=list)


def objects_tiled(
    image: RegionImage,
    find: WindowObjects,
    labels_out: Any,
    *,
    tile: int = 1024,
    margin: int = 64,
    measure: WindowMeasure | None = None,
    edge_labels: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: TileProgress | None = None,
    stop: threading.Event | None = None,
) -> TiledObjects:
    """Find, label and measure the objects of ``image`` window by window.

    Parameters
    ----------
    image : RegionImage
        The image, read by region.
    find : callable
        Instance labels of one window (see :data:`WindowObjects`).
    labels_out : array
        ``(Y, X)`` integer target (zarr or numpy), zero on entry.
    tile, margin : int
        Core side and context on each side, in pixels.
    measure : callable, optional
        Table of a window's objects (see :data:`WindowMeasure`), measured with all of
        the window's objects present; the owned ones are kept.
    edge_labels : callable, optional
        The labels an object's contact with the image edge is read from (e.g. grains
        with their boundaries shared out); default the window's labels.
    progress, stop
        As for :func:`microseg.tiled.predict_tiled`.
    """
    if tile < 64 or margin < 0:
        raise InputError(
            f"Windows need a tile of at least 64 px and a margin >= 0 ({tile}, {margin})."
        )
    h, w = image.shape_yx
    origins = [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]
    next_id, cut = 1, 0
    tables: list[pd.DataFrame] = []
    limit = np.iinfo(np.dtype(labels_out.dtype)).max
    for i, (y0, x0) in enumerate(origins):
        if stop is not None and stop.is_set():
            raise Cancelled("Object detection was cancelled.")
        y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
        ya, xa = max(0, y0 - margin), max(0, x0 - margin)
        yb, xb = min(h, y1 + margin), min(w, x1 + margin)
        window = image.read(slice(ya, yb), slice(xa, xb))
        lab = np.asarray(find(window, (ya, xa)))
        if lab.shape != window.shape[-2:]:
            raise InputError(
                f"Window labels of shape {lab.shape} for a {window.shape[-2:]} window."
            )
        owned, n_cut = _owned(
            lab, (y0 - ya, y1 - ya, x0 - xa, x1 - xa), (ya > 0, yb < h, xa > 0, xb < w)
        )
        cut += n_cut
        if owned.size:
            if next_id + owned.size - 1 > limit:
                raise InputError(f"More than {limit:,} objects; the label array cannot hold them.")
            lut = np.zeros(int(lab.max()) + 1, np.int64)
            lut[owned] = np.arange(next_id, next_id + owned.size)
            mine = lut[lab]
            region = np.asarray(labels_out[ya:yb, xa:xb])
            free = (region == 0) & (mine > 0)
            region[free] = mine[free]
            labels_out[ya:yb, xa:xb] = region
            if measure is not None:
                table = measure(lab, window)
                table = table[np.isin(table["label"].to_numpy(int), owned)] if len(table) else table
                if len(table):
                    kept = np.where(lut[lab] > 0, lab, 0)
                    if edge_labels is not None:
                        filled = edge_labels(lab)
                        kept = np.where(lut[filled] > 0, filled, 0)
                    table = table.copy()
                    table["label"] = lut[table["label"].to_numpy(int)]
                    table["y"] = table["y"] + ya
                    table["x"] = table["x"] + xa
                    if "touches_border" in table:
                        table["touches_border"] = _touches_image_edge(
                            kept, lut, table["label"], (ya == 0, yb == h, xa == 0, xb == w)
                        )
                    tables.append(table)
            next_id += owned.size
        if progress is not None:
            progress(i + 1, len(origins))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return TiledObjects(table, next_id - 1, cut, len(origins))


def _owned(lab: np.ndarray, core: tuple[int, int, int, int], inner: tuple[bool, bool, bool, bool]):
    """Ids of ``lab`` whose centroid lies in ``core`` (y0, y1, x0, x1 in window pixels),
    and how many of them touch an edge of the window that lies inside the image."""
    n = int(lab.max())
    if n == 0:
        return np.zeros(0, np.int64), 0
    ids = np.arange(1, n + 1)
    present = np.bincount(lab.ravel(), minlength=n + 1)[1:] > 0
    cy, cx = np.asarray(ndi.center_of_mass(np.ones(lab.shape), lab, ids)).reshape(-1, 2).T
    y0, y1, x0, x1 = core
    mine = present & (cy >= y0 - 0.5) & (cy < y1 - 0.5) & (cx >= x0 - 0.5) & (cx < x1 - 0.5)
    edge = np.zeros(n + 1, bool)
    top, bottom, left, right = inner
    for on, line in ((top, lab[0]), (bottom, lab[-1]), (left, lab[:, 0]), (right, lab[:, -1])):
        if on:
            edge[line] = True
    owned = ids[mine]
    return owned, int(edge[owned].sum())


def _touches_image_edge(
    kept: np.ndarray, lut: np.ndarray, labels: pd.Series, edges: tuple[bool, bool, bool, bool]
) -> np.ndarray:
    """Whether each object (by global id) has a pixel on an edge of the image."""
    on = np.zeros(int(lut.max()) + 1, bool)
    top, bottom, left, right = edges
    for flag, line in (
        (top, kept[0]),
        (bottom, kept[-1]),
        (left, kept[:, 0]),
        (right, kept[:, -1]),
    ):
        if flag:
            on[lut[line]] = True
    on[0] = False
    return on[labels.to_numpy(int)]
