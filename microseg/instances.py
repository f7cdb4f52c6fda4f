"""Nuclei instances from a semantic prediction, a classical baseline, and label edits.

Touching nuclei are split by a seeded watershed: seeds are the h-maxima of the
distance transform of the nucleus cores (nucleus pixels minus predicted border
pixels when the model has a border class), with ``h`` proportional to the typical
nucleus radius estimated from the image itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage import draw, filters, morphology, segmentation

from microseg.errors import InputError

#: h-maxima height as a fraction of the typical radius (chosen on DSB2018 training masks)
H_FRACTION = 0.15

_FOOTPRINT = ndi.generate_binary_structure(2, 1)
_FOOTPRINT8 = ndi.generate_binary_structure(2, 2)


def label_dtype(n: int) -> np.dtype:
    """``uint16`` for up to 65535 objects, else ``uint32``."""
    return np.dtype(np.uint16) if n <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def _as_label_array(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"Expected a 2-D label image, got shape {labels.shape}.")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(f"A label image must hold integer ids, got {labels.dtype}.")
    return labels


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber objects 1..N in order of their current ids (0 stays 0), uint16/uint32."""
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise InputError("A label image must not hold negative ids.")
    ids = np.unique(labels)
    ids = ids[ids != 0]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.int64)
    lut[ids] = np.arange(1, ids.size + 1)
    return lut[labels].astype(label_dtype(ids.size))


def touching_border(labels: np.ndarray) -> np.ndarray:
    """Boolean array indexed by label id: ``True`` where the object touches the image edge.

    The result has ``labels.max() + 1`` entries (entry 0 is ``False``), so
    ``touching_border(labels)[ids]`` answers for any ids.
    """
    labels = _as_label_array(labels)
    n = int(labels.max()) + 1 if labels.size else 1
    flags = np.zeros(n, dtype=bool)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    flags[np.unique(edge)] = True
    flags[0] = False
    return flags


def typical_radius(mask: np.ndarray, min_area_px: int = 9) -> float:
    """Typical object radius in pixels: the median over connected components of the
    largest distance-transform value inside each.

    The peak distance of a clump of touching round objects is close to one object's
    radius, so clumps do not inflate the estimate. Returns 0 for an empty mask.
    """
    comp, n = ndi.label(mask, structure=_FOOTPRINT)
    return _typical_radius(comp, n, ndi.distance_transform_edt(mask), min_area_px)


def _typical_radius(comp: np.ndarray, n: int, dist: np.ndarray, min_area_px: int = 9) -> float:
    if n == 0:
        return 0.0
    peaks = _label_max(dist, comp, n)[1:]
    areas = np.bincount(comp.ravel(), minlength=n + 1)[1:]
    keep = peaks[areas >= min_area_px]
    return float(np.median(keep if keep.size else peaks))


