"""AppTest: the Grains page (grain map, G with CIs, selection, corrections, pixel size,
exports) and the ML-vs-DL page (example strokes, both models trained and scored)."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from tests.apphelpers import new_app
from webui.grains.exports import export_zip, summary_json
from webui.grains.figures import (
    display_image,
    grains_in_bins,
    histogram_bins,
    map_figure,
    marker_size,
)

pytestmark = pytest.mark.timeout(300)

GRAINS = "pages/5_Grains.py"
COMPARE = "pages/6_ML_vs_DL.py"


def _grain_app():
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.switch_page(GRAINS).run()
    # measure the sample's exact ground truth (the built-in model is the default when installed)
    at.selectbox(key="grains_model").set_value("Ground-truth boundaries of the sample").run()
    assert not at.exception
    assert not at.error, at.error[0].value
    return at


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _neighbours(labels: np.ndarray) -> tuple[int, int]:
    """Two grains that meet across a boundary pixel away from the image edge."""
    big = labels.max() + 1
    lo = ndi.minimum_filter(np.where(labels == 0, big, labels), size=3)
    hi = ndi.maximum_filter(labels, size=3)
    cand = (labels == 0) & (lo < big) & (hi > 0) & (lo != hi)
    cand[:20], cand[-20:], cand[:, :20], cand[:, -20:] = False, False, False, False
    y, x = np.argwhere(cand)[len(np.argwhere(cand)) // 2]
    return int(lo[y, x]), int(hi[y, x])


def _remove_boundary(at, a: int, b: int) -> None:
    """Remove the boundary between grains ``a`` and ``b`` by their ids."""
    at.number_input(key="grains_rm_a").set_value(a)
    at.number_input(key="grains_rm_b").set_value(b)
    at.button(key="grains_rm_ids").click().run()


def test_grains_page_needs_an_image():
    at = new_app()
    at.switch_page(GRAINS).run()
    assert not at.exception
    assert "home page" in at.info[0].value


def test_grain_map_and_astm_summary_from_ground_truth():
    at = _grain_app()
    res = at.session_state["grain_result"]
    labels = res["labels"]
    assert labels.shape == (512, 512)
    n = int(labels.max())
    assert 140 <= n <= 180  # the sample has 160 grains
    assert _metric(at, "Grains") == str(n)
    g_plan = float(_metric(at, "G planimetric (E112)"))
    g_int = float(_metric(at, "G intercept (E112)"))
    assert 6 < g_plan < 10 and abs(g_plan - g_int) < 1
    captions = " ".join(c.value for c in at.caption)
    assert "95 % CI" in captions and "Heyn test lines" in captions
    assert len(res["table"]) == n and "touches_border" in res["table"].columns
    # the summary JSON carries provenance
    summary = json.loads(summary_json(res))
    assert summary["provenance"]["microseg_version"] and summary["unit"] == "um"
    assert summary["n_grains"] == n


def test_exports_carry_the_grain_map_table_summary_and_report():
    at = _grain_app()
    res = at.session_state["grain_result"]
    base = np.zeros((*res["labels"].shape, 3), np.uint8)
    zf = zipfile.ZipFile(io.BytesIO(export_zip(res, base, "sample")))
    names = set(zf.namelist())
    assert {"sample_grains.tif", "sample_grains.csv", "sample_grains.json",
            "sample_summary.json", "sample_report.png"} <= names  # fmt: skip
    with tifffile.TiffFile(io.BytesIO(zf.read("sample_grains.tif"))) as tif:
        labels = tif.asarray()
        info = json.loads(tif.imagej_metadata["Info"])
    np.testing.assert_array_equal(labels, res["labels"])
    assert info["parameters"]["pixel_size_um"] == 0.5 and info["microseg_version"]
    table = pd.read_csv(io.BytesIO(zf.read("sample_grains.csv")))
    assert len(table) == int(labels.max())
    side = json.loads(zf.read("sample_grains.json"))
    assert side["n_rows"] == len(table) and side["model"] == "truth"
    report = Image.open(io.BytesIO(zf.read("sample_report.png")))
    assert report.size[0] > 1000 and report.size[1] > 600
    # the OME-TIFF carries the physical pixel size for napari, OMERO and QuPath
    from webui.grains.exports import grain_map_ome_tiff

    with tifffile.TiffFile(io.BytesIO(grain_map_ome_tiff(res))) as tif:
        assert tif.is_ome and 'PhysicalSizeX="0.5"' in tif.ome_metadata
        np.testing.assert_array_equal(tif.asarray(), res["labels"])
    # the QuPath objects are the grain map's grains, with the table's measurements
    from microseg.geojson import read_geojson

    gj = zf.read("sample.geojson")
    back, _, classes = read_geojson(gj, labels.shape)
    np.testing.assert_array_equal(back, labels)
    assert set(classes) == {"Grain"} and len(classes) == len(table)
    first = json.loads(gj)["features"][0]["properties"]
    row = table[table["label"] == first["label"]].iloc[0]
    assert first["measurements"]["area_um2"] == pytest.approx(row["area_um2"])


def test_histogram_bins_select_the_grains_they_count():
    rng = np.random.default_rng(0)
    area = rng.lognormal(5, 0.7, 300)
    for log in (False, True):
        edges = histogram_bins(area, log=log)
        counts, _ = np.histogram(np.log10(area) if log else area, bins=edges)
        for b in (0, int(np.argmax(counts)), len(counts) - 1):
            assert grains_in_bins(area, edges, [b], log).sum() == counts[b]
        assert grains_in_bins(area, edges, list(range(len(counts))), log).all()


def test_grain_markers_shrink_with_crowding_and_the_map_keeps_its_aspect():
    # the sample: 160 grains in 512x512 -> the full marker; a 900x1320 micrograph with
    # 950 grains -> small markers in the side-by-side layout, larger at full width
    assert marker_size((512, 512), 160, 560) == 7.0
    crowded = marker_size((900, 1320), 950, 560)
    assert 3.0 <= crowded <= 5.5 and marker_size((900, 1320), 950, 1000) > crowded
    assert marker_size((4000, 4000), 100_000, 560) == 3.0
    table = pd.DataFrame({"label": [1, 2], "y": [10.0, 50.0], "x": [20.0, 60.0]})
    wide = map_figure(np.zeros((900, 1320, 3), np.uint8), table, display_width=1000)
    square = map_figure(np.zeros((512, 512, 3), np.uint8), table, display_width=560)
    assert wide.layout.height == int(1000 * 900 / 1320 + 80)
    assert square.layout.height == 560 + 80
    assert wide.data[1].marker.size == marker_size((900, 1320), 2, 1000)


def test_a_large_map_is_shown_reduced_on_image_pixel_axes():
    rgb = np.zeros((2000, 4500, 3), np.uint8)
    rgb[:, 2::3] = 255  # a one-pixel line in every third column ...
    shown, f = display_image(rgb)
    assert f == 3 and shown.shape == (667, 1500, 3)
    assert (shown == 85).all()  # ... stays visible as a third of its brightness
    fig = map_figure(rgb, None)
    im = fig.data[0]
    assert (im.dx, im.dy, im.x0, im.y0) == (3, 3, 1.0, 1.0)  # block centres in image pixels
    decoded = Image.open(io.BytesIO(base64.b64decode(im.source.split(",", 1)[1])))
    assert decoded.size == (1500, 667)
    assert fig.layout.xaxis.range == (0, 4500)
    small, f1 = display_image(np.zeros((512, 512, 3), np.uint8))
    assert f1 == 1 and small.shape == (512, 512, 3)


def test_full_width_map_layout_keeps_the_linked_selection():
    at = _grain_app()
    assert at.toggle(key="grains_map_wide").value is False  # square sample: side by side
    at.toggle(key="grains_map_wide").set_value(True).run()
    assert not at.exception
    assert at.radio(key="grains_hist_kind").value == "logarea"
    at.number_input(key="grains_pick_id").set_value(5).run()
    assert not at.exception
    assert any("1 grain(s) selected" in m.value for m in at.success)


def test_grains_page_on_a_series_without_grain_model(monkeypatch):
    import webui.models

    monkeypatch.setattr(webui.models, "builtin_available", lambda name: False)
    at = new_app()
    at.button(key="open_synthetic-nuclei-series").click().run()
    at.switch_page(GRAINS).run()
    assert not at.exception and not at.error
    infos = [i.value for i in at.info]
    assert any("no grain-boundary model" in v for v in infos)
    assert any("is a nuclei sample" in v for v in infos)  # the wrong kind of image is named
    at.switch_page(COMPARE).run()
    assert not at.exception and not at.error
    assert at.button(key="cmp_run").disabled
    # ... and a grain sample opens from there
    at.button(key="quick_open_synthetic-grains").click().run()
    assert not at.exception
    assert at.session_state["image_source"]["key"] == "synthetic-grains"
    assert not any("is a nuclei sample" in i.value for i in at.info)


def test_select_a_grain_by_id_shows_its_row():
    at = _grain_app()
    at.number_input(key="grains_pick_id").set_value(7).run()
    assert not at.exception
    assert at.session_state["grains_ui"]["selected"] == [7]
    assert "1 grain(s) selected" in at.success[0].value
    rows = [df for df in at.dataframe if len(df.value) == 1]
    assert rows and int(rows[0].value["label"].iloc[0]) == 7
    at.button(key="grains_clear_sel").click().run()
    assert at.session_state["grains_ui"]["selected"] == []


def test_corrections_update_grains_and_g():
    at = _grain_app()
    labels = at.session_state["grain_result"]["labels"]
    n0 = int(labels.max())
    a, b = _neighbours(labels)
    _remove_boundary(at, a, b)
    assert not at.exception and not at.error
    assert int(at.session_state["grain_result"]["labels"].max()) == n0 - 1
    assert _metric(at, "Grains") == str(n0 - 1)
    # split the largest grain along a line through it, from edge to edge of its box
    table = at.session_state["grain_result"]["table"]
    big = table.loc[table["area_px"].idxmax()]
    lab = at.session_state["grain_result"]["labels"]
    ys, xs = np.nonzero(lab == int(big["label"]))
    y = int(round(big["y"]))
    row = xs[ys == y]
    at.number_input(key="grains_add_x0").set_value(int(row.min()) - 2)
    at.number_input(key="grains_add_y0").set_value(y)
    at.number_input(key="grains_add_x1").set_value(int(row.max()) + 2)
    at.number_input(key="grains_add_y1").set_value(y)
    at.button(key="grains_add").click().run()
    assert not at.exception and not at.error, at.error
    assert int(at.session_state["grain_result"]["labels"].max()) == n0
    assert len(at.session_state["grains_ui"]["edits"]) == 2
    at.button(key="grains_undo").click().run()
    assert int(at.session_state["grain_result"]["labels"].max()) == n0 - 1
    # merge two selected grains (as picked on the map)
    lab = at.session_state["grain_result"]["labels"]
    a2, b2 = _neighbours(lab)
    at.session_state["grains_ui"]["selected"] = [a2, b2]
    at.run()
    at.button(key="grains_rm_sel").click().run()
    assert not at.exception and not at.error
    assert int(at.session_state["grain_result"]["labels"].max()) == n0 - 2
    # an impossible correction is one sentence, not a traceback
    at.number_input(key="grains_rm_a").set_value(a)
    at.number_input(key="grains_rm_b").set_value(a)
    at.button(key="grains_rm_ids").click().run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.endswith(".")


def _paint(at, mode: str, points_yx: list[tuple[int, int]]) -> None:
    """Inject a stroke on the grain-map painting canvas (image pixels -> display pixels)."""
    from webui.annotate import display_geometry
    from webui.grains.corrections import PAINT_COLOURS, PAINT_WIDTH

    g = at.session_state["grains_ui"]
    h, w = at.session_state["grain_result"]["labels"].shape
    width, _, scale = display_geometry((h, w))
    used = at.session_state["_grains_paint_used"] if "_grains_paint_used" in at.session_state else 0
    key = (f"grains_paint_{at.session_state['image_id']}_{g.get('version')}_{mode}_"
           f"{used}_0_{h}_0_{w}")  # fmt: skip
    pts = [((x + 0.5) * scale, (y + 0.5) * scale) for y, x in points_yx]
    cmds = [["M", *pts[0]]] + [["L", *p] for p in pts[1:]]
    obj = {"type": "path", "stroke": PAINT_COLOURS[mode], "strokeWidth": PAINT_WIDTH[mode],
           "path": cmds, "fill": None}  # fmt: skip
    at.session_state[key] = {"drawing": {"raw": {"objects": [obj]}, "data": None},
                             "backgroundFit": None}  # fmt: skip
    at.run()


def test_painting_on_the_map_splits_and_merges_grains():
    at = _grain_app()
    at.toggle(key="grains_paint_on").set_value(True).run()
    if at.segmented_control(key="grains_paint_mode").value != "add":
        at.segmented_control(key="grains_paint_mode").set_value("add").run()
    labels = at.session_state["grain_result"]["labels"]
    n0 = int(labels.max())
    table = at.session_state["grain_result"]["table"]
    big = table.loc[table["area_px"].idxmax()]
    ys, xs = np.nonzero(labels == int(big["label"]))
    y = int(round(big["y"]))
    row = xs[ys == y]
    # a horizontal stroke across the largest grain, ending one pixel inside it on both sides
    _paint(at, "add", [(y, int(row.min()) + 1), (y, int(row.max()) - 1)])
    assert not at.exception and not at.error, at.error
    new = at.session_state["grain_result"]["labels"]
    assert int(new.max()) == n0 + 1
    assert _metric(at, "Grains") == str(n0 + 1)
    assert at.session_state["grains_ui"]["edits"][-1]["kind"] == "paint_add"
    # erase: a stroke over a boundary between two grains merges them
    a, b = _neighbours(new)
    cy, cx = (
        np.argwhere(
            (new == 0)
            & ndi.binary_dilation(new == a, np.ones((3, 3), bool))
            & ndi.binary_dilation(new == b, np.ones((3, 3), bool))
        )
        .mean(axis=0)
        .round()
        .astype(int)
    )
    at.segmented_control(key="grains_paint_mode").set_value("remove").run()
    _paint(at, "remove", [(cy, cx - 1), (cy, cx + 1)])
    assert not at.exception and not at.error, at.error
    assert int(at.session_state["grain_result"]["labels"].max()) == n0
    assert [e["kind"] for e in at.session_state["grains_ui"]["edits"]] == [
        "paint_add",
        "paint_remove",
    ]
    assert any("erased under a painted stroke" in c.value for c in at.caption)
    # undo brings the split grain back
    at.button(key="grains_undo").click().run()
    assert int(at.session_state["grain_result"]["labels"].max()) == n0 + 1
    # a stroke inside one grain cuts nothing: one sentence, the map unchanged
    lab = at.session_state["grain_result"]["labels"]
    table = at.session_state["grain_result"]["table"]
    big = table.loc[table["area_px"].idxmax()]
    yy, xx = int(round(big["y"])), int(round(big["x"]))
    at.segmented_control(key="grains_paint_mode").set_value("add").run()
    _paint(at, "add", [(yy, xx), (yy, xx + 1)])
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.endswith(".")
    assert np.array_equal(at.session_state["grain_result"]["labels"], lab)


def test_corrections_on_a_model_grain_map_survive_reruns():
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.switch_page(GRAINS).run()
    assert not at.exception and not at.error
    if at.selectbox(key="grains_model").value != "Built-in grains model (U-Net)":
        pytest.skip("the built-in grains model is not installed")
    version = at.session_state["grains_ui"]["version"]
    at.run()  # a rerun without any change keeps the same grain map
    assert at.session_state["grains_ui"]["version"] == version
    labels = at.session_state["grain_result"]["labels"]
    n0 = int(labels.max())
    a, b = _neighbours(labels)
    _remove_boundary(at, a, b)
    at.run()
    at.run()
    assert not at.exception and not at.error
    assert not at.info or all("discarded" not in i.value for i in at.info)
    assert len(at.session_state["grains_ui"]["edits"]) == 1
    assert int(at.session_state["grain_result"]["labels"].max()) == n0 - 1


def test_paint_background_shows_lines_and_the_boundary_probability():
    from webui.grains.corrections import paint_background

    base = np.full((40, 60, 3), 100, np.uint8)
    labels = np.ones((40, 60), np.int32)
    labels[:, 30] = 0  # one vertical boundary
    proba = np.zeros((40, 60), np.float32)
    proba[20, :] = 1.0  # a ridge the map did not use
    bg = paint_background(base, labels, (0, 40, 0, 60), (60, 40))
    assert (bg[:, 30] == (255, 220, 0)).all() and (bg[:, 10] == 100).all()
    tinted = paint_background(base, labels, (0, 40, 0, 60), (60, 40), proba)
    assert tinted[20, 10, 1] < 50 and tinted[20, 10, 0] > 200  # magenta on the ridge
    assert (tinted[5, 10] == 100).all()  # untouched where the probability is 0
    # shrunk 3x, the one-pixel line is thickened so it survives the resize
    small = paint_background(base, labels, (0, 40, 0, 60), (20, 13))
    assert (small == (255, 220, 0)).all(axis=-1).any()


def test_boundary_probability_toggle_on_a_model_map():
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.switch_page(GRAINS).run()
    if at.selectbox(key="grains_model").value != "Built-in grains model (U-Net)":
        pytest.skip("the built-in grains model is not installed")
    assert not any(t.key == "grains_paint_proba" for t in at.toggle)  # painting is off
    at.toggle(key="grains_paint_on").set_value(True).run()
    at.toggle(key="grains_paint_proba").set_value(True).run()
    assert not at.exception and not at.error
    # the ground truth has no probability to show
    at.selectbox(key="grains_model").set_value("Ground-truth boundaries of the sample").run()
    assert not at.exception
    assert not any(t.key == "grains_paint_proba" for t in at.toggle)


def test_pixel_size_from_scale_bar_changes_units():
    at = _grain_app()
    at.number_input(key="grains_bar_px").set_value(100.0)
    at.number_input(key="grains_bar_um").set_value(25.0)
    at.button(key="grains_bar_use").click().run()
    assert not at.exception
    assert at.session_state["pixel_size_override"] == pytest.approx(0.25)
    assert at.session_state["grain_result"]["pixel_size"] == pytest.approx(0.25)
    # a 2x smaller pixel gives 4x more grains per mm², i.e. G larger by 2
    assert float(_metric(at, "G planimetric (E112)")) == pytest.approx(8.01 + 2, abs=0.02)


def test_compare_page_trains_both_models_on_example_strokes():
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.switch_page(COMPARE).run()
    assert not at.exception
    assert at.button(key="cmp_run").disabled  # no strokes yet
    at.button(key="cmp_example_strokes").click().run()
    strokes = next(iter(at.session_state["strokes"].values()))
    assert set(np.unique(strokes)) == {0, 1, 2} and (strokes > 0).mean() < 0.03
    at.number_input(key="cmp_seconds").set_value(2)
    at.checkbox(key="cmp_scratch").check()
    at.button(key="cmp_run").click().run(timeout=240)
    assert not at.exception
    errors = [e.value for e in at.error if not e.value.startswith("**Quality:")]
    assert not errors, errors[0]
    res = at.session_state["compare_result"]
    assert set(res["models"]) == {"classical", "deep", "scratch"}
    # every column has its quality verdict; a U-Net trained from scratch for 2 s is flagged
    assert set(res["quality"]) == set(res["models"])
    boxes = [e.value for e in (*at.success, *at.warning, *at.error)
             if e.value.startswith("**Quality:")]  # fmt: skip
    assert len(boxes) == 3
    assert res["quality"]["scratch"].verdict != "ok", res["quality"]["scratch"].checks
    scores = res["scores"].set_index("grain map")
    assert "ground truth" in scores.index
    rf = scores.loc["Classical ML (random forest)"]
    assert 0 < rf["boundary F1 (2 px)"] <= 1
    assert np.isfinite(rf["KS distance (log area)"])
    assert any(m.label == "Boundary F1" for m in at.metric)
    _check_compare_zip(res)
    # the comparison's models can be measured on the Grains page
    at.switch_page(GRAINS).run()
    label = "From the ML vs DL page: Classical ML (random forest)"
    assert label in at.selectbox(key="grains_model").options
    at.selectbox(key="grains_model").set_value(label).run()
    assert not at.exception and not at.error
    n = int(at.session_state["grain_result"]["labels"].max())
    assert n == int(res["labels"]["classical"].max())


def _check_compare_zip(res: dict) -> None:
    """The comparison's ZIP holds each model's maps, the scores, the areas and the figure."""
    from webui.grains.compare_exports import compare_zip

    base = np.zeros((*res["labels"]["deep"].shape, 3), np.uint8)
    zf = zipfile.ZipFile(io.BytesIO(compare_zip(res, base, "s", "sample.tif")))
    names = set(zf.namelist())
    for name in ("random_forest", "unet", "unet_from_scratch"):
        assert {f"s_{name}_grains.tif", f"s_{name}_boundary.tif"} <= names
    labels = tifffile.imread(io.BytesIO(zf.read("s_unet_grains.tif")))
    np.testing.assert_array_equal(labels, res["labels"]["deep"])
    proba = tifffile.imread(io.BytesIO(zf.read("s_random_forest_boundary.tif")))
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba, res["boundary"]["classical"])
    scores = pd.read_csv(io.BytesIO(zf.read("s_compare_scores.csv")))
    assert list(scores["grain map"]) == list(res["scores"]["grain map"])
    areas = pd.read_csv(io.BytesIO(zf.read("s_compare_areas.csv")))
    for name, a in res["areas"].items():
        np.testing.assert_allclose(np.sort(areas.loc[areas["grain map"] == name, "area_px"]),
                                   np.sort(a))  # fmt: skip
    assert "area_um2" in areas.columns  # the sample has a pixel size
    prov = json.loads(zf.read("s_compare.json"))
    assert prov["microseg_version"] and prov["parameters"]["deep_learning_seconds"] == 2
    assert set(prov["models"]) == {"random_forest", "unet", "unet_from_scratch"}
    figure = Image.open(io.BytesIO(zf.read("s_compare.png")))
    assert figure.size[0] > 3 * 420 and figure.size[1] > 2 * 420


@pytest.mark.parametrize("page", [GRAINS, COMPARE])
def test_without_an_image_the_grain_samples_open_from_the_page(page):
    at = new_app()
    at.switch_page(page).run()
    assert any("Open a sample" in i.value for i in at.info)
    labels = [b.label for b in at.button if b.key and b.key.startswith("quick_open_")]
    assert "Open the sample: Synthetic polycrystal" in labels
    assert not any("nuclei" in label.lower() for label in labels)
    at.button(key="quick_open_synthetic-grains").click().run()
    assert not at.exception
    assert at.session_state["image_source"]["key"] == "synthetic-grains"
    assert not any("Open a sample" in i.value for i in at.info)


def _progress_script():
    import numpy as np
    import streamlit as st

    from webui.grains.boundary import _predict_with_progress

    class Plain:  # a random forest: no progress
        def predict_proba(self, x):
            return np.ones((2, *x.shape), np.float32)

    class Tiled:  # a U-Net: reports progress
        def predict_proba(self, x, progress=None):
            progress(0.5)
            return np.full((2, *x.shape), 0.25, np.float32)

    slot = st.empty()
    a = _predict_with_progress(Plain(), np.zeros((4, 4)), slot)
    b = _predict_with_progress(Tiled(), np.zeros((4, 4)), slot)
    st.markdown(f"sums {a.sum():g} {b.sum():g}")


def test_prediction_progress_lives_in_its_slot_and_leaves_it_empty():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_progress_script).run()
    assert not at.exception
    assert at.markdown[0].value == "sums 32 8"
    assert len(at.get("progress")) == 0 and len(at.get("spinner")) == 0


def test_fields_of_a_specimen_pool_into_one_g_with_a_field_to_field_ci():
    at = _grain_app()
    at.button(key="grains_field_add").click().run()
    assert not at.exception and not at.error
    fields = at.session_state["grain_fields"]
    assert len(fields) == 1
    g1 = at.session_state["grain_result"]["summary"]["astm_g_planimetric"]
    assert fields[0]["summary"]["astm_g_planimetric"] == pytest.approx(g1)
    assert any("One field" in c.value for c in at.caption)
    # the same plane again replaces its field
    at.button(key="grains_field_add").click().run()
    assert len(at.session_state["grain_fields"]) == 1
    assert any("Replaced the field" in s.value for s in at.success)

    # a second micrograph (a quarter of the sample): no pixel size, so it cannot be added
    img = np.asarray(at.session_state["image"].frame(0, 0))[:256, :256]
    buf = io.BytesIO()
    tifffile.imwrite(buf, img)
    at.switch_page("pages/0_Home.py").run()
    at.file_uploader(key="upload").set_value(("quarter.tif", buf.getvalue(), "image/tiff")).run()
    at.switch_page(GRAINS).run()
    at.button(key="grains_field_add").click().run()
    assert "pixel size" in at.error[0].value
    assert len(at.session_state["grain_fields"]) == 1  # kept across images
    at.number_input(key="grains_px_size").set_value(0.5).run()
    at.button(key="grains_field_add").click().run()
    assert not at.exception and not at.error
    fields = at.session_state["grain_fields"]
    assert [f["image"] for f in fields][1] == "quarter.tif"
    from microseg.astm import g_from_na

    mean_na = np.mean([f["summary"]["n_a"] for f in fields])
    assert _metric(at, "Fields") == "2"
    assert float(_metric(at, "Specimen G planimetric")) == pytest.approx(
        g_from_na(mean_na), abs=0.006
    )
    assert any("95 % CI" in c.value and "field to field" in c.value for c in at.caption)
    assert any("E112 asks for at least 5" in c.value for c in at.caption)
    from microseg.astm import confidence_interval

    ra = confidence_interval(np.array([f["summary"]["n_a"] for f in fields])).rel_accuracy_pct
    assert any(f"Relative accuracy (planimetric / intercept): {ra:.1f} %" in c.value
               for c in at.caption)  # fmt: skip
    # the fields are kept in the workspace: a new session (a refresh) has them
    again = _grain_app()
    restored = again.session_state["grain_fields"]
    assert [f["image"] for f in restored] == [f["image"] for f in fields]
    pd.testing.assert_frame_equal(restored[1]["table"], fields[1]["table"], check_dtype=False)
    assert _metric(again, "Specimen G planimetric") == _metric(at, "Specimen G planimetric")
    # remove the first field
    at.selectbox(key="grains_field_drop").set_value(1).run()
    assert not at.exception
    assert [f["image"] for f in at.session_state["grain_fields"]] == ["quarter.tif"]
    assert [f["image"] for f in _grain_app().session_state["grain_fields"]] == ["quarter.tif"]


def test_a_data_bar_is_left_out_of_the_measurement():
    from tests.test_roi import with_bar

    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    img = np.asarray(at.session_state["image"].frame(0, 0), float)
    img8 = np.clip(255 * (img - img.min()) / np.ptp(img), 1, 254).astype(np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, with_bar(img8, 48, 0, 255))
    at.file_uploader(key="upload").set_value(("sem.tif", buf.getvalue(), "image/tiff")).run()
    at.switch_page(GRAINS).run()
    assert not at.exception and not at.error
    drop = at.checkbox(key="grains_drop_bar")
    assert drop.value and "Leave out the data bar at the bottom (rows 510-559)" == drop.label
    res = at.session_state["grain_result"]
    assert res["labels"].shape == (510, 512)
    assert (
        res["region"]["y1"] == 510
        and res["region"]["source"] == "the data bar at the bottom (rows 510-559) left out"
    )
    assert any("Measuring rows 0-509, columns 0-511" in c.value for c in at.sidebar.caption)
    assert json.loads(summary_json(res))["region"]["image_shape"] == [560, 512]
    n_without_bar = int(res["labels"].max())
    # keep the bar: its text becomes grains
    at.checkbox(key="grains_drop_bar").uncheck().run()
    assert not at.exception and not at.error
    res = at.session_state["grain_result"]
    assert res["labels"].shape == (560, 512) and res["region"]["source"] == "whole image"
    assert int(res["labels"].max()) > n_without_bar
    # margins the user leaves out
    at.number_input(key="grains_margin_bottom").set_value(100).run()
    at.number_input(key="grains_margin_left").set_value(12).run()
    res = at.session_state["grain_result"]
    assert res["labels"].shape == (460, 500)
    assert res["region"]["source"] == "margins left out: bottom 100, left 12"
    # margins that leave nothing: one sentence, the whole image measured
    at.number_input(key="grains_margin_top").set_value(500).run()
    assert not at.exception
    assert "leaves nothing" in at.sidebar.error[0].value
    assert at.session_state["grain_result"]["labels"].shape == (560, 512)


def test_a_grain_model_on_a_nuclei_image_says_do_not_trust():
    """The built-in grain model on fluorescence nuclei: the verdict and its reasons show."""
    from microseg.samples import list_samples

    if "dsb-sample" not in {s.key for s in list_samples()}:
        pytest.skip("shared data not available")
    at = new_app()
    at.button(key="open_dsb-sample").click().run()
    at.switch_page(GRAINS).run()
    assert not at.exception
    at.selectbox(key="grains_model").set_value("Built-in grains model (U-Net)").run()
    assert not at.exception
    q = at.session_state["grain_result"]["quality"]
    assert q.verdict == "do_not_trust"
    box = next(e for e in at.error if e.value.startswith("**Quality: do not trust.**"))
    assert "isolated blobs" in box.value
    assert "**What to do:**" in box.value
    # the same verdict travels in the summary export
    assert json.loads(summary_json(at.session_state["grain_result"]))["quality"]["verdict"] == (
        "do_not_trust"
    )


def test_the_sample_with_the_built_in_model_has_a_verdict_box():
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.switch_page(GRAINS).run()
    at.selectbox(key="grains_model").set_value("Built-in grains model (U-Net)").run()
    assert not at.exception
    q = at.session_state["grain_result"]["quality"]
    texts = [e.value for e in (*at.success, *at.warning, *at.error)]
    assert any(t.startswith(f"**Quality: {q.label}.**") for t in texts), texts
    assert q.checks["unfamiliarity"] is not None and q.checks["unfamiliarity"] < 1.5


def test_the_verdicts_set_the_pixel_size_gives_g_numbers():
    """No pixel size: the verdict's own input sets it, and the G numbers appear."""
    from microseg.samples import list_samples

    if "dsb-sample" not in {s.key for s in list_samples()}:
        pytest.skip("shared data not available")
    at = new_app()
    at.button(key="open_dsb-sample").click().run()  # a PNG-like TIFF without a pixel size
    at.switch_page(GRAINS).run()
    at.selectbox(key="grains_model").set_value("Built-in grains model (U-Net)").run()
    assert at.session_state["grain_result"]["pixel_size"] is None
    assert at.session_state["grain_result"]["summary"].get("astm_g_planimetric") is None
    assert at.button(key="grains_verdict_px_set").disabled
    at.number_input(key="grains_verdict_px").set_value(0.5).run()
    at.button(key="grains_verdict_px_set").click().run()
    assert not at.exception
    result = at.session_state["grain_result"]
    assert result["pixel_size"] == pytest.approx(0.5)
    assert at.number_input(key="grains_px_size").value == pytest.approx(0.5)
    assert result["summary"]["astm_g_planimetric"] is not None
    assert "grains_verdict_px" not in [w.key for w in at.number_input]  # done: gone
