"""Ground truth of the open sample: its boundary mask, its grain map and example strokes
drawn from it as a user would paint them."""

from __future__ import annotations

import numpy as np

from webui import state
from webui.grains.shared import ui


def truth_boundaries(shape: tuple[int, int]) -> np.ndarray | None:
    """Ground-truth boundary mask of the current image (None when there is none)."""
    gt = state.get("ground_truth") or {}
    b = gt.get("boundaries")
    if b is not None and np.ndim(b) == 2 and tuple(np.shape(b)) == tuple(shape):
        return np.asarray(b) != 0
    lab = gt.get("labels")
    if lab is not None and np.ndim(lab) == 2 and tuple(np.shape(lab)) == tuple(shape):
        from skimage.segmentation import find_boundaries

        lab = np.asarray(lab)
        return (lab == 0) | find_boundaries(lab, mode="inner")
    return None


def truth_grain_map(shape: tuple[int, int]) -> np.ndarray | None:
    """Grain map of the ground truth (one-pixel boundaries), cached per image."""
    cache = ui().setdefault("truth_map", {})
    key = state.get("image_id")
    if key not in cache:
        b = truth_boundaries(shape)
        if b is None:
            return None
        from microseg.grains import grain_map_from_boundaries

        cache.clear()
        cache[key] = grain_map_from_boundaries(b, thin=True)
    return cache[key]


def strokes_from_truth(
    boundaries: np.ndarray,
    labels: np.ndarray | None = None,
    seed: int = 0,
    n_interior: int = 40,
    n_boundary: int = 60,
) -> np.ndarray:
    """Short strokes (1 grain interior, 2 grain boundary) on about 2 % of the pixels,
    drawn from a ground-truth boundary mask as a user would paint them.

    Interior strokes are short lines through the middle of ``n_interior`` random
    grains; boundary strokes cover the traced boundary around ``n_boundary`` random
    boundary points.
    """
    from scipy import ndimage as ndi
    from skimage import draw, measure, morphology

    bnd = np.asarray(boundaries) != 0
    rng = np.random.default_rng(seed)
    h, w = bnd.shape
    if labels is None:
        labels = measure.label(~bnd, connectivity=1)
    labels = np.asarray(labels)
    inside = (labels > 0) & ~bnd
    dist = ndi.distance_transform_edt(inside)
    out = np.zeros(bnd.shape, np.uint8)
    ids = np.unique(labels[inside])
    if ids.size:
        peaks = np.asarray(ndi.maximum_position(dist, labels, ids), dtype=np.int64).reshape(-1, 2)
        depth = dist[peaks[:, 0], peaks[:, 1]]
        ok = np.flatnonzero(depth >= 4)
        pick = rng.permutation(ok)[:n_interior]
        lines = np.zeros(bnd.shape, bool)
        for i in pick:
            cy, cx = peaks[i]
            half = int(min(depth[i] - 2, 10))
            ang = rng.uniform(0, np.pi)
            dy, dx = round(half * np.sin(ang)), round(half * np.cos(ang))
            rr, cc = draw.line(int(cy - dy), int(cx - dx), int(cy + dy), int(cx + dx))
            keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            lines[rr[keep], cc[keep]] = True
        lines = ndi.binary_dilation(lines) & (dist >= 2)
        out[lines] = 1
    thin = morphology.skeletonize(bnd) if bnd.any() else bnd
    pts = np.flatnonzero(thin)
    if pts.size:
        chosen = rng.choice(pts, size=min(n_boundary, pts.size), replace=False)
        seeds = np.zeros(bnd.size, bool)
        seeds[chosen] = True
        zone = ndi.binary_dilation(seeds.reshape(bnd.shape), morphology.disk(6))
        out[zone & ndi.binary_dilation(thin) & bnd] = 2
    return out
