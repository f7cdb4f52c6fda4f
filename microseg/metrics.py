"""Segmentation metrics: instance matching (AP@t), CTC SEG, boundary F1, pixel F1.

Pure functions on label images; results are small named tuples (stardist style).
Label ids need not be contiguous; 0 is background everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from microseg.errors import InputError


class IoUMatrix(NamedTuple):
    """Pairwise overlaps of two label images (rows: ``gt_ids``, columns: ``pred_ids``)."""

    iou: np.ndarray  # (n_gt, n_pred) float64
    intersection: np.ndarray  # (n_gt, n_pred) int64 pixel counts
    gt_ids: np.ndarray  # (n_gt,) label ids in ``gt`` (0 excluded)
    pred_ids: np.ndarray  # (n_pred,) label ids in ``pred`` (0 excluded)
    gt_area: np.ndarray  # (n_gt,) pixels per gt object
    pred_area: np.ndarray  # (n_pred,) pixels per pred object


class MatchResult(NamedTuple):
    """One-to-one matching of ground-truth and predicted objects at one IoU threshold."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ap: float  # TP / (TP + FP + FN), the DSB2018 / stardist "accuracy"
    mean_matched_iou: float
    pairs: np.ndarray  # (tp, 2) int64: (gt label, pred label)
    pair_iou: np.ndarray  # (tp,) IoU of each pair
    threshold: float = 0.5


class AveragePrecision(NamedTuple):
    """AP (TP/(TP+FP+FN)) at several IoU thresholds and their mean."""

    thresholds: tuple[float, ...]
    ap: tuple[float, ...]
    mean: float


class BoundaryF1(NamedTuple):
    """Boundary precision, recall and F1 within a pixel tolerance."""

    precision: float
    recall: float
    f1: float


