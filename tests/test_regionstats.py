"""Whole-image object statistics against skimage.regionprops and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse, polygon
from skimage.measure import regionprops_table

from microseg.regionstats import region_stats

_PROPS = (
    "label",
    "centroid",
    "area",
    "perimeter",
    "eccentricity",
    "orientation",
    "axis_major_length",
    "axis_minor_length",
    "equivalent_diameter_area",
    "bbox",
    "intensity_mean",
    "intensity_max",
)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    lab = np.zeros((96, 120), np.int32)
    rr, cc = ellipse(20, 25, 7, 15, rotation=0.6, shape=lab.shape)
    lab[rr, cc] = 4
    rr, cc = disk((60, 30), 11, shape=lab.shape)
    lab[rr, cc] = 9
    lab[55:60, 28:33] = 0  # a hole
    rr, cc = polygon([40, 90, 90], [70, 70, 118], shape=lab.shape)
    lab[rr, cc] = 2  # a triangle touching another object
    lab[70:96, 100:120] = 30  # touches two image edges, beside the triangle
    lab[5, 100] = 7  # one pixel
    lab[10:11, 80:95] = 8  # a one-pixel-thick line
    img = np.random.default_rng(1).random(lab.shape) * 50
    return lab, img


def test_matches_regionprops_except_solidity():
    lab, img = _scene()
    ref = regionprops_table(lab, intensity_image=img, properties=_PROPS)
    got = region_stats(lab, img[None])
    assert got["label"].tolist() == [2, 4, 7, 8, 9, 30]
    for key, want in ref.items():
        name = key if key in got else f"{key}-0"
        np.testing.assert_allclose(got[name], want, rtol=1e-9, atol=1e-9, err_msg=key)


def test_solidity_is_area_over_pixel_corner_hull():
    lab = np.zeros((8, 8), np.uint8)
    lab[1:4, 1:6] = 1  # rectangle: its own hull
    lab[5:8, 1] = 2  # L shape: 5 pixels; corner hull = 3x3 square minus a triangle of 2
    lab[7, 1:4] = 2
    got = region_stats(lab)
    assert got["solidity"][0] == pytest.approx(1.0)
    assert got["area"][1] == 5
    assert got["solidity"][1] == pytest.approx(5 / 7)


def test_solidity_close_to_regionprops_and_below_one_for_concave_shapes():
    lab, _ = _scene()
    ref = regionprops_table(lab, properties=("label", "solidity"))
    got = region_stats(lab)
    np.testing.assert_allclose(got["solidity"], ref["solidity"], atol=0.06)
    assert np.all(got["solidity"] <= 1.0)
    assert got["solidity"][got["label"] == 9][0] < 0.95  # the disc with a hole


def test_skipping_solidity_and_empty_images():
    lab, _ = _scene()
    assert "solidity" not in region_stats(lab, solidity=False)
    empty = region_stats(np.zeros((16, 16), np.uint16), np.zeros((2, 16, 16)))
    assert empty["label"].size == 0
    assert empty["intensity_mean-1"].size == 0
    assert empty["solidity"].size == 0


def test_many_channels_and_large_ids():
    lab = np.zeros((32, 32), np.uint32)
    lab[2:10, 2:10] = 70000
    lab[20:30, 5:12] = 3
    img = np.stack([np.full(lab.shape, 2.0), np.arange(32 * 32, dtype=float).reshape(32, 32)])
    got = region_stats(lab, img)
    assert got["label"].tolist() == [3, 70000]
    assert got["intensity_mean-0"].tolist() == [2.0, 2.0]
    assert got["intensity_max-1"][1] == 9 * 32 + 9
