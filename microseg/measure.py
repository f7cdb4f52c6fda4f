"""Per-object measurement tables (nuclei, grains) and area fractions.

Per-object values come from :func:`microseg.regionstats.region_stats` (the
definitions of ``skimage.measure.regionprops``, computed for all objects at once).
Lengths and areas come in pixels and, when the pixel size is known, in µm
(NaN otherwise). ``orientation_deg`` is the major axis' angle from the image x
axis, counter-clockwise as displayed, in [0, 180) (Fiji's "Angle").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from microseg.errors import InputError
from microseg.regionstats import region_stats

OBJECT_COLUMNS = (
    "frame",
    "label",
    "y",
    "x",
    "area_px",
    "area_um2",
    "equivalent_diameter_px",
    "equivalent_diameter_um",
    "perimeter_px",
    "perimeter_um",
    "major_axis_px",
    "major_axis_um",
    "minor_axis_px",
    "minor_axis_um",
    "aspect_ratio",
    "eccentricity",
    "solidity",
    "orientation_deg",
    "touches_border",
)

GRAIN_COLUMNS = (
    "label",
    "y",
    "x",
    "area_px",
    "area_um2",
    "ecd_px",
    "ecd_um",
    "perimeter_px",
    "perimeter_um",
    "major_axis_px",
    "minor_axis_px",
    "aspect_ratio",
    "orientation_deg",
    "touches_border",
)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"Expected a 2-D label image, got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"A label image must hold integer ids, got {labels.dtype}.")
    return labels


def _pixel_size(pixel_size_um: float | None) -> float:
    if pixel_size_um is None:
        return float("nan")
    from microseg.pixel_size import check_pixel_size

    return check_pixel_size(pixel_size_um)


def _intensity_channels(intensity: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if intensity is None:
        return None
    arr = np.asarray(intensity)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != shape:
        raise InputError(
            f"The intensity image {np.shape(intensity)} does not match the labels {shape}."
        )
    return arr


def object_table(
    labels: np.ndarray,
    intensity: np.ndarray | None = None,
    pixel_size_um: float | None = None,
    frame: int = 0,
    fast: bool = False,
) -> pd.DataFrame:
    """One row per object: position, size, shape and intensity.

    Parameters
    ----------
    labels : ndarray
        ``(Y, X)`` instance labels, 0 = background.
    intensity : ndarray, optional
        ``(Y, X)`` or ``(C, Y, X)`` image measured under each object.
    pixel_size_um : float, optional
        Pixel size; the ``*_um``/``*_um2`` columns are NaN without it.
    frame : int
        Value of the ``frame`` column.
    fast : bool
        Skip the slowest shape measure (solidity needs a convex hull per object; its
        column is NaN), e.g. for long time series. Solidity is the area over the area
        of the convex hull of the pixel corners (ImageJ's definition).

    Returns
    -------
    pandas.DataFrame
        Columns ``OBJECT_COLUMNS`` plus, with an intensity image, ``mean_intensity``,
        ``integrated_intensity``, ``max_intensity`` for channel 0 and the same with a
        ``_c1``, ``_c2``... suffix for further channels.
    """
    labels = _check_labels(labels)
    ps = _pixel_size(pixel_size_um)
    chans = _intensity_channels(intensity, labels.shape)
    raw = region_stats(labels, chans, solidity=not fast)
    df = _frame_from_raw(raw, labels.shape, ps)
    df.insert(0, "frame", np.full(len(df), int(frame), dtype=np.int64))
    if chans is not None:
        for c in range(chans.shape[0]):
            suffix = "" if c == 0 else f"_c{c}"
            mean = np.asarray(raw[f"intensity_mean-{c}"], dtype=np.float64)
            df[f"mean_intensity{suffix}"] = mean
            df[f"integrated_intensity{suffix}"] = mean * df["area_px"].to_numpy()
            df[f"max_intensity{suffix}"] = np.asarray(raw[f"intensity_max-{c}"], dtype=np.float64)
    return df


def _frame_from_raw(raw: dict, shape: tuple[int, int], ps: float) -> pd.DataFrame:
    area = np.asarray(raw["area"], dtype=np.float64)
    major = np.asarray(raw["axis_major_length"], dtype=np.float64)
    minor = np.asarray(raw["axis_minor_length"], dtype=np.float64)
    safe_minor = np.where(minor > 0, minor, 1.0)
    aspect = np.where(minor > 0, major / safe_minor, np.inf)
    h, w = shape
    touches = (
        (np.asarray(raw["bbox-0"]) == 0)
        | (np.asarray(raw["bbox-1"]) == 0)
        | (np.asarray(raw["bbox-2"]) == h)
        | (np.asarray(raw["bbox-3"]) == w)
    )
    theta = np.degrees(np.asarray(raw["orientation"], dtype=np.float64))
    ecd = np.asarray(raw["equivalent_diameter_area"], dtype=np.float64)
    per = np.asarray(raw["perimeter"], dtype=np.float64)
    return pd.DataFrame(
        {
            "label": np.asarray(raw["label"], dtype=np.int64),
            "y": np.asarray(raw["centroid-0"], dtype=np.float64),
            "x": np.asarray(raw["centroid-1"], dtype=np.float64),
            "area_px": area,
            "area_um2": area * ps * ps,
            "equivalent_diameter_px": ecd,
            "equivalent_diameter_um": ecd * ps,
            "perimeter_px": per,
            "perimeter_um": per * ps,
            "major_axis_px": major,
            "major_axis_um": major * ps,
            "minor_axis_px": minor,
            "minor_axis_um": minor * ps,
            "aspect_ratio": aspect,
            "eccentricity": np.asarray(raw.get("eccentricity", np.full(area.size, np.nan)), float),
            "solidity": np.asarray(raw.get("solidity", np.full(area.size, np.nan)), float),
            "orientation_deg": np.mod(90.0 + theta, 180.0),
            "touches_border": touches.astype(bool),
        }
    )


def frame_summary(tables: pd.DataFrame | Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One row per frame: object count, mean/median area and mean intensity.

    Parameters
    ----------
    tables : DataFrame or sequence of DataFrame
        Object tables (:func:`object_table`); a sequence gives one row per table, so
        a frame without objects still appears (its frame number is its position
        when its table is empty).

    Returns
    -------
    pandas.DataFrame
        Columns frame, count, mean_area_px, median_area_px, mean_area_um2,
        total_area_px and, when measured, mean_intensity.
    """
    if isinstance(tables, pd.DataFrame):
        groups = [g for _, g in tables.groupby("frame", sort=True)] if len(tables) else []
        frames = [int(g["frame"].iloc[0]) for g in groups]
    else:
        groups = list(tables)
        frames = [
            int(g["frame"].iloc[0]) if len(g) and "frame" in g else i for i, g in enumerate(groups)
        ]
    rows = []
    for f, g in zip(frames, groups, strict=True):
        row = {
            "frame": f,
            "count": int(len(g)),
            "mean_area_px": float(g["area_px"].mean()) if len(g) else float("nan"),
            "median_area_px": float(g["area_px"].median()) if len(g) else float("nan"),
            "mean_area_um2": float(g["area_um2"].mean()) if len(g) else float("nan"),
            "total_area_px": float(g["area_px"].sum()) if len(g) else 0.0,
        }
        if "mean_intensity" in g:
            row["mean_intensity"] = float(g["mean_intensity"].mean()) if len(g) else float("nan")
        rows.append(row)
    cols = ["frame", "count", "mean_area_px", "median_area_px", "mean_area_um2", "total_area_px"]
    return pd.DataFrame(
        rows,
        columns=cols + (["mean_intensity"] if any("mean_intensity" in r for r in rows) else []),
    )


def grain_table(
    grain_labels: np.ndarray, pixel_size_um: float | None = None, fill_boundaries: bool = True
) -> pd.DataFrame:
    """One row per grain: area, equivalent circle diameter, perimeter, shape, orientation.

    Parameters
    ----------
    grain_labels : ndarray
        Grain map, 0 = boundary.
    pixel_size_um : float, optional
        Pixel size; ``*_um``/``*_um2`` columns are NaN without it.
    fill_boundaries : bool
        Measure grains after sharing boundary pixels out to the nearest grain (the
        grains then tile the image, as boundaries have no thickness in the
        metal), as :func:`microseg.astm.grain_summary` does.

    Returns
    -------
    pandas.DataFrame
        Columns ``GRAIN_COLUMNS``.
    """
    from microseg.grains import fill_boundaries as _fill

    labels = _check_labels(grain_labels)
    ps = _pixel_size(pixel_size_um)
    lab = _fill(labels) if fill_boundaries else labels
    raw = region_stats(lab, solidity=False)
    df = _frame_from_raw(raw, lab.shape, ps)
    df = df.rename(columns={"equivalent_diameter_px": "ecd_px", "equivalent_diameter_um": "ecd_um"})
    return df[list(GRAIN_COLUMNS)].reset_index(drop=True)


def area_fractions(class_map: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Area fraction of each class of a class map (values 1..K).

    Returns
    -------
    pandas.DataFrame
        Columns class (1..K), name, area_px, fraction (of the pixels holding a class).
    """
    cm = np.asarray(class_map)
    if not np.issubdtype(cm.dtype, np.integer):
        raise InputError(f"A class map must hold integer classes, got {cm.dtype}.")
    k = len(class_names)
    if k == 0:
        raise InputError("No class names given for the area fractions.")
    valid = cm[(cm >= 1) & (cm <= k)]
    counts = np.bincount(valid.ravel().astype(np.int64), minlength=k + 1)[1 : k + 1]
    total = counts.sum()
    frac = counts / total if total else np.zeros(k)
    return pd.DataFrame(
        {
            "class": np.arange(1, k + 1),
            "name": list(class_names),
            "area_px": counts.astype(np.int64),
            "fraction": frac,
        }
    )