DEFAULT_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _labels(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(np.mod(a, 1) == 0):
            return a.astype(np.int64)
        raise InputError(f"The {name} label image must hold integer ids, got {a.dtype}.")
    if a.size and a.min() < 0:
        raise InputError(f"The {name} label image has negative ids.")
    return a


def _check_shapes(gt: np.ndarray, pred: np.ndarray) -> None:
    if gt.shape != pred.shape:
        raise InputError(
            f"Ground truth and prediction differ in shape: {gt.shape} vs {pred.shape}."
        )


def _safe(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


class Overlaps(NamedTuple):
    """Sparse overlaps: one entry per pair of objects sharing at least one pixel."""

    gt_index: np.ndarray  # (m,) row into gt_ids
    pred_index: np.ndarray  # (m,) row into pred_ids
    intersection: np.ndarray  # (m,) pixels
    iou: np.ndarray  # (m,)
    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray


def _compact(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ids with 0 first, and each pixel's index into them."""
    ids, inv = np.unique(a.ravel(), return_inverse=True)
    if ids.size == 0 or ids[0] != 0:
        ids = np.concatenate([[0], ids])
        inv = inv + 1
    return ids, inv.astype(np.int64)


def overlaps(gt: np.ndarray, pred: np.ndarray) -> Overlaps:
    """All pairs of overlapping ground-truth and predicted objects, without a dense
    matrix (memory grows with the number of overlapping pairs only)."""
    gt = _labels(gt, "ground-truth")
    pred = _labels(pred, "predicted")
    _check_shapes(gt, pred)
    g_ids, g_inv = _compact(gt)
    p_ids, p_inv = _compact(pred)
    ng, npr = g_ids.size, p_ids.size
    g_area = np.bincount(g_inv, minlength=ng)
    p_area = np.bincount(p_inv, minlength=npr)
    both = (g_inv > 0) & (p_inv > 0)
    key = g_inv[both] * npr + p_inv[both]
    if ng * npr <= 1 << 24:
        counts = np.bincount(key, minlength=ng * npr)
        keys = np.flatnonzero(counts)
        inter = counts[keys]
    else:
        keys, inter = np.unique(key, return_counts=True)
    gi, pj = keys // npr, keys % npr
    union = g_area[gi] + p_area[pj] - inter
    iou = inter / np.maximum(union, 1)
    return Overlaps(
        gi - 1,
        pj - 1,
        inter.astype(np.int64),
        iou,
        g_ids[1:].astype(np.int64),
        p_ids[1:].astype(np.int64),
        g_area[1:],
        p_area[1:],
    )


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> IoUMatrix:
    """Intersection-over-union of every ground-truth object with every predicted object.

    Computed with one ``bincount`` over paired compact labels (no loop over pixels).
    The result is dense (n_gt x n_pred); :func:`overlaps` gives the sparse form.

    Parameters
    ----------
    gt, pred : ndarray of int
        Label images of equal shape, 0 = background, ids need not be contiguous.

    Returns
    -------
    IoUMatrix
        ``iou[i, j]`` between object ``gt_ids[i]`` and ``pred_ids[j]``.
    """
    o = overlaps(gt, pred)
    shape = (o.gt_ids.size, o.pred_ids.size)
    iou = np.zeros(shape)
    inter = np.zeros(shape, dtype=np.int64)
    iou[o.gt_index, o.pred_index] = o.iou
    inter[o.gt_index, o.pred_index] = o.intersection
    return IoUMatrix(iou, inter, o.gt_ids, o.pred_ids, o.gt_area, o.pred_area)


def _match_pairs(o: Overlaps, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matched (gt index, pred index, IoU) with ``iou >= threshold``."""
    cand = o.iou >= threshold
    gi, pj, iou = o.gt_index[cand], o.pred_index[cand], o.iou[cand]
    if threshold > 0.5 or gi.size == 0:
        # IoU > 0.5 is unique per row and column: no assignment problem to solve
        return gi, pj, iou
    # a candidate alone in its row and column is always matched; the others (several
    # candidates per object) maximise the number of matches, then the summed IoU (as
    # stardist does), on their own rows and columns
    single = (np.bincount(gi)[gi] == 1) & (np.bincount(pj)[pj] == 1)
    if single.all():
        return gi, pj, iou
    rows, r_inv = np.unique(gi[~single], return_inverse=True)
    cols, c_inv = np.unique(pj[~single], return_inverse=True)
    sub = np.zeros((rows.size, cols.size))
    sub[r_inv, c_inv] = iou[~single]
    n = min(sub.shape)
    cost = -(sub >= threshold).astype(np.float64) - sub / (2.0 * n)
    rr, cc = linear_sum_assignment(cost)
    ok = sub[rr, cc] >= threshold
    rr, cc = rr[ok], cc[ok]
    return (
        np.concatenate([gi[single], rows[rr]]),
        np.concatenate([pj[single], cols[cc]]),
        np.concatenate([iou[single], sub[rr, cc]]),
    )


def _result(o: Overlaps, threshold: float) -> MatchResult:
    gi, pj, pair_iou = _match_pairs(o, threshold)
    tp = int(gi.size)
    fp = int(o.pred_ids.size - tp)
    fn = int(o.gt_ids.size - tp)
    order = np.argsort(o.gt_ids[gi], kind="stable")
    pairs = np.stack([o.gt_ids[gi], o.pred_ids[pj]], axis=1)[order].astype(np.int64)
    return _from_counts(tp, fp, fn, pair_iou[order], pairs.reshape(-1, 2), threshold)


def _from_counts(
    tp: int, fp: int, fn: int, pair_iou: np.ndarray, pairs: np.ndarray, threshold: float
) -> MatchResult:
    if tp + fp + fn == 0:  # nothing to find and nothing found
        p = r = f = a = 1.0
    else:
        p, r = _safe(tp, tp + fp), _safe(tp, tp + fn)
        f, a = _safe(2 * tp, 2 * tp + fp + fn), _safe(tp, tp + fp + fn)
    miou = float(pair_iou.mean()) if tp else 0.0
    return MatchResult(tp, fp, fn, p, r, f, a, miou, pairs, pair_iou, float(threshold))


def match_instances(gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> MatchResult:
    """Match objects one-to-one and count TP, FP and FN at an IoU threshold.

    A pair matches when its IoU is at least ``iou_threshold``. Above 0.5 a match is
    unique; at lower thresholds the Hungarian algorithm maximises the number of
    matches (then their IoU).

    Parameters
    ----------
    gt, pred : ndarray of int
        Instance label images (0 = background, any ids).
    iou_threshold : float
        Minimum IoU of a true positive.

    Returns
    -------
    MatchResult
        ``ap`` is TP / (TP + FP + FN); all scores are 1 when both images are empty.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise InputError(f"The IoU threshold must be in (0, 1], got {iou_threshold}.")
    return _result(overlaps(gt, pred), iou_threshold)


def combine_matches(results: Sequence[MatchResult]) -> MatchResult:
    """Pool the counts of several images' :class:`MatchResult` (dataset-level scores)."""
    if not results:
        raise InputError("No matching results to combine.")
    tp = sum(r.tp for r in results)
    fp = sum(r.fp for r in results)
    fn = sum(r.fn for r in results)
    pair_iou = np.concatenate([r.pair_iou for r in results])
    pairs = np.concatenate([r.pairs for r in results]).reshape(-1, 2)
    return _from_counts(tp, fp, fn, pair_iou, pairs, results[0].threshold)


def average_precision(
    gt: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> AveragePrecision:
    """AP = TP/(TP+FP+FN) at each IoU threshold (default 0.50:0.05:0.95) and their mean.

    The IoU matrix is computed once and reused for every threshold.
    """
    thr = tuple(float(t) for t in thresholds)
    if not thr or any(not 0.0 < t <= 1.0 for t in thr):
        raise InputError("IoU thresholds must be a non-empty list of values in (0, 1].")
    o = overlaps(gt, pred)
    aps = tuple(_result(o, t).ap for t in thr)
    return AveragePrecision(thr, aps, float(np.mean(aps)))


def _seg_scores(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per ground-truth object Jaccard with the prediction covering > 50 % of it, else 0."""
    o = overlaps(gt, pred)
    scores = np.zeros(o.gt_ids.size)
    ok = 2 * o.intersection > o.gt_area[o.gt_index]  # at most one such pred per gt
    scores[o.gt_index[ok]] = o.iou[ok]
    return scores


def ctc_seg(
    gt: np.ndarray | Sequence[np.ndarray],
    pred: np.ndarray | Sequence[np.ndarray],
    only_annotated: bool = False,
) -> float:
    """Cell Tracking Challenge SEG measure.

    For each ground-truth object, the predicted object covering more than half of
    it scores its Jaccard index, otherwise 0; SEG is the mean over ground-truth
    objects. Unannotated objects are never penalised, so partially annotated
    frames are scored on the objects they hold.

    Parameters
    ----------
    gt, pred : ndarray or sequence of ndarray
        Label images (2-D, or 3-D volumes), or equal-length lists of frames whose
        objects are pooled into one mean (as the CTC evaluates a sequence).
    only_annotated : bool
        How a ground truth without any object is scored: ``False`` (fully annotated
        frames) gives 1.0 when the prediction is empty too, else 0.0; ``True``
        (partial annotation) gives NaN, since nothing was annotated.

    Returns
    -------
    float
    """
    if isinstance(gt, (list, tuple)) or isinstance(pred, (list, tuple)):
        if len(gt) != len(pred):
            raise InputError("Ground truth and prediction hold different numbers of frames.")
        pairs = list(zip(gt, pred, strict=True))
    else:
        pairs = [(gt, pred)]
    scores = np.concatenate([_seg_scores(g, p) for g, p in pairs] or [np.empty(0)])
    if scores.size:
        return float(scores.mean())
    if only_annotated:
        return float("nan")
    any_pred = any(np.any(np.asarray(p) > 0) for _, p in pairs)
    return 0.0 if any_pred else 1.0


def boundary_f1(
    gt_boundary: np.ndarray, pred_boundary: np.ndarray, tolerance: float = 2
) -> BoundaryF1:
    """Boundary precision/recall/F1: a boundary pixel counts when the other map has one
    within ``tolerance`` pixels (Euclidean distance transforms).

    Parameters
    ----------
    gt_boundary, pred_boundary : ndarray
        Boundary masks of equal shape (nonzero = boundary).
    tolerance : float
        Distance in pixels within which a boundary pixel is matched.
    """
    g = np.asarray(gt_boundary) != 0
    p = np.asarray(pred_boundary) != 0
    _check_shapes(g, p)
    if not (math.isfinite(tolerance) and tolerance >= 0):  # NaN compares false both ways
        raise InputError(
            f"The boundary tolerance must be a finite number of pixels >= 0, got {tolerance}."
        )
    ng, np_ = int(g.sum()), int(p.sum())
    if ng == 0 and np_ == 0:
        return BoundaryF1(1.0, 1.0, 1.0)
    if ng == 0 or np_ == 0:
        return BoundaryF1(0.0, 0.0, 0.0)
    d_to_g = ndi.distance_transform_edt(~g)
    d_to_p = ndi.distance_transform_edt(~p)
    precision = float(np.count_nonzero(d_to_g[p] <= tolerance)) / np_
    recall = float(np.count_nonzero(d_to_p[g] <= tolerance)) / ng
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return BoundaryF1(precision, recall, f1)


def pixel_f1(gt_mask: np.ndarray, pred_mask: np.ndarray) -> float:
    """Pixel F1 (Dice) of two masks (nonzero = foreground); 1.0 when both are empty."""
    g = np.asarray(gt_mask) != 0
    p = np.asarray(pred_mask) != 0
    _check_shapes(g, p)
    tp = int(np.count_nonzero(g & p))
    den = int(g.sum()) + int(p.sum())
    return 1.0 if den == 0 else 2.0 * tp / den
