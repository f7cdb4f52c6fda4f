"""Temporally consistent instances: fix one-frame splits and merges in a time series.

A nucleus rarely changes its topology for a single frame. When two touching objects
of frame t both lie mostly inside one object of frame t-1 and inside one object of
frame t+1, they are one nucleus cut in two at frame t, and are merged. When one
object of frame t holds most of two objects of frame t-1 and most of two objects of
frame t+1, it is two nuclei merged at frame t, and is split again by a watershed
seeded from the previous frame's objects. Divisions are left alone: a mother and
its two daughters never agree on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage import segmentation

from microseg.errors import InputError
from microseg.instances import relabel_sequential

#: fraction of an object that must lie inside its partner in a neighbouring frame
MIN_INSIDE = 0.5


@dataclass
class ConsistencyReport:
    """What :func:`consistent_instances` changed.

    Attributes
    ----------
    merged : int
        Pairs of fragments joined into one object.
    split : int
        Objects cut into two or more.
    frames_changed : list of int
        Frames whose labels changed.
    """

    merged: int
    split: int
    frames_changed: list[int]


def _best_partner(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each object of ``a``: the object of ``b`` it overlaps most, and that fraction."""
    na, nb = int(a.max()), int(b.max())
    partner = np.zeros(na + 1, dtype=np.int64)
    frac = np.zeros(na + 1, dtype=np.float64)
    if na == 0 or nb == 0:
        return partner, frac
    area = np.bincount(a.ravel(), minlength=na + 1).astype(np.float64)
    sel = (a > 0) & (b > 0)
    key = a[sel].astype(np.int64) * (nb + 1) + b[sel]
    keys, counts = np.unique(key, return_counts=True)
    ia, ib = np.divmod(keys, nb + 1)
    order = np.lexsort((counts, ia))  # per a, the largest overlap last
    ia, ib, counts = ia[order], ib[order], counts[order]
    last = np.r_[ia[1:] != ia[:-1], True]
    partner[ia[last]] = ib[last]
    frac[ia[last]] = counts[last] / area[ia[last]]
    return partner, frac


def _contained(inner: np.ndarray, outer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Objects of ``inner`` lying mostly (> MIN_INSIDE) in one object of ``outer``.

    Returns pairs ``(inner id, outer id)``.
    """
    partner, frac = _best_partner(inner, outer)
    ids = np.flatnonzero((frac > MIN_INSIDE) & (partner > 0))
    return ids, partner[ids]


def _touching_pairs(lab: np.ndarray) -> np.ndarray:
    """Unique pairs ``(a, b)``, a < b, of 4-adjacent objects."""
    pairs = []
    for x, y in ((lab[:, :-1], lab[:, 1:]), (lab[:-1], lab[1:])):
        sel = (x != y) & (x > 0) & (y > 0)
        pairs.append(np.stack([np.minimum(x[sel], y[sel]), np.maximum(x[sel], y[sel])], 1))
    both = np.concatenate(pairs).astype(np.int64)
    return np.unique(both, axis=0) if both.size else both.reshape(0, 2)


def _merge_fragments(lab: np.ndarray, prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, int]:
    pairs = _touching_pairs(lab)
    if pairs.size == 0:
        return lab, 0
    n = int(lab.max())
    p_prev = np.zeros(n + 1, np.int64)
    p_next = np.zeros(n + 1, np.int64)
    ids, par = _contained(lab, prev)
    p_prev[ids] = par
    ids, par = _contained(lab, nxt)
    p_next[ids] = par
    a, b = pairs[:, 0], pairs[:, 1]
    same = (p_prev[a] > 0) & (p_prev[a] == p_prev[b]) & (p_next[a] > 0) & (p_next[a] == p_next[b])
    if not same.any():
        return lab, 0
    join = pairs[same]
    graph = coo_matrix((np.ones(len(join)), (join[:, 0], join[:, 1])), shape=(n + 1, n + 1))
    n_comp, comp = connected_components(graph, directed=False)
    merged = n + 1 - n_comp  # each merge joins two groups
    # every group takes the smallest id among its members
    first = np.full(n_comp, n + 1, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n + 1))
    lut = first[comp]
    return lut[lab], merged


def _split_merges(lab: np.ndarray, prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, int]:
    ids_p, host_p = _contained(prev, lab)  # previous objects lying mostly in one object now
    ids_n, host_n = _contained(nxt, lab)
    n = int(lab.max())
    count_p = np.bincount(host_p, minlength=n + 1)
    count_n = np.bincount(host_n, minlength=n + 1)
    hosts = np.flatnonzero((count_p >= 2) & (count_n >= 2))
    if hosts.size == 0:
        return lab, 0
    out = lab.copy()
    next_id = n + 1
    split = 0
    for m in hosts:
        mask = lab == m
        markers = np.zeros(lab.shape, np.int32)
        for k, pid in enumerate(ids_p[host_p == m], start=1):
            markers[mask & (prev == pid)] = k
        if len(np.unique(markers[markers > 0])) < 2:
            continue
        dist = ndi.distance_transform_edt(mask)
        pieces = segmentation.watershed(-dist, markers, mask=mask)
        for k in np.unique(pieces[pieces > 1]):
            out[pieces == k] = next_id
            next_id += 1
        split += 1
    return out, split


def consistent_instances(labels: np.ndarray) -> tuple[np.ndarray, ConsistencyReport]:
    """Merge one-frame splits and split one-frame merges of a ``(T, Y, X)`` label stack.

    Each inner frame is compared with the original frames before and after it;
    the first and last frames are kept as they are.

    Parameters
    ----------
    labels : ndarray
        ``(T, Y, X)`` instance labels, ids per frame, 0 = background.

    Returns
    -------
    labels : ndarray
        The corrected stack (same dtype rules as :func:`microseg.instances.relabel_sequential`),
        ids renumbered 1..N in the changed frames.
    report : ConsistencyReport
        Counts of merges and splits and the frames that changed.
    """
    stack = np.asarray(labels)
    if stack.ndim != 3:
        raise InputError(f"Expected a (T, Y, X) label stack, got shape {stack.shape}.")
    if not np.issubdtype(stack.dtype, np.integer):
        raise InputError(f"A label stack must hold integer ids, got {stack.dtype}.")
    out = stack.copy()
    merged = split = 0
    changed: list[int] = []
    for t in range(1, stack.shape[0] - 1):
        prev, lab, nxt = stack[t - 1], stack[t], stack[t + 1]
        new, m = _merge_fragments(lab, prev, nxt)
        new, s = _split_merges(new, prev, nxt)
        if m or s:
            new = relabel_sequential(new)
            if new.max() > np.iinfo(out.dtype).max:
                out = out.astype(np.uint32)
            out[t] = new
            merged += m
            split += s
            changed.append(t)
    return out, ConsistencyReport(merged=merged, split=split, frames_changed=changed)
