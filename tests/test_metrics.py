"""Metrics on hand-made label images."""

from __future__ import annotations

import numpy as np
import pytest

from microseg.errors import InputError
from microseg.metrics import (
    average_precision,
    boundary_f1,
    combine_matches,
    ctc_seg,
    iou_matrix,
    match_instances,
    pixel_f1,
)


def _squares(ids=(1, 2, 3), size=64, side=10):
    lab = np.zeros((size, size), np.int32)
    for k, i in enumerate(ids):
        lab[5 + 15 * k : 5 + 15 * k + side, 5 : 5 + side] = i
    return lab


def test_perfect_match_ap_one_and_relabel_invariant():
    gt = _squares()
    pred = _squares(ids=(70, 9, 1000))  # non-contiguous, shuffled ids
    r = match_instances(gt, pred)
    assert (r.tp, r.fp, r.fn) == (3, 0, 0)
    assert r.ap == r.f1 == r.precision == r.recall == 1.0
    assert r.mean_matched_iou == 1.0
    assert r.pairs.tolist() == [[1, 70], [2, 9], [3, 1000]]
    assert average_precision(gt, pred).mean == 1.0


def test_one_missed_object():
    gt = _squares()
    pred = np.where(gt == 3, 0, gt)
    r = match_instances(gt, pred)
    assert (r.tp, r.fp, r.fn) == (2, 0, 1)
    assert r.ap == pytest.approx(2 / 3)
    assert r.recall == pytest.approx(2 / 3) and r.precision == 1.0
    assert r.f1 == pytest.approx(0.8)


def test_split_object_counts_fp_and_fn():
    gt = _squares()
    pred = gt.copy()
    # object 1 (rows 5..14) split into two halves of 5 rows: each IoU = 0.5
    pred[5:10, 5:15] = 1
    pred[10:15, 5:15] = 7
    r = match_instances(gt, pred, 0.5)
    # IoU of each half is exactly 0.5: one of them matches at t=0.5 (Hungarian)
    assert (r.tp, r.fp, r.fn) == (3, 1, 0)
    r = match_instances(gt, pred, 0.55)
    assert (r.tp, r.fp, r.fn) == (2, 2, 1)
    assert r.ap == pytest.approx(2 / 5)


def test_iou_matrix_values_and_non_contiguous_ids():
    gt = np.zeros((4, 4), np.uint16)
    gt[:2, :2] = 5
    gt[2:, 2:] = 40000
    pred = np.zeros((4, 4), np.int64)
    pred[:2, :3] = 3
    m = iou_matrix(gt, pred)
    assert m.gt_ids.tolist() == [5, 40000]
    assert m.pred_ids.tolist() == [3]
    assert m.iou[0, 0] == pytest.approx(4 / 6)
    assert m.iou[1, 0] == 0.0
    assert m.gt_area.tolist() == [4, 4] and m.pred_area.tolist() == [6]


def test_average_precision_thresholds():
    gt = np.zeros((20, 20), np.int32)
    gt[0:10, 0:10] = 1
    pred = np.zeros_like(gt)
    pred[0:10, 0:8] = 1  # IoU 0.8
    ap = average_precision(gt, pred, thresholds=(0.5, 0.75, 0.8, 0.85))
    assert ap.ap == (1.0, 1.0, 1.0, 0.0)
    assert ap.mean == pytest.approx(0.75)


def test_empty_images_and_combine():
    z = np.zeros((8, 8), np.int32)
    assert match_instances(z, z).ap == 1.0
    one = z.copy()
    one[2:4, 2:4] = 1
    r = match_instances(z, one)
    assert (r.tp, r.fp, r.fn, r.ap) == (0, 1, 0, 0.0)
    c = combine_matches([match_instances(one, one), r])
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)
    assert c.ap == 0.5


def test_ctc_seg_known_overlaps():
    gt = np.zeros((20, 20), np.int32)
    gt[0:10, 0:10] = 1  # 100 px
    gt[10:20, 10:20] = 2  # 100 px
    pred = np.zeros_like(gt)
    pred[0:10, 0:8] = 4  # covers 80 % of gt 1 -> J = 0.8
    pred[10:20, 10:14] = 5  # covers 40 % of gt 2 -> 0
    assert ctc_seg(gt, pred) == pytest.approx(0.4)
    # pooled over frames: (0.8 + 0 + 1) / 3
    assert ctc_seg([gt, gt == 1], [pred, gt == 1]) == pytest.approx(1.8 / 3)
    empty = np.zeros_like(gt)
    assert np.isnan(ctc_seg(empty, pred, only_annotated=True))
    assert ctc_seg(empty, pred) == 0.0
    assert ctc_seg(empty, empty) == 1.0


def test_boundary_f1_shift_within_tolerance():
    g = np.zeros((30, 30), bool)
    g[10, 5:25] = True
    p = np.roll(g, 2, axis=0)
    assert tuple(boundary_f1(g, p, tolerance=2)) == (1.0, 1.0, 1.0)
    far = boundary_f1(g, np.roll(g, 5, axis=0), tolerance=2)
    assert far.f1 == 0.0
    half = g.copy()
    half[10, 15:25] = False
    r = boundary_f1(g, half, tolerance=1)
    assert r.precision == 1.0 and r.recall == pytest.approx(0.55)


def test_pixel_f1_and_errors():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[:1] = True
    assert pixel_f1(a, b) == pytest.approx(2 * 4 / 12)
    with pytest.raises(InputError):
        match_instances(a, np.zeros((3, 3), int))
    with pytest.raises(InputError):
        match_instances(a, b, iou_threshold=0)


def test_many_objects_use_sparse_overlaps():
    # 6400 objects each: a dense 6400 x 6400 matrix is avoided
    gt = (np.arange(160)[:, None] // 2) * 80 + (np.arange(160)[None, :] // 2) + 1
    pred = np.where(gt % 2 == 0, gt + 100000, gt)  # relabelled, same objects
    r = match_instances(gt, pred)
    assert (r.tp, r.fp, r.fn) == (6400, 0, 0)
    assert ctc_seg(gt, pred) == 1.0
    shifted = np.roll(pred, 1, axis=1)  # each object half covered by its own pred
    assert match_instances(gt, shifted).tp < 6400


def test_low_threshold_maximises_number_of_matches():
    gt = np.zeros((10, 20), np.int32)
    gt[:, :10] = 1
    gt[:, 10:] = 2
    pred = np.zeros_like(gt)
    pred[:, :3] = 5  # IoU with gt 1: 0.30
    pred[:, 3:15] = 6  # IoU with gt 1: 0.467, with gt 2: 0.294
    r = match_instances(gt, pred, iou_threshold=0.29)
    # greedy on the best IoU would pair 1-6 and leave two objects unmatched
    assert r.tp == 2 and r.pairs.tolist() == [[1, 5], [2, 6]]
    assert match_instances(gt, pred, iou_threshold=0.5).tp == 0
