"""ASTM E112 / E1382 / E2627 grain-size relations and counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from microseg.astm import (
    confidence_interval,
    g_from_intercept,
    g_from_mean_area,
    g_from_na,
    grain_summary,
    grains_per_in2_at_100x,
    heyn_intercept,
    intercept_from_g,
    na_from_g,
    planimetric,
)

IN2_AT_100X_MM2 = (25.4 / 100) ** 2  # one square inch at 100x, in mm² of specimen


def _square_grid(a=10, n=10):
    """Grains of a x a px, boundary lines (1 px) at rows/cols = a//2 (mod a)."""
    size = a * n
    lab = np.zeros((size, size), np.int32)
    idx = (np.arange(size) + a - a // 2) // a  # cell index, 0..n
    lab[:] = idx[:, None] * (n + 1) + idx[None, :] + 1
    on = (np.arange(size) % a) == a // 2
    lab[on, :] = 0
    lab[:, on] = 0
    return lab


def _hex_grid(d=24, size=240, angle_deg=17.0):
    """Hexagonal grains (Voronoi cells of a triangular lattice of spacing d), rotated so
    that no test line runs along a boundary."""
    pts = np.array(
        [
            (r * d * math.sqrt(3) / 2, c * d + (r % 2) * d / 2)
            for r in range(-12, 2 * int(size / (d * 0.866)) + 12)
            for c in range(-12, 2 * size // d + 12)
        ]
    )
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    pts = (pts - size) @ rot.T + size / 2
    yy, xx = np.mgrid[:size, :size]
    _, idx = cKDTree(pts).query(np.c_[yy.ravel(), xx.ravel()])
    cells = idx.reshape(size, size) + 1
    edge = np.zeros(cells.shape, bool)
    edge[:, 1:] |= cells[:, 1:] != cells[:, :-1]
    edge[1:, :] |= cells[1:, :] != cells[:-1, :]
    return np.where(edge, 0, cells), 1.0 / (d * d * math.sqrt(3) / 2)


def test_defining_relations():
    for g in (-1.0, 0.0, 3.5, 8.0, 12.0):
        n_100x = grains_per_in2_at_100x(g)
        assert n_100x == pytest.approx(2 ** (g - 1))
        # N grains per in² at 100x = N / 0.064516 grains per mm² at 1x
        assert g_from_na(n_100x / IN2_AT_100X_MM2) == pytest.approx(g, abs=2e-3)
        assert g_from_na(na_from_g(g)) == pytest.approx(g, abs=1e-3)
        assert g_from_intercept(intercept_from_g(g)) == pytest.approx(g, abs=1e-9)
        assert g_from_mean_area(1.0 / na_from_g(g)) == pytest.approx(g, abs=1e-3)
    # E112 Table 4: G = 0 <-> mean intercept 0.320 mm; G = 8: 1984 grains/mm², 0.0200 mm
    assert g_from_intercept(0.32) == pytest.approx(0.0, abs=2e-3)
    assert na_from_g(8) == pytest.approx(1984.0)
    assert intercept_from_g(8) == pytest.approx(0.0200, rel=2e-3)
    # hand computation: N_A = 10 000 /mm² -> G = 3.321928 * 4 - 2.954
    assert g_from_na(1e4) == pytest.approx(10.333712)
    assert g_from_intercept(0.01) == pytest.approx(9.999712)


def test_confidence_interval_by_hand():
    st = confidence_interval([10.0, 12.0, 14.0])
    assert st.mean == 12.0 and st.std == pytest.approx(2.0) and st.n == 3
    assert st.ci95 == pytest.approx(4.302653 * 2.0 / math.sqrt(3), rel=1e-5)
    assert st.rel_accuracy_pct == pytest.approx(100 * st.ci95 / 12.0)
    assert math.isnan(confidence_interval([1.0]).ci95)


def test_intercepts_on_square_grid_are_exact():
    lab = _square_grid(a=10, n=10)
    res = heyn_intercept(lab, n_lines=4)  # lines avoid the boundary rows/cols
    # every line crosses 10 boundaries; both ends inside grains (1/2 + 1/2)
    assert res.n_intercepts == 8 * 10
    assert res.total_length == 8 * 100
    assert res.mean_intercept == pytest.approx(10.0)
    assert res.fields.std == 0.0
    r_um = heyn_intercept(lab, pixel_size_um=1.0, n_lines=4)
    assert r_um.mean_intercept == pytest.approx(0.010)  # mm
    assert r_um.g == pytest.approx(g_from_intercept(0.010))
    assert r_um.g_ci == (pytest.approx(r_um.g), pytest.approx(r_um.g))


def test_line_end_counts_half():
    lab = np.zeros((5, 9), np.int32)
    lab[:, :3] = 1
    lab[:, 4:] = 2
    res = heyn_intercept(lab, n_lines=1)
    # horizontal line: two grains, both ends inside -> 2 - 1/2 - 1/2 = 1 intercept;
    # vertical line (column 4) lies in grain 2 only -> 0
    assert res.n_intercepts == 1.0
    assert res.total_length == 9 + 5
    lab[:, 0] = 0  # the line now starts on a boundary: the first grain counts whole
    assert heyn_intercept(lab, n_lines=1, fill=False).n_intercepts == 1.5
    assert heyn_intercept(lab, n_lines=1).n_intercepts == 1.0  # boundary shared out


def test_line_along_a_boundary_still_sees_both_sides():
    lab = np.zeros((10, 30), np.int32)
    lab[:4, :] = 1
    lab[6:, :20] = 2
    lab[6:, 21:] = 3  # rows 4-5 are a boundary; the horizontal test line (row 5) is on it
    assert heyn_intercept(lab, n_lines=1, fill=False).n_intercepts == 1.0  # column only
    # shared out, row 5 belongs to grains 2 and 3: the line crosses their boundary
    assert heyn_intercept(lab, n_lines=1).n_intercepts == 2.0


def test_planimetric_edge_grains_half_corners_quarter():
    lab = _square_grid(a=10, n=10)
    p = planimetric(lab)
    # 11 x 11 grains: 9 x 9 inside, 4 x 9 cut by an edge, 4 at the corners
    assert (p.n_inside, p.n_intercepted, p.n_corner) == (81, 36, 4)
    assert p.n_equivalent == 81 + 0.5 * 36 + 1
    assert p.n_a == pytest.approx(100 / 100**2)  # 1 / a²
    pm = planimetric(lab, pixel_size_um=1.0)
    assert pm.n_a == pytest.approx(1e4)
    assert pm.g == pytest.approx(g_from_na(1e4))


def test_square_grid_methods_differ_as_e112_predicts():
    # squares cut by axis-parallel lines: l = a and N_A = 1/a², so l² N_A = 1 whereas
    # E112's tables assume l² N_A = 0.32² * 7.75 = 0.7936: G_planimetric - G_intercept
    # = 3.3219 log10(1 / 0.7936) = 0.334
    s = grain_summary(_square_grid(a=10, n=10), pixel_size_um=1.0, n_lines=4)
    assert s["astm_g_planimetric"] - s["astm_g_intercept"] == pytest.approx(0.334, abs=0.01)
    assert s["astm_g_mean_area"] == pytest.approx(s["astm_g_planimetric"], abs=0.05)
    assert s["mean_area"] == pytest.approx(100.0, rel=0.02)


def test_hexagonal_tessellation_methods_agree():
    lab, n_a_px = _hex_grid()
    s = grain_summary(lab, pixel_size_um=1.0)
    # half-counted edge grains: within 0.1 (counting them whole or not at all: ~0.25 off)
    assert s["astm_g_planimetric"] == pytest.approx(g_from_na(n_a_px * 1e6), abs=0.1)
    assert abs(s["astm_g_intercept"] - s["astm_g_planimetric"]) < 0.3
    assert abs(s["astm_g_intercept_circles"] - s["astm_g_planimetric"]) < 0.3
    assert abs(s["astm_g_mean_area"] - s["astm_g_planimetric"]) < 0.1
    lo, hi = s["astm_g_intercept_ci"]
    assert lo < s["astm_g_intercept"] < hi


def test_grain_summary_contract_and_units():
    lab, _ = _hex_grid()
    s = grain_summary(lab)
    for key in (
        "n_grains",
        "mean_area",
        "mean_ecd",
        "mean_intercept",
        "astm_g_planimetric",
        "astm_g_intercept",
        "unit",
    ):
        assert key in s
    assert s["unit"] == "px"
    assert s["astm_g_planimetric"] is None and s["astm_g_intercept"] is None
    assert s["astm_g_intercept_ci"] == [None, None]
    json.dumps(s)  # JSON-ready
    s2 = grain_summary(lab, pixel_size_um=0.5)
    assert s2["unit"] == "um"
    assert s2["mean_area"] == pytest.approx(s["mean_area"] * 0.25)
    assert s2["mean_intercept"] == pytest.approx(s["mean_intercept"] * 0.5)
    assert s2["n_grains"] == s["n_grains"] == len(np.unique(lab)) - 1


def test_nist_steel_g_values(shared_data):
    import tifffile

    from microseg.grains import grain_map_from_boundaries

    d = shared_data / "grains" / "nist_steel"
    bnd = tifffile.imread(d / "steel_boundaries_manual.tif") > 0
    s = grain_summary(grain_map_from_boundaries(bnd), pixel_size_um=0.2252)
    assert s["n_grains"] == 239
    # ~10 by every method; the methods agree within E112's +-0.25 or so
    for key in ("astm_g_planimetric", "astm_g_intercept", "astm_g_mean_area"):
        assert 9.7 < s[key] < 10.6, key
    assert abs(s["astm_g_planimetric"] - s["astm_g_intercept"]) < 0.25


def test_pooled_summary_of_fields_follows_e112_field_statistics():
    import pandas as pd

    from microseg.astm import confidence_interval, g_from_intercept, g_from_na, pooled_summary

    # three fields of one specimen at 0.5 µm/px as grain_summary reports them (N_A per mm²,
    # test-line length in µm)
    fields = [
        {"n_grains": 100, "n_a": 4000.0, "n_intercepts": 80.0, "test_line_length": 500.0},
        {"n_grains": 120, "n_a": 5000.0, "n_intercepts": 95.0, "test_line_length": 500.0},
        {"n_grains": 90, "n_a": 4500.0, "n_intercepts": 85.0, "test_line_length": 500.0},
    ]
    table = pd.DataFrame({
        "touches_border": [False, False, True],
        "area_um2": [100.0, 300.0, 5.0],
        "ecd_um": [11.0, 19.0, 2.0],
    })  # fmt: skip
    out = pooled_summary(fields, table, 0.5)
    assert out["n_grains"] == 310 and out["n_planes"] == 3
    assert out["mean_area"] == pytest.approx(200.0)  # interior grains only
    assert out["n_a"] == pytest.approx(4500.0)
    assert out["astm_g_planimetric"] == pytest.approx(g_from_na(4500.0))
    st = confidence_interval(np.array([4000.0, 5000.0, 4500.0]))
    lo, hi = out["astm_g_planimetric_ci"]
    assert lo == pytest.approx(g_from_na(4500.0 - st.ci95))
    assert hi == pytest.approx(g_from_na(4500.0 + st.ci95))
    assert out["planimetric_rel_accuracy_pct"] == pytest.approx(st.rel_accuracy_pct)
    # the intercept pools the counts: 1500 µm of lines over 260 intercepts
    assert out["mean_intercept"] == pytest.approx(1500.0 / 260.0)
    assert out["astm_g_intercept"] == pytest.approx(g_from_intercept(1.5 / 260.0))
    lo, hi = out["astm_g_intercept_ci"]
    assert lo < out["astm_g_intercept"] < hi
    # one field: a value, no interval
    one = pooled_summary(fields[:1], table, 0.5)
    assert one["astm_g_planimetric"] == pytest.approx(g_from_na(4000.0))
    assert one["astm_g_planimetric_ci"] == [None, None]


def test_specimen_summary_names_its_fields_and_refuses_mixed_pixel_sizes():
    import pandas as pd

    from microseg.astm import specimen_summary
    from microseg.errors import InputError

    table = pd.DataFrame({"touches_border": [False], "area_px": [50.0], "ecd_px": [8.0],
                          "area_um2": [12.5], "ecd_um": [4.0]})  # fmt: skip
    a = {"n_grains": 10, "n_a": 100.0, "n_intercepts": 20.0, "test_line_length": 400.0}
    b = {"n_grains": 12, "n_a": 120.0, "n_intercepts": 22.0, "test_line_length": 400.0}
    rec = specimen_summary([("a.tif", a, table, 0.5), ("b.tif", b, table, 0.5)])
    assert rec["n_fields"] == 2 and rec["pixel_size_um"] == [0.5]
    assert [f["field"] for f in rec["fields"]] == ["a.tif", "b.tif"]
    assert rec["n_a"] == pytest.approx(110.0) and rec["n_grains"] == 22
    with pytest.raises(InputError, match="Some fields have a pixel size"):
        specimen_summary([("a.tif", a, table, 0.5), ("b.tif", b, table, None)])
    with pytest.raises(InputError):
        specimen_summary([])
