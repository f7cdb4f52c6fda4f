"""Grain maps and ASTM E112 grain size of single-plane images larger than memory.

1. The grain-boundary probability is predicted tile by tile (:mod:`microseg.tiled`)
   into a Zarr array on disk.
2. The grain map of the central window (:data:`CENTRAL_WINDOW` px) sets what every
   window shares: the sliver size (``min_grain_area_px``, 1 % of its median grain
   area unless given) and the margin, twice its 95th-percentile grain diameter
   (64 to 1024 px), so that a grain cut by a tile border is whole in the window
   that owns it.
3. Grains are found window by window (:mod:`microseg.tiled_objects`, owned by the
   window their centroid lies in) and measured there (:func:`microseg.measure.grain_table`).
4. The summary: sizes from the grain table (interior grains); Jeffries' planimetric
   count from the interior, edge and corner grains over the image area, with the 95 %
   CI from the grains per tile; Heyn's intercepts on 10 + 10 test lines read from the
   grain map on disk (each line's band with its boundaries shared out, as the
   whole-image count does); G from the mean area. The three test circles are not
   drawn (``astm_g_intercept_circles`` is null).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from microseg.errors import InputError
from microseg.regions import RegionImage, central_window
from microseg.segmenter import Segmenter
from microseg.tiled_objects import TiledObjects

CENTRAL_WINDOW = 2048
N_LINES = 10
BAND = 16  # rows on each side of a test line whose boundaries are shared out with it


def channel_view(array: Any, channel: int, name: str, pixel_size_um: float | None) -> RegionImage:
    """One channel of a ``(K, Y, X)`` array (zarr or numpy) as a region image."""
    _, h, w = array.shape
    return RegionImage(
        name,
        (h, w),
        1,
        np.dtype(array.dtype),
        pixel_size_um,
        "Zarr chunks",
        lambda ys, xs: np.asarray(array[channel : channel + 1, ys, xs]),
    )


def window_settings(
    central_proba: np.ndarray, options: dict[str, Any]
) -> tuple[dict, int, np.ndarray]:
    """The grain-map options every window shares, the margin, and the central grain map."""
    from microseg.grains import grain_map
    from microseg.measure import grain_table

    opts = dict(options)
    labels = grain_map(central_proba, **opts)
    table = grain_table(labels)
    if opts.get("min_grain_area_px") is None:
        area = table["area_px"].to_numpy()
        area = area[area >= 9]
        opts["min_grain_area_px"] = (
            max(9, int(round(0.01 * float(np.median(area))))) if area.size else 9
        )
    ecd = table["ecd_px"].to_numpy()
    big = float(np.percentile(ecd, 95)) if ecd.size else 32.0
    margin = int(np.clip(math.ceil(2 * big), 64, 1024))
    return opts, margin, labels


def heyn_line_counts(labels: Any, n_lines: int = N_LINES) -> tuple[list[float], list[float]]:
    """Intercepts and lengths (px) of ``n_lines`` horizontal and vertical test lines over a
    grain map on disk, each read with a band of :data:`BAND` rows whose boundaries are
    shared out to the nearest grain."""
    from microseg.astm import count_intercepts, line_positions
    from microseg.grains import fill_boundaries

    h, w = labels.shape
    counts, lengths = [], []
    for r in line_positions(h, n_lines):
        a, b = max(0, r - BAND), min(h, r + BAND + 1)
        band = fill_boundaries(np.asarray(labels[a:b, :]))
        counts.append(count_intercepts(band[r - a]))
        lengths.append(float(w))
    for c in line_positions(w, n_lines):
        a, b = max(0, c - BAND), min(w, c + BAND + 1)
        band = fill_boundaries(np.asarray(labels[:, a:b]))
        counts.append(count_intercepts(band[:, c - a]))
        lengths.append(float(h))
    return counts, lengths


def _corner_grains(labels: Any, side: int = 64) -> np.ndarray:
    """Ids of the grains at the four corners once boundaries are shared out."""
    from microseg.grains import fill_boundaries

    h, w = labels.shape
    s = min(side, h, w)
    ids = []
    for ys, xs, (cy, cx) in (
        (slice(0, s), slice(0, s), (0, 0)),
        (slice(0, s), slice(w - s, w), (0, -1)),
        (slice(h - s, h), slice(0, s), (-1, 0)),
        (slice(h - s, h), slice(w - s, w), (-1, -1)),
    ):
        ids.append(int(fill_boundaries(np.asarray(labels[ys, xs]))[cy, cx]))
    return np.array([i for i in ids if i > 0], np.int64)


def tiled_summary(
    found: TiledObjects,
    labels: Any,
    tile_counts: list[tuple[int, int]],
    pixel_size_um: float | None,
) -> dict[str, Any]:
    """The keys of :func:`microseg.astm.grain_summary`, from the tiled run (see the
    module notes)."""
    from microseg.astm import intercepts_from_counts, planimetric_from_counts, summary_record

    mm = pixel_size_um / 1000.0 if pixel_size_um else None
    table = found.table
    h, w = labels.shape
    edge = table["touches_border"].to_numpy(bool) if len(table) else np.zeros(0, bool)
    inner = ~edge
    use = inner if inner.any() else np.ones(len(table), bool)
    a_px = table["area_px"].to_numpy(float)[use] if len(table) else np.zeros(0)
    corners, corner_n = np.unique(_corner_grains(labels), return_counts=True)
    edge_ids = set(table["label"].to_numpy(int)[edge]) if len(table) else set()
    n_edge = len(edge_ids - set(corners.tolist()))
    n_in = int(inner.sum())
    weighted = n_in + 0.5 * n_edge + 0.25 * float(corner_n.sum())
    px_area = (mm * mm) if mm else 1.0
    per_tile = [k / (a * px_area) for k, a in tile_counts if a > 0]
    plan = planimetric_from_counts(
        n_in, n_edge, int(corners.size), weighted, h * w, per_tile, pixel_size_um
    )
    counts, lengths = heyn_line_counts(labels)
    heyn = intercepts_from_counts(counts, [v * (mm if mm else 1.0) for v in lengths], pixel_size_um)
    return summary_record(
        int(found.n_objects), int(edge.sum()), n_in, a_px, plan, heyn, None, N_LINES, pixel_size_um
    )


def grains_tiled(
    model: Segmenter,
    image: RegionImage,
    boundary_index: int,
    labels_out: Any,
    scratch: Path,
    pixel_size_um: float | None = None,
    *,
    options: dict[str, Any] | None = None,
    tile: int = 1024,
    progress: Callable[[str], None] | None = None,
) -> tuple[TiledObjects, dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Grain map (into ``labels_out``), grain table and E112 summary, tile by tile.

    Parameters
    ----------
    model : Segmenter
        A grains model.
    image : RegionImage
        The micrograph, read by region.
    boundary_index : int
        Index of the boundary class among the model's classes.
    labels_out : array
        ``(Y, X)`` uint32 target (zarr), zero on entry.
    scratch : Path
        A folder for the boundary probabilities, removed before returning.
    options : dict
        :func:`microseg.grains.grain_map` keyword arguments.

    Returns
    -------
    TiledObjects, dict, dict, dict
        The grains, the summary, the settings used (shared grain-map options, margin,
        tile), and the central window (``labels``, ``proba``, ``image``) for the
        quality verdict.
    """
    import zarr

    from microseg.grains import fill_boundaries, grain_map
    from microseg.measure import grain_table
    from microseg.tiled import percent_progress, predict_tiled
    from microseg.tiled_objects import objects_tiled

    report = progress or (lambda msg: None)
    k = len(model.classes)
    if not 0 <= boundary_index < k:
        raise InputError(f"Boundary class {boundary_index} is not one of the model's {k} classes.")
    h, w = image.shape_yx
    try:
        store = zarr.open_group(scratch, mode="w", zarr_format=2)
        probs = store.create_array("p", shape=(k, h, w), chunks=(1, 512, 512), dtype=np.float32)
        classes = store.create_array("c", shape=(h, w), chunks=(512, 512), dtype=np.uint8)
        predicted = percent_progress(
            report, image.name + ": predicted {done}/{total} tiles ({pct} %)"
        )
        predict_tiled(model, image, classes, probs, tile=tile, progress=predicted)
        bnd = channel_view(probs, boundary_index, image.name, pixel_size_um)
        ys, xs = central_window(image.shape_yx, CENTRAL_WINDOW)
        central = bnd.read(ys, xs)[0]
        opts, margin, central_labels = window_settings(central, options or {})
        report(
            f"{image.name}: grain windows with a {margin} px margin, slivers under "
            f"{opts['min_grain_area_px']} px merged"
        )

        def find(window: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
            return grain_map(window[0], **opts)

        def measure(lab: np.ndarray, window: np.ndarray) -> pd.DataFrame:
            return grain_table(lab, pixel_size_um=pixel_size_um)

        found = objects_tiled(
            bnd,
            find,
            labels_out,
            tile=tile,
            margin=margin,
            measure=measure,
            edge_labels=fill_boundaries,
            progress=percent_progress(
                report, image.name + ": grain map of {done}/{total} tiles ({pct} %)"
            ),
        )
        table = found.table
        ny, nx = -(-h // tile), -(-w // tile)
        per = np.zeros((ny, nx), np.int64)
        if len(table):
            ty = np.clip((table["y"].to_numpy() // tile).astype(int), 0, ny - 1)
            tx = np.clip((table["x"].to_numpy() // tile).astype(int), 0, nx - 1)
            np.add.at(per, (ty, tx), 1)
        tile_counts = [
            (
                int(per[iy, ix]),
                (min(h, (iy + 1) * tile) - iy * tile) * (min(w, (ix + 1) * tile) - ix * tile),
            )
            for iy in range(ny)
            for ix in range(nx)
        ]
        summary = tiled_summary(found, labels_out, tile_counts, pixel_size_um)
        settings = {
            **opts,
            "tile": tile,
            "margin_px": margin,
            "cut_by_margin": found.cut,
            "windows": found.windows,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    centre = {"labels": central_labels, "proba": central, "image": image.read(ys, xs)}
    return found, summary, settings, centre
