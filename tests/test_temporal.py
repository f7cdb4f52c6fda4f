"""One-frame splits and merges in a label stack."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from microseg.errors import InputError
from microseg.temporal import consistent_instances


def _discs(centres: list[tuple[int, int]], shape=(64, 96), r: int = 9) -> np.ndarray:
    lab = np.zeros(shape, np.uint16)
    for i, c in enumerate(centres, start=1):
        rr, cc = disk(c, r, shape=shape)
        lab[rr, cc] = i
    return lab


def test_a_nucleus_cut_in_two_for_one_frame_is_merged():
    whole = _discs([(30, 30), (30, 70)])
    cut = whole.copy()
    cut[(cut == 1) & (np.arange(96)[None, :] >= 30)] = 3  # nucleus 1 cut in halves
    out, rep = consistent_instances(np.stack([whole, cut, whole]))
    assert rep.merged == 1 and rep.split == 0 and rep.frames_changed == [1]
    assert np.unique(out[1][out[1] > 0]).size == 2
    assert np.array_equal(out[1] > 0, whole > 0)


def test_two_nuclei_merged_for_one_frame_are_split_again():
    apart = _discs([(30, 38), (30, 56)], r=10)  # touching discs
    merged = (apart > 0).astype(np.uint16)
    out, rep = consistent_instances(np.stack([apart, merged, apart]))
    assert rep.split == 1 and rep.merged == 0
    ids, counts = np.unique(out[1][out[1] > 0], return_counts=True)
    assert ids.size == 2
    ref = np.unique(apart[apart > 0], return_counts=True)[1]
    assert sorted(counts) == pytest.approx(sorted(ref), rel=0.1)


def test_divisions_and_persistent_pairs_are_left_alone():
    mother = _discs([(30, 47)], r=12)
    daughters = _discs([(30, 38), (30, 56)], r=9)
    out, rep = consistent_instances(np.stack([mother, daughters, daughters]))
    assert rep.merged == 0 and rep.split == 0
    out, rep = consistent_instances(np.stack([mother, mother, daughters]))
    assert rep.merged == 0 and rep.split == 0
    pair = _discs([(30, 38), (30, 56)], r=10)
    out, rep = consistent_instances(np.stack([pair, pair, pair]))
    assert rep.frames_changed == [] and np.array_equal(out, np.stack([pair] * 3))


def test_first_and_last_frames_are_kept_and_bad_input_refused():
    whole = _discs([(30, 30)])
    cut = whole.copy()
    cut[(cut == 1) & (np.arange(96)[None, :] >= 30)] = 2
    out, rep = consistent_instances(np.stack([cut, whole, whole]))
    assert rep.frames_changed == []
    assert np.array_equal(out[0], cut)  # the first frame has no frame before it
    out, rep = consistent_instances(np.stack([cut, whole, cut]))
    assert rep.split == 1  # both neighbours say two objects
    with pytest.raises(InputError):
        consistent_instances(whole)
    with pytest.raises(InputError):
        consistent_instances(np.zeros((3, 8, 8), np.float32))
