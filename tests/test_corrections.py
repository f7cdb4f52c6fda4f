"""Corrections as training labels: each kind of grain and nucleus correction."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from microseg.corrections import correction_targets, merge_targets
from microseg.errors import InputError


def _grain_map() -> np.ndarray:
    """Two grains side by side, a one-pixel boundary column between them (0)."""
    lab = np.ones((40, 60), np.int32)
    lab[:, 31:] = 2
    lab[:, 30] = 0
    return lab


def test_a_painted_missing_boundary_is_labelled_boundary_around_it():
    before = _grain_map()
    after = before.copy()
    after[20, :30] = 0  # the user splits grain 1 with a horizontal line
    res = correction_targets(before, after, "grains", margin_px=4)
    t = res.targets
    assert res.changed_px == 30 and res.regions == 1
    assert (t[20, :30] == 2).all()
    assert (t[19, :30] == 0).all() and (t[21, :30] == 0).all()  # the pixel beside a line
    assert (t[17, :28] == 1).all() and (t[23, :28] == 1).all()
    assert (t[:15] == 0).all() and (t[26:] == 0).all()  # nothing far from the correction
    assert res.labelled_px == int((t > 0).sum())


def test_an_erased_false_boundary_is_labelled_interior():
    before = _grain_map()
    after = before.copy()
    after[:, 30] = 1
    after[:, 31:] = 1
    t = correction_targets(before, after, "grains", margin_px=3).targets
    assert (t[:, 30] == 1).all()  # where the false boundary was
    assert set(np.unique(t[:, 27:34])) == {1} and (t[:, :26] == 0).all()


def test_no_change_gives_no_labels():
    lab = _grain_map()
    res = correction_targets(lab, lab.copy(), "grains")
    assert res.labelled_px == 0 and res.regions == 0 and not res.targets.any()


def _nuclei() -> np.ndarray:
    lab = np.zeros((64, 64), np.int32)
    for i, (y, x) in enumerate([(16, 16), (16, 44), (46, 30)], start=1):
        rr, cc = disk((y, x), 8, shape=lab.shape)
        lab[rr, cc] = i
    return lab


def test_nucleus_deleted_added_split_and_merged():
    before = _nuclei()
    # delete nucleus 3: its pixels become background
    deleted = np.where(before == 3, 0, before)
    t = correction_targets(before, deleted, "nuclei", margin_px=2).targets
    assert (t[before == 3] == 1).all() and (t[before == 1] == 0).all()
    # add a nucleus
    added = before.copy()
    rr, cc = disk((46, 54), 6, shape=before.shape)
    added[rr, cc] = 4
    t = correction_targets(before, added, "nuclei", margin_px=2).targets
    assert set(np.unique(t[added == 4])) <= {2, 3} and (t[added == 4] == 2).any()
    assert (t[added == 4] == 3).any()  # its outline is the border class
    # split nucleus 1 along a column: a border appears inside it
    split = before.copy()
    split[(before == 1) & (np.arange(64)[None, :] > 16)] = 5
    t = correction_targets(before, split, "nuclei", margin_px=1).targets
    assert (t[10:22, 16:18] == 3).any() and (t[before == 2] == 0).all()
    # merge: two touching nuclei become one; the border between them turns nucleus
    touching = np.zeros((40, 40), np.int32)
    touching[10:30, 5:20], touching[10:30, 20:35] = 1, 2
    merged = np.where(touching > 0, 1, 0)
    t = correction_targets(touching, merged, "nuclei", margin_px=1).targets
    assert (t[12:28, 19:21] == 2).all()


def test_merge_targets_lets_corrections_override_strokes():
    strokes = np.zeros((10, 10), np.uint8)
    strokes[2, :] = 1
    corr = np.zeros((10, 10), np.uint8)
    corr[:, 5] = 2
    out = merge_targets(strokes, [corr], (10, 10))
    assert out[2, 5] == 2 and out[2, 0] == 1 and out[0, 5] == 2 and out[0, 0] == 0
    assert merge_targets(None, [corr], (10, 10)).sum() == corr.sum()
    with pytest.raises(InputError, match="do not match"):
        merge_targets(strokes, [np.zeros((4, 4), np.uint8)], (10, 10))


def test_bad_inputs_are_refused_in_one_sentence():
    lab = _grain_map()
    with pytest.raises(InputError, match="one shape"):
        correction_targets(lab, lab[:10], "grains")
    with pytest.raises(InputError, match="not 'semantic'"):
        correction_targets(lab, lab, "semantic")
    with pytest.raises(InputError, match="margin"):
        correction_targets(lab, lab, "grains", margin_px=-1)


class _Fixed:
    """A segmenter whose classes are given: ``classes`` 1..K per pixel."""

    def __init__(self, classes: np.ndarray, k: int = 2) -> None:
        self.proba = np.stack([(classes == c + 1).astype(np.float32) for c in range(k)])

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.proba


def test_changed_elsewhere_counts_only_the_pixels_the_user_did_not_label():
    from microseg.corrections import changed_elsewhere

    image = np.zeros((40, 40), np.float32)
    before = np.ones((40, 40), np.uint8)
    after = before.copy()
    after[:, :20] = 2  # the left half redrawn
    targets = np.zeros((40, 40), np.uint8)
    targets[:, :10] = 2  # of which the left quarter was labelled by the user
    share = changed_elsewhere(_Fixed(before), _Fixed(after), image, targets)
    assert share == pytest.approx(10 / 30)
    assert changed_elsewhere(_Fixed(before), _Fixed(before), image, targets) == 0.0
    assert changed_elsewhere(_Fixed(before), _Fixed(after), image, np.ones_like(targets)) == 0.0
