"""microseg.pixel_size: what a pixel size may be."""

from __future__ import annotations

import numpy as np
import pytest

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.pixel_size import check_pixel_size, is_pixel_size


@pytest.mark.parametrize("good", [1e-6, 0.0005, 0.2252, 1, "0.5", 1e4])
def test_usable_pixel_sizes(good):
    assert is_pixel_size(good)
    assert check_pixel_size(good) == pytest.approx(float(good))


@pytest.mark.parametrize(
    "bad", [0, -0.3, float("nan"), float("inf"), 1e200, 1e-9, 2e4, None, "abc", [0.3]]
)
def test_impossible_pixel_sizes_are_one_sentence(bad):
    assert not is_pixel_size(bad)
    with pytest.raises(InputError, match=r"^--pixel-size must be a number of µm per pixel"):
        check_pixel_size(bad, "--pixel-size")


def test_a_files_impossible_calibration_is_ignored_and_said_so():
    img = MicroImage.from_array(np.zeros((4, 4), np.uint8), pixel_size_um=1e200)
    assert img.pixel_size_um is None
    assert img.metadata["pixel_size_ignored"] == "1e+200"
    assert MicroImage.from_array(np.zeros((4, 4)), pixel_size_um=0.25).pixel_size_um == 0.25


def test_area_of_a_huge_pixel_size_is_refused_not_infinite():
    from microseg.measure import object_table

    labels = np.zeros((8, 8), np.int32)
    labels[2:5, 2:5] = 1
    with pytest.raises(InputError, match="between"):
        object_table(labels, pixel_size_um=1e200)