def _label_max(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Maximum of ``values`` per label 0..n (-inf where a label is absent)."""
    out = np.full(n + 1, -np.inf)
    sel = labels > 0
    np.maximum.at(out, labels[sel], values[sel])
    return out


def hmax_markers(surface: np.ndarray, h: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Markers at the maxima of ``surface`` whose dynamic is at least ``h``.

    The dynamic of a regional maximum is its height above the highest saddle that
    links it to a higher maximum, so this keeps the same maxima as the h-maxima
    transform (8-connected); it is computed from a watershed of all regional maxima
    and the saddles between their basins, much faster than grey-level
    reconstruction. The highest maximum of each connected part of ``mask`` is
    always kept.

    Parameters
    ----------
    surface : ndarray
        2-D float image (e.g. a distance transform).
    h : float
        Minimum dynamic.
    mask : ndarray of bool, optional
        Where maxima may lie (default: everywhere).

    Returns
    -------
    ndarray of int32
        Markers 1..M (a plateau maximum is one marker), 0 elsewhere.
    """
    surface = np.asarray(surface, dtype=np.float32)
    mask = np.ones(surface.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    low = np.float32(surface[mask].min() - 1) if mask.any() else np.float32(0)
    peaks = morphology.local_maxima(np.where(mask, surface, low), allow_borders=True)
    markers, n = ndi.label(peaks & mask, structure=_FOOTPRINT8)
    if n <= 1 or h <= 0:
        return markers.astype(np.int32)
    basins = segmentation.watershed(-surface, markers, mask=mask)
    top = _label_max(surface, markers, n)
    lo, hi, sad = _basin_saddles(basins, surface)
    keep = np.ones(n + 1, dtype=bool)
    keep[0] = False
    parent = np.arange(n + 1)
    owner = np.arange(n + 1)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in np.argsort(-sad, kind="stable"):
        ra, rb = find(int(lo[i])), find(int(hi[i]))
        if ra == rb:
            continue
        if top[ra] < top[rb]:
            ra, rb = rb, ra
        if top[rb] - sad[i] < h:  # the lower maximum's dynamic is below h
            keep[owner[rb]] = False
        parent[rb] = ra
    return np.where(keep[markers], markers, 0).astype(np.int32)


def _basin_saddles(
    basins: np.ndarray, surface: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pair of 8-adjacent basins, the highest pass between them."""
    a_l, b_l, v_l = [], [], []
    s0, s1, s2 = slice(None), slice(None, -1), slice(1, None)
    for sa, sb in (
        ((s0, s1), (s0, s2)),
        ((s1, s0), (s2, s0)),
        ((s1, s1), (s2, s2)),
        ((s1, s2), (s2, s1)),
    ):
        la, lb = basins[sa], basins[sb]
        sel = (la != lb) & (la > 0) & (lb > 0)
        a_l.append(la[sel])
        b_l.append(lb[sel])
        v_l.append(np.minimum(surface[sa][sel], surface[sb][sel]))
    a = np.concatenate(a_l).astype(np.int64)
    b = np.concatenate(b_l).astype(np.int64)
    v = np.concatenate(v_l).astype(np.float64)
    if a.size == 0:
        return a, b, v
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * (int(basins.max()) + 1) + hi
    order = np.lexsort((-v, key))
    key, lo, hi, v = key[order], lo[order], hi[order], v[order]
    first = np.concatenate([[True], key[1:] != key[:-1]])
    return lo[first], hi[first], v[first]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not reach the image edge (8-connected objects)."""
    bg, n = ndi.label(~mask, structure=_FOOTPRINT)
    if n == 0:
        return mask.copy()
    edge = np.zeros(n + 1, dtype=bool)
    edge[bg[0]] = edge[bg[-1]] = edge[bg[:, 0]] = edge[bg[:, -1]] = True
    edge[0] = False  # object pixels
    return ~edge[bg]


def _components(mask: np.ndarray) -> np.ndarray:
    return ndi.label(mask, structure=_FOOTPRINT)[0]


def _split_by_distance(
    fg: np.ndarray,
    core: np.ndarray,
    dist_fg: np.ndarray,
    elevation_extra: np.ndarray | None,
    h: float,
) -> np.ndarray:
    """Seeded watershed of ``fg`` from h-maxima of the distance transform of ``core``."""
    dist = dist_fg if core is fg else ndi.distance_transform_edt(core).astype(np.float32)
    smooth = ndi.gaussian_filter(dist.astype(np.float32, copy=False), 1.0)
    smooth[~core] = 0
    markers = hmax_markers(smooth, h, core)
    # a core component too small to carry an h-maximum still gets its own seed
    core_lab = _components(core)
    seeded = np.zeros(int(core_lab.max()) + 1, dtype=bool)
    seeded[np.unique(core_lab[markers > 0])] = True
    missing = (~seeded)[core_lab] & core
    if missing.any():
        extra = _components(missing)
        markers = np.where(extra > 0, extra + markers.max(), markers)
    elevation = -dist_fg
    if elevation_extra is not None:
        elevation = elevation + elevation_extra
    out = segmentation.watershed(elevation, markers, mask=fg)
    # foreground without any seed (cannot happen often) keeps its own component
    rest = fg & (out == 0)
    if rest.any():
        extra = _components(rest)
        out = np.where(extra > 0, extra + out.max(), out)
    return out


def _remove_small(labels: np.ndarray, min_area_px: int) -> np.ndarray:
    if min_area_px <= 1:
        return labels
    areas = np.bincount(labels.ravel())
    small = areas < min_area_px
    small[0] = False
    return np.where(small[labels], 0, labels)


def _default_min_area(radius: float) -> int:
    # debris: objects under ~1/10 of a typical nucleus' area
    return max(4, int(round(0.1 * np.pi * radius * radius)))


def _resolve_roles(
    proba: np.ndarray, classes: Sequence[str] | None, nucleus: int | None, border: int | None
) -> tuple[int, int | None]:
    k = proba.shape[0]
    names = [c.lower() for c in classes] if classes is not None else None
    if names is not None and len(names) != k:
        raise InputError(f"{len(names)} class names given for {k} probability channels.")
    if nucleus is None:
        if names is not None and "nucleus" in names:
            nucleus = names.index("nucleus")
        else:
            nucleus = 1 if k >= 2 else 0
    if border is None:
        if names is not None:
            border = names.index("border") if "border" in names else None
        elif k >= 3:
            border = 2
    for idx in (nucleus, border):
        if idx is not None and not 0 <= idx < k:
            raise InputError(f"Class index {idx} is outside the {k} probability channels.")
    if border == nucleus:
        raise InputError("The nucleus and border classes must be different channels.")
    return nucleus, border


def nuclei_instances(
    proba: np.ndarray,
    classes: Sequence[str] | None = None,
    *,
    nucleus: int | None = None,
    border: int | None = None,
    threshold: float = 0.5,
    min_area_px: int | None = None,
    seeds: str = "auto",
    h: float | None = None,
    h_fraction: float = H_FRACTION,
) -> np.ndarray:
    """Instance labels of nuclei from class probabilities.

    Foreground is where nucleus + border probability reaches ``threshold``. Touching
    nuclei are split by a watershed on the negative distance transform (plus the
    border probability when there is one), seeded by the h-maxima of the distance
    transform of the cores; objects below ``min_area_px`` are removed.

    Parameters
    ----------
    proba : ndarray
        ``(K, Y, X)`` class probabilities (class k = channel k-1).
    classes : sequence of str, optional
        Class names; channels named "nucleus" and "border" are used when given.
    nucleus, border : int, optional
        Channel indices overriding ``classes``; by default nucleus = 1 and border = 2
        when there are three channels (the nuclei task roles).
    threshold : float
        Foreground probability threshold.
    min_area_px : int, optional
        Debris size; default a tenth of the typical nucleus area, estimated from the data.
    seeds : {"auto", "distance", "cores"}
        "cores": connected components of nucleus minus border; "distance": h-maxima of
        the distance transform of the foreground (ignores border evidence); "auto":
        h-maxima of the distance transform of the cores (both kinds of evidence).
    h : float, optional
        h-maxima height in pixels; default ``h_fraction`` x the typical radius.
    h_fraction : float
        See ``h``; a model may record its own (:mod:`microseg.thresholds`).

    Returns
    -------
    ndarray
        uint16 labels (uint32 above 65535 objects), 0 = background, 1..N nuclei.
    """
    proba = np.asarray(proba)
    if proba.ndim != 3:
        raise InputError(f"Expected class probabilities of shape (K, Y, X), got {proba.shape}.")
    if seeds not in ("auto", "distance", "cores"):
        raise InputError(f"Unknown seed method '{seeds}'; use auto, distance or cores.")
    nucleus, border = _resolve_roles(proba, classes, nucleus, border)
    p_nuc = proba[nucleus].astype(np.float32, copy=False)
    p_bor = proba[border].astype(np.float32, copy=False) if border is not None else None
    fg_p = p_nuc if p_bor is None else p_nuc + p_bor
    fg = fill_holes(fg_p >= threshold)
    if p_bor is None:
        core = None
    else:
        core = fg & (p_nuc >= p_bor) & (p_nuc >= 0.5 * threshold)
    return _instances_from_masks(fg, core, p_bor, seeds, min_area_px, h, h_fraction)


def _instances_from_masks(
    fg: np.ndarray,
    core: np.ndarray | None,
    p_bor: np.ndarray | None,
    seeds: str,
    min_area_px: int | None,
    h: float | None,
    h_fraction: float = H_FRACTION,
) -> np.ndarray:
    comp, n = ndi.label(fg, structure=_FOOTPRINT)
    dist_fg = ndi.distance_transform_edt(fg).astype(np.float32)
    radius = _typical_radius(comp, n, dist_fg)
    if radius == 0:
        return np.zeros(fg.shape, np.uint16)
    if min_area_px is None:
        min_area_px = _default_min_area(radius)
    fg = _remove_small(comp, int(min_area_px)) > 0
    dist_fg[~fg] = 0
    core = fg if core is None else core & fg
    if h is None:
        h = max(0.5, h_fraction * radius)
    extra = None if p_bor is None else p_bor * np.float32(radius)
    if seeds == "cores":
        markers = _components(core)
        markers = _remove_small(markers, max(1, int(min_area_px) // 4))
        elevation = -dist_fg if extra is None else extra - dist_fg
        lab = segmentation.watershed(elevation, markers, mask=fg)
    else:
        lab = _split_by_distance(fg, fg if seeds == "distance" else core, dist_fg, extra, h)
    lab = _remove_small(lab, int(min_area_px))
    return relabel_sequential(lab)


def otsu_watershed(
    image: np.ndarray,
    *,
    sigma: float = 1.0,
    min_area_px: int | None = None,
    bright_objects: bool = True,
) -> np.ndarray:
    """Classical baseline: Otsu threshold + distance-transform watershed.

    Gaussian smoothing, Otsu threshold, hole filling, then the same h-maxima
    distance-transform watershed as :func:`nuclei_instances` without border evidence.

    Parameters
    ----------
    image : ndarray
        ``(Y, X)`` grey image (a ``(C, Y, X)`` image uses its mean over channels).
    sigma : float
        Smoothing before thresholding, in pixels.
    min_area_px : int, optional
        Debris size; default from the typical object size.
    bright_objects : bool
        ``False`` for dark objects on a bright background.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=0)
    if img.ndim != 2:
        raise InputError(f"Expected a 2-D image or (C, Y, X) channels, got shape {img.shape}.")
    smooth = ndi.gaussian_filter(img, sigma) if sigma > 0 else img
    if float(smooth.max()) == float(smooth.min()):
        return np.zeros(img.shape, np.uint16)
    t = filters.threshold_otsu(smooth)
    fg = smooth > t if bright_objects else smooth < t
    fg = fill_holes(fg)
    return _instances_from_masks(fg, None, None, "distance", min_area_px, None)


# ---------------------------------------------------------------- edits


def _ids(ids: int | Iterable[int]) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(list(ids) if not np.isscalar(ids) else [ids], dtype=np.int64))
    return arr[arr != 0]


def delete_objects(labels: np.ndarray, ids: int | Iterable[int]) -> np.ndarray:
    """Return a copy of ``labels`` with the objects ``ids`` set to background."""
    labels = _as_label_array(labels)
    return np.where(np.isin(labels, _ids(ids)), 0, labels).astype(labels.dtype)


def merge_objects(
    labels: np.ndarray, ids: int | Iterable[int], fill_gap: bool = True
) -> np.ndarray:
    """Merge objects ``ids`` into one (keeping the smallest id).

    With ``fill_gap``, background pixels touching two different merged pieces (a
    one-pixel gap between them) join the merged object.
    """
    labels = _as_label_array(labels)
    ids = _ids(ids)
    present = ids[np.isin(ids, labels)]
    if present.size < 2:
        raise InputError("Select at least two existing objects to merge.")
    target = int(present.min())
    out = labels.copy()
    sel = np.isin(labels, present)
    out[sel] = target
    if fill_gap:
        big = np.iinfo(np.int64).max
        lo = ndi.minimum_filter(np.where(sel, labels, big).astype(np.int64), footprint=_FOOTPRINT)
        hi = ndi.maximum_filter(np.where(sel, labels, 0).astype(np.int64), footprint=_FOOTPRINT)
        out[(labels == 0) & (hi > 0) & (lo != hi)] = target
    return out


def add_object(labels: np.ndarray, outline: np.ndarray, min_area_px: int = 9) -> np.ndarray:
    """Add a missing object drawn as a closed outline (or painted over).

    The outline with its inside becomes a new object (id ``max + 1``) on background
    pixels only: existing objects keep theirs. Gaps of up to about 4 pixels in the
    outline are closed first.

    Parameters
    ----------
    labels : ndarray
        Instance labels.
    outline : ndarray of bool
        The drawn stroke, of the image's shape.
    min_area_px : int
        Smallest object that is added.

    Returns
    -------
    ndarray
        New labels (a wider integer type when the new id needs it).
    """
    labels = _as_label_array(labels)
    stroke = np.asarray(outline, dtype=bool)
    if stroke.shape != labels.shape:
        raise InputError("The outline and the label image differ in shape.")
    if not stroke.any():
        raise InputError("Nothing was drawn.")
    square = np.ones((3, 3), bool)
    closed = ndi.binary_closing(np.pad(stroke, 3), square, iterations=2)[3:-3, 3:-3] | stroke
    region = ndi.binary_fill_holes(closed) & (labels == 0)
    parts, n = ndi.label(region)
    if n == 0:
        raise InputError("The outline lies on existing objects only; draw it on the background.")
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    region = parts == int(np.argmax(sizes))
    if int(region.sum()) < max(min_area_px, 1):
        raise InputError(
            f"The drawn object has {int(region.sum())} px, under {min_area_px}; "
            "draw a closed outline around the missing object."
        )
    new_id = int(labels.max()) + 1
    out = labels.astype(np.promote_types(labels.dtype, np.min_scalar_type(new_id)))
    out[region] = new_id
    return out


def _stroke_mask(shape: tuple[int, int], stroke: np.ndarray, extend: float) -> np.ndarray:
    stroke = np.asarray(stroke)
    if stroke.shape == shape:
        return stroke != 0
    pts = np.asarray(stroke, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 2:
        raise InputError(
            "A split stroke must be a mask of the image's shape or at least two (y, x) points."
        )
    pts = pts.copy()
    # lengthen both ends along their direction so a stroke that stops short still cuts
    for end, nxt in ((0, 1), (-1, -2)):
        d = pts[end] - pts[nxt]
        norm = np.hypot(*d)
        if norm > 0:
            pts[end] = pts[end] + d / norm * extend
    mask = np.zeros(shape, dtype=bool)
    for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:], strict=True):
        rr, cc = draw.line(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        mask[rr[ok], cc[ok]] = True
    return mask


def split_object(
    labels: np.ndarray, obj_id: int, stroke: np.ndarray, min_piece_px: int = 3
) -> np.ndarray:
    """Split object ``obj_id`` along a drawn stroke.

    Parameters
    ----------
    labels : ndarray
        Instance labels.
    obj_id : int
        The object to split.
    stroke : ndarray
        A boolean mask of the image's shape, or ``(N, 2)`` polyline points ``(y, x)``
        (its ends are extended a little so a stroke that stops short still cuts).
    min_piece_px : int
        Pieces smaller than this rejoin their neighbours.

    Returns
    -------
    ndarray
        New labels: the largest piece keeps ``obj_id``, the others get new ids; the
        stroke's pixels are given back to the nearest piece.
    """
    labels = _as_label_array(labels)
    obj = labels == obj_id
    if obj_id == 0 or not obj.any():
        raise InputError(f"There is no object {obj_id} to split.")
    ys, xs = np.nonzero(obj)
    extent = float(np.hypot(np.ptp(ys) + 1, np.ptp(xs) + 1))
    cut = _stroke_mask(labels.shape, stroke, extend=0.25 * extent)
    pieces = _components(obj & ~cut)
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    big = np.flatnonzero(sizes >= min_piece_px)
    if big.size < 2:
        raise InputError(
            f"The stroke does not cut object {obj_id} into two parts; draw it across the object."
        )
    keep = np.where(np.isin(pieces, big), pieces, 0)
    # give stroke pixels and tiny pieces back to the nearest kept piece
    _, (iy, ix) = ndi.distance_transform_edt(keep == 0, return_indices=True)
    filled = np.where(obj, keep[iy, ix], 0)
    order = big[np.argsort(-sizes[big], kind="stable")]
    n_new = order.size - 1
    top = int(labels.max())
    out = labels.astype(label_dtype(top + n_new), copy=True)
    lut = np.zeros(int(pieces.max()) + 1, dtype=np.int64)
    lut[order[0]] = obj_id
    lut[order[1:]] = np.arange(top + 1, top + 1 + n_new)
    out[obj] = lut[filled[obj]]
    return out
