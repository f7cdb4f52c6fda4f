"""Per-object tables against skimage.regionprops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.draw import ellipse
from skimage.measure import regionprops

from microseg.errors import InputError
from microseg.measure import (
    GRAIN_COLUMNS,
    OBJECT_COLUMNS,
    area_fractions,
    frame_summary,
    grain_table,
    object_table,
)


def _objects():
    lab = np.zeros((64, 80), np.uint16)
    rr, cc = ellipse(20, 20, 6, 12, shape=lab.shape)  # horizontal major axis
    lab[rr, cc] = 3
    rr, cc = ellipse(40, 55, 14, 5, shape=lab.shape)  # vertical major axis
    lab[rr, cc] = 10
    lab[58:64, 0:5] = 11  # touches the border
    rng = np.random.default_rng(0)
    img = rng.random((2,) + lab.shape).astype(np.float32) * 100
    return lab, img


def test_object_table_matches_regionprops():
    lab, img = _objects()
    df = object_table(lab, img, pixel_size_um=0.5, frame=4)
    assert list(df.columns[: len(OBJECT_COLUMNS)]) == list(OBJECT_COLUMNS)
    assert df["frame"].tolist() == [4, 4, 4]
    props = regionprops(lab, intensity_image=np.moveaxis(img, 0, -1))
    for (_, row), p in zip(df.iterrows(), props, strict=True):
        assert row["label"] == p.label
        assert (row["y"], row["x"]) == pytest.approx(p.centroid)
        assert row["area_px"] == p.area
        assert row["area_um2"] == pytest.approx(p.area * 0.25)
        assert row["equivalent_diameter_um"] == pytest.approx(p.equivalent_diameter_area * 0.5)
        assert row["perimeter_px"] == pytest.approx(p.perimeter)
        assert row["eccentricity"] == pytest.approx(p.eccentricity)
        assert row["solidity"] == pytest.approx(p.solidity, abs=0.04)  # ImageJ hull
        assert row["mean_intensity"] == pytest.approx(p.intensity_mean[0])
        assert row["mean_intensity_c1"] == pytest.approx(p.intensity_mean[1])
        assert row["max_intensity_c1"] == pytest.approx(p.intensity_max[1])
        sel = lab == p.label
        assert row["integrated_intensity"] == pytest.approx(img[0][sel].sum(), rel=1e-5)
    assert df["touches_border"].tolist() == [False, False, True]
    o = df.set_index("label")["orientation_deg"]
    assert min(o[3], 180 - o[3]) < 2  # horizontal
    assert o[10] == pytest.approx(90, abs=2)  # vertical
    assert df.set_index("label").loc[3, "aspect_ratio"] == pytest.approx(2.0, rel=0.1)


def test_orientation_of_a_rising_diagonal():
    lab = np.zeros((100, 100), np.uint8)
    for i in range(60):
        lab[80 - i : 83 - i, 20 + i : 23 + i] = 1  # rises to the right as displayed
    assert object_table(lab)["orientation_deg"][0] == pytest.approx(45, abs=1)


def test_object_table_without_pixel_size_or_objects():
    lab, _ = _objects()
    df = object_table(lab)
    assert df["area_um2"].isna().all()
    assert "mean_intensity" not in df
    empty = object_table(np.zeros((8, 8), np.uint16), np.ones((8, 8)))
    assert len(empty) == 0 and "mean_intensity" in empty
    with pytest.raises(InputError):
        object_table(lab, np.ones((3, 3)))
    with pytest.raises(InputError):
        object_table(lab, pixel_size_um=-1)


def test_frame_summary_keeps_empty_frames():
    lab, img = _objects()
    t0 = object_table(lab, img[0], frame=0)
    t1 = object_table(np.zeros_like(lab), img[0], frame=1)
    t2 = object_table(np.where(lab == 3, 3, 0).astype(np.uint16), img[0], frame=2)
    s = frame_summary([t0, t1, t2])
    assert s["frame"].tolist() == [0, 1, 2]
    assert s["count"].tolist() == [3, 0, 1]
    assert s.loc[0, "mean_area_px"] == pytest.approx(t0["area_px"].mean())
    assert s.loc[2, "mean_intensity"] == pytest.approx(t2["mean_intensity"][0])
    s2 = frame_summary(pd.concat([t0, t2]))
    assert s2["count"].tolist() == [3, 1]


def test_grain_table_and_area_fractions():
    lab = np.zeros((10, 20), np.uint16)
    lab[:, :9] = 1
    lab[:, 10:] = 2  # column 9 is boundary
    df = grain_table(lab, pixel_size_um=2.0)
    assert list(df.columns) == list(GRAIN_COLUMNS)
    assert df["area_px"].sum() == lab.size  # boundary pixels shared out
    assert df["area_um2"].tolist() == [a * 4 for a in df["area_px"]]
    assert df["touches_border"].all()
    raw = grain_table(lab, fill_boundaries=False)
    assert raw["area_px"].tolist() == [90, 100]
    assert raw["ecd_um"].isna().all()
    cm = np.array([[1, 1, 2, 3], [1, 1, 2, 0]])
    af = area_fractions(cm, ["matrix", "phase b", "pores"])
    assert af["area_px"].tolist() == [4, 2, 1]
    assert af["fraction"].sum() == pytest.approx(1.0)
    assert af["name"].tolist() == ["matrix", "phase b", "pores"]


def test_fast_table_skips_solidity_only():
    lab, img = _objects()
    full = object_table(lab, img)
    fast = object_table(lab, img, fast=True)
    assert list(fast.columns) == list(full.columns)
    assert fast["solidity"].isna().all()
    pd.testing.assert_frame_equal(fast.drop(columns="solidity"), full.drop(columns="solidity"))
