"""Strokes: what a user paints, mapped to exact image pixels.

A stroke image is ``uint8`` with 0 = unlabelled and k = class k (1..K), the same
shape as the image's ``(Y, X)``. The drawing canvas shows the image (or a region of
it) scaled to its display size; the functions here map a drawing back to image
pixels, either from the canvas's RGBA pixels or by rasterising its vector paths.

Drawings may also carry eraser strokes (drawn in a dedicated colour); they come
back as :data:`ERASE` and :func:`merge_strokes` clears those pixels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from microseg.errors import InputError

ERASE = 255
"""Value marking erased pixels in a drawing (see :func:`merge_strokes`)."""

ALPHA_MIN = 128
COLOUR_TOLERANCE = 60.0
"""Largest RGB distance between a painted pixel and its class colour."""

_MAX_SEGMENT = 8.0
THIN_RADIUS = 0.71
"""Smallest rasterised half-width (image pixels): thin strokes stay 8-connected."""

Box = tuple[int, int, int, int]


def parse_colour(colour: str) -> np.ndarray:
    """RGB of ``"#rrggbb"``, ``"#rgb"``, ``"rgb(r, g, b)"`` or ``"rgba(r, g, b, a)"`` (float)."""
    text = str(colour).strip().lower()
    m = re.fullmatch(r"#([0-9a-f]{6}|[0-9a-f]{3})", text)
    if m:
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return np.array([int(h[i : i + 2], 16) for i in (0, 2, 4)], np.float64)
    m = re.fullmatch(
        r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*[\d.]+\s*)?\)", text
    )
    if m:
        return np.array([float(v) for v in m.groups()], np.float64)
    raise InputError(f"'{colour}' is not a colour (expected #rrggbb or rgb(r, g, b)).")


def _palette(
    class_colours: Sequence[str], eraser_colour: str | None
) -> tuple[np.ndarray, np.ndarray]:
    if not class_colours:
        raise InputError("Define at least one class colour.")
    cols = [parse_colour(c) for c in class_colours]
    values = list(range(1, len(cols) + 1))
    if eraser_colour is not None:
        cols.append(parse_colour(eraser_colour))
        values.append(ERASE)
    return np.stack(cols), np.array(values, np.uint8)


def _nearest_value(
    rgb: np.ndarray, palette: np.ndarray, values: np.ndarray, tol: float
) -> np.ndarray:
    """Value of the nearest palette colour per row of ``rgb`` (N, 3); 0 when too far."""
    d2 = ((rgb[:, None, :] - palette[None, :, :]) ** 2).sum(-1)
    best = np.argmin(d2, axis=1)
    ok = d2[np.arange(len(rgb)), best] <= tol * tol
    return np.where(ok, values[best], 0).astype(np.uint8)


def _region(region: Box | None, out_shape: tuple[int, int]) -> Box:
    ny, nx = int(out_shape[0]), int(out_shape[1])
    if region is None:
        return 0, 0, ny, nx
    y0, x0, y1, x1 = (int(v) for v in region)
    if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
        raise InputError(f"Region {region} lies outside the {ny}x{nx} image.")
    return y0, x0, y1, x1


def strokes_from_rgba(
    rgba: np.ndarray,
    class_colours: Sequence[str],
    out_shape: tuple[int, int],
    region: Box | None = None,
    eraser_colour: str | None = None,
    tolerance: float = COLOUR_TOLERANCE,
) -> np.ndarray:
    """Map a canvas drawing (RGBA pixels of the strokes only) to image pixels.

    Parameters
    ----------
    rgba : ndarray
        ``(H, W, 4)`` uint8 drawing as shown on screen (alpha 0 where nothing is painted).
    class_colours : list of str
        Colour of class k at index k-1 (``"#rrggbb"``).
    out_shape : (int, int)
        ``(Y, X)`` of the image.
    region : (y0, x0, y1, x1), optional
        The part of the image the canvas shows (default: the whole image).
    eraser_colour : str, optional
        Pixels painted in this colour come back as :data:`ERASE`.
    tolerance : float
        Largest RGB distance to a class colour; other colours (blends of
        overlapping strokes) stay unlabelled.

    Returns
    -------
    ndarray
        uint8 ``out_shape``: 0 unlabelled, k class k, :data:`ERASE` erased.
        Only opaque pixels (alpha >= 128) count, which drops anti-aliased edges.
        An image pixel is labelled when the display pixel over its centre is
        painted or, for a zoomed-in display, when any display pixel inside it is.
    """
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise InputError(f"A canvas drawing must be (H, W, 4) RGBA, got shape {rgba.shape}.")
    palette, values = _palette(class_colours, eraser_colour)
    out = np.zeros((int(out_shape[0]), int(out_shape[1])), np.uint8)
    y0, x0, y1, x1 = _region(region, out_shape)
    h, w = rgba.shape[:2]
    opaque = rgba[..., 3] >= ALPHA_MIN
    disp = np.zeros((h, w), np.uint8)
    if opaque.any():
        disp[opaque] = _nearest_value(
            rgba[..., :3][opaque].astype(np.float64), palette, values, tolerance
        )
    ry, rx = y1 - y0, x1 - x0
    # display pixel over each image pixel centre
    iy = np.minimum(((np.arange(ry) + 0.5) * h / ry).astype(np.intp), h - 1)
    ix = np.minimum(((np.arange(rx) + 0.5) * w / rx).astype(np.intp), w - 1)
    sub = disp[iy[:, None], ix[None, :]]
    # image pixel under each painted display pixel (zoomed-in display)
    py, px = np.nonzero(disp)
    if py.size:
        fwd = np.zeros((ry, rx), np.uint8)
        ty = np.minimum(((py + 0.5) * ry / h).astype(np.intp), ry - 1)
        tx = np.minimum(((px + 0.5) * rx / w).astype(np.intp), rx - 1)
        np.maximum.at(fwd, (ty, tx), disp[py, px])
        sub = np.where(sub > 0, sub, fwd)
    out[y0:y1, x0:x1] = sub
    return out


def _path_points(path: Sequence[Sequence[Any]]) -> list[np.ndarray]:
    """Polylines ``(n, 2)`` of (x, y) canvas points from fabric.js path commands."""
    lines: list[list[tuple[float, float]]] = []
    cur: list[tuple[float, float]] = []
    pos = (0.0, 0.0)
    for cmd in path:
        if not cmd:
            continue
        op = str(cmd[0]).upper()
        args = [float(v) for v in cmd[1:]]
        if op == "M" and len(args) >= 2:
            if len(cur) > 0:
                lines.append(cur)
            pos = (args[0], args[1])
            cur = [pos]
        elif op == "L" and len(args) >= 2:
            pos = (args[0], args[1])
            cur.append(pos)
        elif op == "Q" and len(args) >= 4:
            (cx, cy), (ex, ey) = (args[0], args[1]), (args[2], args[3])
            length = np.hypot(cx - pos[0], cy - pos[1]) + np.hypot(ex - cx, ey - cy)
            n = int(min(64, max(2, np.ceil(length / 2.0))))
            t = np.linspace(0.0, 1.0, n + 1)[1:]
            bx = (1 - t) ** 2 * pos[0] + 2 * (1 - t) * t * cx + t**2 * ex
            by = (1 - t) ** 2 * pos[1] + 2 * (1 - t) * t * cy + t**2 * ey
            cur.extend(zip(bx.tolist(), by.tolist(), strict=True))
            pos = (ex, ey)
        elif op == "C" and len(args) >= 6:
            (c1x, c1y), (c2x, c2y), (ex, ey) = args[0:2], args[2:4], args[4:6]
            t = np.linspace(0.0, 1.0, 17)[1:]
            bx = (
                (1 - t) ** 3 * pos[0] + 3 * (1 - t) ** 2 * t * c1x + 3 * (1 - t) * t**2 * c2x
            ) + t**3 * ex
            by = (
                (1 - t) ** 3 * pos[1] + 3 * (1 - t) ** 2 * t * c1y + 3 * (1 - t) * t**2 * c2y
            ) + t**3 * ey
            cur.extend(zip(bx.tolist(), by.tolist(), strict=True))
            pos = (ex, ey)
        elif op == "Z" and cur:
            cur.append(cur[0])
    if len(cur) > 0:
        lines.append(cur)
    return [np.asarray(line, np.float64) for line in lines]


def _paint_polyline(
    out: np.ndarray,
    pts_yx: np.ndarray,
    radius: float,
    value: int,
    bounds: Box | None = None,
    group: int = 8,
) -> None:
    """Set pixels whose centre lies closer than ``radius`` to the polyline.

    ``pts_yx`` are in image coordinates (pixel ``i`` spans ``[i, i + 1)``); only
    pixels inside ``bounds`` (y0, x0, y1, x1) are painted.
    """
    by0, bx0, by1, bx1 = bounds if bounds is not None else (0, 0, *out.shape)
    if len(pts_yx) == 1:
        pts_yx = np.vstack([pts_yx, pts_yx])
    # split long segments so that each group of segments covers a small box
    d = np.diff(pts_yx, axis=0)
    k = np.maximum(1, np.ceil(np.hypot(d[:, 0], d[:, 1]) / _MAX_SEGMENT).astype(np.intp))
    seg = np.repeat(np.arange(len(d)), k)
    frac = (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)) / np.repeat(k, k)
    pts_yx = np.vstack([pts_yx[seg] + frac[:, None] * d[seg], pts_yx[-1:]])
    a_all, b_all = pts_yx[:-1], pts_yx[1:]
    for s in range(0, len(a_all), group):
        a, b = a_all[s : s + group], b_all[s : s + group]
        lo = np.floor(np.minimum(a, b).min(0) - radius - 0.5).astype(int)
        hi = np.ceil(np.maximum(a, b).max(0) + radius + 0.5).astype(int)
        lo = np.maximum(lo, [by0, bx0])
        hi = np.minimum(hi, [by1, bx1])
        if np.any(hi <= lo):
            continue
        cy = np.arange(lo[0], hi[0]) + 0.5
        cx = np.arange(lo[1], hi[1]) + 0.5
        p = np.stack(np.meshgrid(cy, cx, indexing="ij"), -1)  # (h, w, 2)
        d = b - a  # (g, 2)
        dd = np.maximum((d * d).sum(-1), 1e-12)
        rel = p[None] - a[:, None, None, :]  # (g, h, w, 2)
        t = np.clip((rel * d[:, None, None, :]).sum(-1) / dd[:, None, None], 0.0, 1.0)
        near = rel - t[..., None] * d[:, None, None, :]
        dist2 = (near * near).sum(-1).min(0)
        hit = dist2 < radius * radius
        out[lo[0] : hi[0], lo[1] : hi[1]][hit] = value


def strokes_from_paths(
    objects: Sequence[dict[str, Any]],
    class_colours: Sequence[str],
    display_shape: tuple[int, int],
    out_shape: tuple[int, int],
    offset: tuple[float, float] = (0.0, 0.0),
    scale: float | tuple[float, float] | None = None,
    eraser_colour: str | None = None,
    tolerance: float = COLOUR_TOLERANCE,
) -> np.ndarray:
    """Rasterise fabric.js free-drawing paths into image pixels.

    Parameters
    ----------
    objects : list of dict
        ``json_data["objects"]`` of the canvas; ``"path"`` objects with ``stroke``
        (colour), ``strokeWidth`` (display pixels) and ``path`` (commands M, L, Q, C
        in canvas coordinates). Other objects are ignored; later objects paint over
        earlier ones.
    class_colours : list of str
        Colour of class k at index k-1.
    display_shape : (int, int)
        ``(H, W)`` of the canvas in display pixels; points outside it are dropped.
    out_shape : (int, int)
        ``(Y, X)`` of the full image.
    offset : (float, float)
        Image pixel ``(y0, x0)`` at the canvas's top-left corner (a zoomed region).
    scale : float or (float, float), optional
        Display pixels per image pixel (y, x). Default: the whole image fills the
        canvas, ``display_shape / out_shape``.
    eraser_colour : str, optional
        Paths in this colour come back as :data:`ERASE`.
    tolerance : float
        Largest RGB distance between a path colour and its class colour.

    Returns
    -------
    ndarray
        uint8 ``out_shape``: 0 unlabelled, k class k, :data:`ERASE` erased. A pixel is
        painted when its centre is closer than half the stroke width to the path (at
        least :data:`THIN_RADIUS`, so thin strokes stay connected), inside the part of
        the image the canvas shows.
    """
    ny, nx = int(out_shape[0]), int(out_shape[1])
    h, w = float(display_shape[0]), float(display_shape[1])
    if scale is None:
        sy, sx = h / ny, w / nx
    elif np.isscalar(scale):
        sy = sx = float(scale)  # type: ignore[arg-type]
    else:
        sy, sx = (float(v) for v in scale)  # type: ignore[union-attr]
    if sy <= 0 or sx <= 0:
        raise InputError("The display scale must be positive.")
    palette, values = _palette(class_colours, eraser_colour)
    out = np.zeros((ny, nx), np.uint8)
    # the image pixels the canvas shows
    shown = (
        max(0, int(np.floor(offset[0]))),
        max(0, int(np.floor(offset[1]))),
        min(ny, int(np.ceil(offset[0] + h / sy - 1e-9))),
        min(nx, int(np.ceil(offset[1] + w / sx - 1e-9))),
    )
    for obj in objects:
        if (
            not isinstance(obj, dict)
            or str(obj.get("type", "")).lower() != "path"
            or not obj.get("path")
        ):
            continue
        try:
            rgb = parse_colour(obj.get("stroke", ""))
        except InputError:
            continue
        value = int(_nearest_value(rgb[None], palette, values, tolerance)[0])
        if value == 0:
            continue
        width = float(obj.get("strokeWidth", 1.0) or 1.0)
        radius = max(0.5 * width / min(sy, sx), THIN_RADIUS)
        for line in _path_points(obj["path"]):
            inside = (line[:, 0] >= 0) & (line[:, 0] <= w) & (line[:, 1] >= 0) & (line[:, 1] <= h)
            line = line[inside]
            if len(line) == 0:
                continue
            pts = np.stack([offset[0] + line[:, 1] / sy, offset[1] + line[:, 0] / sx], -1)
            _paint_polyline(out, pts, radius, value, shown)
    return out


def merge_strokes(
    base: np.ndarray | None, new: np.ndarray, eraser_mask: np.ndarray | None = None
) -> np.ndarray:
    """Combine stored strokes with a new drawing.

    ``eraser_mask`` (bool) clears pixels of ``base`` first; then pixels of ``new``
    with a class (1..K) replace ``base`` and pixels marked :data:`ERASE` are cleared.
    Returns a new uint8 array.
    """
    new = np.asarray(new)
    out = np.zeros(new.shape, np.uint8) if base is None else np.array(base, np.uint8, copy=True)
    if out.shape != new.shape:
        raise InputError(
            f"New strokes of shape {new.shape} do not match the stored strokes {out.shape}."
        )
    if eraser_mask is not None:
        eraser_mask = np.asarray(eraser_mask, bool)
        if eraser_mask.shape != out.shape:
            raise InputError(
                f"The eraser mask of shape {eraser_mask.shape} does not match the strokes {out.shape}."
            )
        out[eraser_mask] = 0
    paint = (new > 0) & (new != ERASE)
    out[paint] = new[paint]
    out[new == ERASE] = 0
    return out


def validate_strokes(
    strokes: np.ndarray,
    image_shape: tuple[int, ...],
    n_classes: int,
    classes: Sequence[str] | None = None,
    min_classes: int = 2,
) -> None:
    """Check strokes before training; raise :class:`InputError` with one clear sentence.

    Parameters
    ----------
    strokes : ndarray
        ``(Y, X)`` integer labels, 0 = unlabelled, k = class k.
    image_shape : tuple of int
        Shape of the image; its last two entries are ``(Y, X)``.
    n_classes : int
        Number of classes K.
    classes : list of str, optional
        Class names, used in the messages.
    min_classes : int
        How many classes must be painted (0 when other images supply the classes).
    """
    strokes = np.asarray(strokes)
    if strokes.ndim != 2:
        raise InputError(f"Strokes must be a 2-D label image, got shape {strokes.shape}.")
    yx = tuple(int(v) for v in image_shape[-2:])
    if strokes.shape != yx:
        raise InputError(
            f"The strokes are {strokes.shape[0]}x{strokes.shape[1]} pixels but the image is "
            f"{yx[0]}x{yx[1]}; strokes outside the image cannot be used."
        )
    if not (np.issubdtype(strokes.dtype, np.integer) or strokes.dtype == bool):
        raise InputError(f"Strokes must hold integer class labels, not {strokes.dtype} values.")
    if strokes.size == 0:
        raise InputError("The strokes are empty.")
    lo, hi = int(strokes.min()), int(strokes.max())
    if lo < 0:
        raise InputError(f"Strokes contain the negative label {lo}; use 0 for unlabelled.")
    if hi > n_classes:
        raise InputError(f"The strokes contain label {hi} but there are only {n_classes} classes.")
    if min_classes <= 0:
        return
    counts = np.bincount(strokes.ravel().astype(np.intp), minlength=n_classes + 1)
    present = np.flatnonzero(counts[1:]) + 1
    if present.size == 0:
        raise InputError("There are no strokes yet; paint at least two classes.")
    if present.size == 1:
        k = int(present[0])
        name = classes[k - 1] if classes is not None and len(classes) >= k else f"class {k}"
        raise InputError(f"Only '{name}' is painted; paint at least two classes.")
