"""Per-object statistics of a whole label image at once.

:func:`region_stats` gives the shape and intensity measures of every object of a
2-D label image with a few passes over the pixels (``np.bincount`` on the object
pixels), instead of one Python call per object and property. Its values follow
``skimage.measure.regionprops`` (same moments, axis lengths, orientation and
eccentricity, the same 4-neighbourhood perimeter estimate); solidity is the pixel
area over the area of the convex hull of the pixel corners, as ImageJ computes it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull

#: skimage.measure.perimeter's weights of the neighbourhood codes of a border pixel
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0

_CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` padded by one pixel (0) and read at offset (dy, dx): out[y, x] = a[y+dy, x+dx]."""
    p = np.pad(a, 1)
    h, w = a.shape
    return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def _border_pixels(labels: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour outside their object (the image edge counts)."""
    fg = labels > 0
    inner = fg.copy()
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        inner &= _shifted(labels, dy, dx) == labels
    return fg & ~inner


def _perimeters(labels: np.ndarray, border: np.ndarray, n: int) -> np.ndarray:
    """skimage's 4-neighbourhood perimeter of each object 0..n."""
    code = border.astype(np.int64)
    for (dy, dx), weight in zip(
        ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)),
        (2, 2, 2, 2, 10, 10, 10, 10),
        strict=True,
    ):
        same = _shifted(border, dy, dx) & (_shifted(labels, dy, dx) == labels)
        code += weight * same
    sel = border
    return np.bincount(labels[sel], weights=_PERIMETER_WEIGHTS[code[sel]], minlength=n + 1)


def _hull_areas(labels: np.ndarray, border: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Area of the convex hull of the pixel corners of each object in ``ids``."""
    ys, xs = np.nonzero(border)
    lab = labels[ys, xs]
    order = np.argsort(lab, kind="stable")
    lab, ys, xs = lab[order], ys[order], xs[order]
    starts = np.searchsorted(lab, ids, side="left")
    stops = np.searchsorted(lab, ids, side="right")
    out = np.empty(ids.size, dtype=np.float64)
    for i, (a, b) in enumerate(zip(starts, stops, strict=True)):
        pts = np.stack([ys[a:b], xs[a:b]], axis=1).astype(np.float64)
        pts = (pts[:, None, :] + _CORNERS).reshape(-1, 2)
        out[i] = ConvexHull(pts).volume
    return out


def region_stats(
    labels: np.ndarray,
    intensity: np.ndarray | None = None,
    solidity: bool = True,
) -> dict[str, np.ndarray]:
    """Shape and intensity measures of every object, keyed like ``regionprops_table``.

    Parameters
    ----------
    labels : ndarray
        ``(Y, X)`` non-negative integer labels, 0 = background.
    intensity : ndarray, optional
        ``(C, Y, X)`` channels measured under each object.
    solidity : bool
        Compute solidity (one convex hull per object, the slowest measure).

    Returns
    -------
    dict of str to ndarray
        One entry per object present, in increasing label order: ``label``,
        ``centroid-0``/``-1``, ``area``, ``perimeter``, ``eccentricity``,
        ``orientation``, ``axis_major_length``, ``axis_minor_length``,
        ``equivalent_diameter_area``, ``bbox-0``..``bbox-3`` and, when asked,
        ``solidity``; with ``intensity``, ``intensity_mean-c`` and ``intensity_max-c``
        per channel c.
    """
    labels = np.asarray(labels)
    h, w = labels.shape
    lab = labels.astype(np.int64, copy=False)
    flat = np.flatnonzero(lab)
    lv = lab.ravel()[flat]
    ys, xs = np.divmod(flat, w)
    n = int(lv.max()) if lv.size else 0
    area = np.bincount(lv, minlength=n + 1).astype(np.float64)
    ids = np.flatnonzero(area)
    ids = ids[ids > 0]
    safe = np.where(area > 0, area, 1.0)
    cy = np.bincount(lv, weights=ys, minlength=n + 1) / safe
    cx = np.bincount(lv, weights=xs, minlength=n + 1) / safe
    dy, dx = ys - cy[lv], xs - cx[lv]
    # skimage's inertia tensor [[a, b], [b, c]]: a from columns, c from rows
    a = np.bincount(lv, weights=dx * dx, minlength=n + 1) / safe
    c = np.bincount(lv, weights=dy * dy, minlength=n + 1) / safe
    b = -np.bincount(lv, weights=dx * dy, minlength=n + 1) / safe
    a, b, c = a[ids], b[ids], c[ids]
    root = np.sqrt(((a - c) / 2.0) ** 2 + b * b)
    l1 = np.clip((a + c) / 2.0 + root, 0, None)
    l2 = np.clip((a + c) / 2.0 - root, 0, None)
    diff = c - a
    orientation = np.where(
        diff == 0, np.where(b < 0, np.pi / 4.0, -np.pi / 4.0), 0.5 * np.arctan2(-2.0 * b, diff)
    )
    safe_l1 = np.where(l1 > 0, l1, 1.0)
    eccentricity = np.where(l1 > 0, np.sqrt(np.clip(1.0 - l2 / safe_l1, 0, None)), 0.0)
    sel_area = area[ids]
    border = _border_pixels(lab)
    out: dict[str, np.ndarray] = {
        "label": ids.astype(np.int64),
        "centroid-0": cy[ids],
        "centroid-1": cx[ids],
        "area": sel_area,
        "perimeter": _perimeters(lab, border, n)[ids],
        "eccentricity": eccentricity,
        "orientation": orientation,
        "axis_major_length": 4.0 * np.sqrt(l1),
        "axis_minor_length": 4.0 * np.sqrt(l2),
        "equivalent_diameter_area": np.sqrt(4.0 * sel_area / np.pi),
    }
    if ids.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        out.update({k: empty for k in ("bbox-0", "bbox-1", "bbox-2", "bbox-3")})
        if solidity:
            out["solidity"] = np.zeros(0)
        for k in range(0 if intensity is None else np.asarray(intensity).shape[0]):
            out[f"intensity_mean-{k}"] = out[f"intensity_max-{k}"] = np.zeros(0)
        return out
    for key, values, fn in (
        ("bbox-0", ys, ndi.minimum),
        ("bbox-1", xs, ndi.minimum),
        ("bbox-2", ys + 1, ndi.maximum),
        ("bbox-3", xs + 1, ndi.maximum),
    ):
        out[key] = np.asarray(fn(values, lv, ids), dtype=np.int64).reshape(ids.shape)
    if solidity:
        out["solidity"] = np.minimum(sel_area / _hull_areas(lab, border, ids), 1.0)
    if intensity is not None:
        chans = np.asarray(intensity)
        for k in range(chans.shape[0]):
            v = chans[k].ravel()[flat].astype(np.float64)
            out[f"intensity_mean-{k}"] = np.bincount(lv, weights=v, minlength=n + 1)[ids] / sel_area
            out[f"intensity_max-{k}"] = np.asarray(ndi.maximum(v, lv, ids), np.float64).reshape(
                ids.shape
            )
    return out
