"""Nuclei instances, the Otsu baseline and label edits."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from microseg.errors import InputError
from microseg.instances import (
    add_object,
    delete_objects,
    hmax_markers,
    label_dtype,
    merge_objects,
    nuclei_instances,
    otsu_watershed,
    relabel_sequential,
    split_object,
    touching_border,
    typical_radius,
)
from microseg.metrics import match_instances


def _two_touching_discs(shape=(80, 100), r=15, gap=26):
    gt = np.zeros(shape, np.int32)
    cy, cx = shape[0] // 2, shape[1] // 2
    gt[disk((cy, cx - gap // 2), r, shape=shape)] = 1
    rr, cc = disk((cy, cx + gap // 2), r, shape=shape)
    gt[rr, cc] = np.where(gt[rr, cc] == 0, 2, gt[rr, cc])
    return gt


def _proba(fg, border=None):
    k = 2 if border is None else 3
    p = np.zeros((k,) + fg.shape, np.float32)
    p[1] = fg
    if border is not None:
        p[1] = fg & ~border
        p[2] = border
    p[0] = 1 - p[1:].sum(axis=0)
    return p


def test_two_touching_discs_split_by_distance():
    gt = _two_touching_discs()
    lab = nuclei_instances(_proba(gt > 0))
    assert lab.dtype == np.uint16
    assert lab.max() == 2
    r = match_instances(gt, lab, 0.8)
    assert r.tp == 2 and r.fp == 0


def test_border_class_splits_a_pair_distance_alone_cannot():
    # heavily overlapping discs: no neck for the distance transform, but a border line
    gt = _two_touching_discs(r=15, gap=12)
    fg = gt > 0
    assert nuclei_instances(_proba(fg), seeds="distance").max() == 1
    border = np.zeros_like(fg)
    cx = gt.shape[1] // 2
    border[:, cx - 1 : cx + 1] = fg[:, cx - 1 : cx + 1]
    for seeds in ("auto", "cores"):
        lab = nuclei_instances(_proba(fg, border), seeds=seeds)
        assert lab.max() == 2, seeds
        assert (lab > 0).sum() == fg.sum()  # border pixels belong to the nuclei


def test_debris_removed_and_classes_by_name():
    gt = _two_touching_discs()
    fg = gt > 0
    fg[2:4, 2:4] = True  # 4-px debris
    p = _proba(fg)[::-1]  # channels: nucleus, background
    lab = nuclei_instances(p, classes=["nucleus", "background"])
    assert lab.max() == 2 and lab[2, 2] == 0


def test_typical_radius_ignores_clumps():
    gt = _two_touching_discs()
    assert typical_radius(gt > 0) == pytest.approx(15, abs=1.5)


def test_hmax_markers_keeps_only_deep_maxima():
    y, x = np.mgrid[:40, :80]
    surf = np.maximum(10 - np.hypot(y - 20, x - 20) / 2, 9 - np.hypot(y - 20, x - 60) / 2)
    surf = surf.astype(np.float32)  # two peaks (10, 9) with a saddle at 0
    assert hmax_markers(surf, 5).max() == 2
    surf2 = np.maximum(surf, 8.5)  # saddle raised to 8.5: second peak's dynamic 0.5
    assert len(np.unique(hmax_markers(surf2, 1.0))) - 1 == 1


def test_otsu_watershed_baseline():
    gt = _two_touching_discs()
    rng = np.random.default_rng(0)
    img = 10 + 100 * (gt > 0) + rng.normal(0, 5, gt.shape)
    lab = otsu_watershed(img)
    assert match_instances(gt, lab, 0.7).tp == 2
    assert otsu_watershed(np.zeros((10, 10))).max() == 0


def test_touching_border():
    lab = np.zeros((10, 10), np.uint16)
    lab[0:3, 4:6] = 3
    lab[4:6, 4:6] = 8
    flags = touching_border(lab)
    assert flags.shape == (9,)
    assert flags[3] and not flags[8] and not flags[0]


def test_edits_delete_merge_split():
    gt = _two_touching_discs()
    lab = relabel_sequential(gt)
    assert delete_objects(lab, [2]).max() == 1
    merged = merge_objects(lab, [1, 2])
    assert set(np.unique(merged)) == {0, 1}
    assert 0 <= (merged > 0).sum() - (lab > 0).sum() <= 4  # at most the notch where they meet
    # split the merged pair again with a vertical stroke that stops short of the edges
    cy, cx = gt.shape[0] // 2, gt.shape[1] // 2
    split = split_object(merged, 1, np.array([[cy - 8, cx], [cy + 8, cx]]))
    assert split.max() == 2
    assert (split > 0).sum() == (merged > 0).sum()
    assert match_instances(gt, split, 0.8).tp == 2
    # a stroke mask outside the object cuts nothing
    with pytest.raises(InputError):
        split_object(merged, 1, np.zeros(gt.shape, bool))
    with pytest.raises(InputError):
        merge_objects(lab, [1])


def test_add_object_from_a_closed_outline_keeps_existing_objects():
    from skimage import draw

    lab = np.zeros((60, 60), np.uint8)
    lab[10:20, 10:20] = 1
    outline = np.zeros(lab.shape, bool)
    rr, cc = draw.circle_perimeter(30, 30, 12)
    outline[rr, cc] = True
    outline[17:20, 28:32] = False  # a 4-px gap in the drawn outline is closed
    out = add_object(lab, outline)
    new = out == 2
    assert abs(int(new.sum()) - int(np.pi * 12.5**2)) < 0.1 * np.pi * 12.5**2  # the disc
    assert (out[lab == 1] == 1).all()  # the existing object is untouched
    # an outline over an existing object adds only the background part
    ring = np.zeros(lab.shape, bool)
    ring[5:26, 5:26] = True
    ring[6:25, 6:25] = False  # a square outline around object 1 and some background
    out2 = add_object(lab, ring)
    assert (out2[lab == 1] == 1).all() and int((out2 == 2).sum()) > 200
    # ids beyond the dtype widen it
    full = np.zeros((60, 60), np.uint8)
    full[0, 0] = 255
    assert add_object(full, outline).max() == 256
    # a stray dot, or an outline on objects only, is one sentence
    dot = np.zeros(lab.shape, bool)
    dot[50, 50] = True
    with pytest.raises(InputError, match="closed outline"):
        add_object(lab, dot)
    inside = np.zeros(lab.shape, bool)
    inside[12:18, 12:18] = True
    with pytest.raises(InputError, match="existing objects"):
        add_object(lab, inside)


def test_relabel_sequential_and_dtype():
    lab = np.array([[0, 7, 7], [900, 0, 3]])
    out = relabel_sequential(lab)
    assert out.tolist() == [[0, 2, 2], [3, 0, 1]]
    assert out.dtype == np.uint16
    assert label_dtype(70000) == np.uint32


def test_merge_fills_one_pixel_gap_only():
    lab = np.zeros((10, 12), np.uint16)
    lab[2:8, 1:5] = 1
    lab[2:8, 6:10] = 2
    out = merge_objects(lab, [2, 1])
    assert set(np.unique(out)) == {0, 1}
    assert (out[2:8, 5] == 1).all()  # the gap column joined
    assert out[1, 5] == 0 and out[8, 5] == 0
    assert (out > 0).sum() == (lab > 0).sum() + 6
