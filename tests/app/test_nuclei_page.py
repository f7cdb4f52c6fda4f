"""AppTest of the Nuclei page: segment, select, correct, run a series with Stop, track, export."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
import tifffile
from roifile import roiread

from tests.apphelpers import new_app

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def rf_model(tmp_path_factory):
    """A random forest trained on ground truth of a small synthetic series."""
    from microseg.segmenter import load_segmenter
    from tests.nuclei_fixtures import small_series, train_rf_model

    return load_segmenter(train_rf_model(tmp_path_factory.mktemp("rf"), small_series()))


def nuclei_page(model=None):
    at = new_app()
    at.button(key="open_synthetic-nuclei-series").click().run()
    if model is not None:
        at.session_state["models"] = {"classical": model}
    at.switch_page("pages/4_Nuclei.py").run()
    assert not at.exception
    return at


def _texts(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_without_a_model_the_page_says_what_to_do():
    from webui.models import builtin_available

    at = nuclei_page()
    info = " ".join(i.value for i in at.info)
    if not builtin_available("nuclei"):
        assert "No nuclei model yet" in info
        assert any("no built-in nuclei model installed" in c.value for c in at.caption)
        assert at.button(key="nuc_seg_frame").disabled
    assert not at.error


def test_bad_model_file_gives_one_sentence():
    at = nuclei_page()
    at.file_uploader(key="nuc_model_upload").set_value(
        ("model.safetensors", b"\x80\x04not a model at all", "application/octet-stream")
    )
    at.run()
    assert not at.exception
    assert len(at.error) == 1
    assert at.error[0].value.rstrip().endswith(".") and "Traceback" not in at.error[0].value


def test_segment_frame_select_and_correct(rf_model):
    at = nuclei_page(rf_model)
    at.button(key="nuc_seg_frame").click().run()
    assert not at.exception and not at.error
    res = at.session_state["nuclei_result"]
    labels = res.labels[0]
    truth = at.session_state["ground_truth"]["labels"][0]
    n = len(np.unique(labels[labels > 0]))
    assert abs(n - len(np.unique(truth[truth > 0]))) <= 4
    assert f"Frame 0: {n} nuclei" in _texts(at)
    rows = res.frame_rows(0)
    assert len(rows) == n and rows["area_um2"].notna().all()  # the sample has 0.65 µm/px
    assert len(at.get("plotly_chart")) >= 3  # image, histogram, scatter (+ none over time)

    # the range-slider fallback of the histogram selects the largest nuclei
    areas = rows["area_px"].sort_values()
    cut = float(areas.iloc[-5]) - 0.5
    slider = at.slider(key="nuc_range_area_um2_t0_0")
    lo, hi = slider.value
    slider.set_value((cut * 0.65**2, hi)).run()
    assert not at.exception
    assert "5 nuclei selected" in _texts(at)
    big = rows.sort_values("area_px")["label"].to_numpy()[-5:]
    overlay = at.session_state["nuclei_ui"]["overlay"]
    white = np.all(overlay == 255, axis=-1)
    for lab in big:  # highlighted outlines are white
        assert white[labels == lab].any()
    small = rows.sort_values("area_px")["label"].to_numpy()[0]
    assert not white[labels == small].any()

    # picking a nucleus shows its row
    at.number_input(key="nuc_pick").set_value(int(small)).run()
    shown = [df.value for df in at.dataframe]
    assert any(len(d) == 6 and int(small) in set(d["label"]) for d in shown)

    # corrections: delete, merge two neighbours, split one across its centre
    doomed = int(big[0])
    at.multiselect(key="nuc_del_ids").set_value([doomed]).run()
    at.button(key="nuc_del").click().run()
    res = at.session_state["nuclei_result"]
    assert doomed not in set(res.frame_rows(0)["label"]) and len(res.frame_rows(0)) == n - 1
    assert f"Frame 0: {n - 1} nuclei" in _texts(at)

    lab = res.labels[0]
    ids = res.frame_rows(0)["label"].to_numpy()
    a, b = _touching_pair(lab, ids)
    at.number_input(key="nuc_merge_a").set_value(a)
    at.number_input(key="nuc_merge_b").set_value(b).run()
    at.button(key="nuc_merge").click().run()
    res = at.session_state["nuclei_result"]
    assert len(res.frame_rows(0)) == n - 2
    merged = res.frame_rows(0).set_index("label").loc[min(a, b)]
    assert merged["area_px"] >= (lab == a).sum() + (lab == b).sum()

    row = res.frame_rows(0).set_index("label").loc[min(a, b)]
    obj = res.labels[0] == min(a, b)
    ys, xs = np.nonzero(obj)
    at.number_input(key="nuc_split_id").set_value(int(min(a, b)))
    y_mid = int(round(row["y"]))
    at.number_input(key="nuc_split_y0").set_value(y_mid)
    at.number_input(key="nuc_split_x0").set_value(int(xs.min()) - 1)
    at.number_input(key="nuc_split_y1").set_value(y_mid)
    at.number_input(key="nuc_split_x1").set_value(int(xs.max()) + 1).run()
    at.button(key="nuc_split_go").click().run()
    assert not at.exception and not at.error, at.error[0].value if at.error else ""
    res = at.session_state["nuclei_result"]
    assert len(res.frame_rows(0)) == n - 1
    at.button(key="nuc_undo").click().run()
    assert len(at.session_state["nuclei_result"].frame_rows(0)) == n - 2
    assert len(at.session_state["nuclei_result"].edits) == 4


def _touching_pair(labels: np.ndarray, ids) -> tuple[int, int]:
    """Two objects that share an edge (else the two closest)."""
    a, b = labels[:, :-1], labels[:, 1:]
    sel = (a != b) & (a > 0) & (b > 0)
    if sel.any():
        return int(a[sel][0]), int(b[sel][0])
    return int(ids[0]), int(ids[1])


def test_series_with_stop_then_track_and_export(rf_model, tmp_path):
    at = nuclei_page(rf_model)
    at.button(key="nuc_seg_all").click().run()
    job = at.session_state["nuclei_ui"]["job"]
    deadline = time.time() + 60
    while job.done < 3 and time.time() < deadline:
        time.sleep(0.2)
    at.button(key="nuc_stop").click().run()
    job.thread.join(60)
    at.run()
    assert not at.exception
    assert at.warning and at.warning[0].value.startswith("Stopped after")
    res = at.session_state["nuclei_result"]
    done = res.frames_done
    assert 3 <= len(done) < 170 and done == list(range(len(done)))
    assert set(res.table["frame"]) == set(done)

    at.slider(key="nuc_t").set_value(2).run()
    assert "Frame 2:" in _texts(at)
    at.radio(key="nuc_scope").set_value("All frames").run()
    assert not at.exception

    at.button(key="nuc_track").click().run()
    assert not at.exception and not at.error
    res = at.session_state["nuclei_result"]
    assert res.tracks is not None and res.tracks.n_tracks >= res.frame_rows(0).shape[0] - 2
    assert any("tracks over" in s.value for s in at.success)
    assert res.track_table is not None and len(res.track_table) == res.tracks.n_tracks

    from webui.nuclei.exports import export_bytes

    stack = tifffile.imread(io.BytesIO(export_bytes(res, "labels")))
    assert stack.shape == (170, 256, 256)
    np.testing.assert_array_equal(stack[1], res.labels[1])
    assert not stack[len(done) :].any()
    tracked = tifffile.imread(io.BytesIO(export_bytes(res, "labels", track_ids=True)))
    one = res.tracks.links.iloc[0]
    assert (
        tracked[int(one["frame"])][stack[int(one["frame"])] == one["label"]] == one["track_id"]
    ).all()
    objects = pd.read_csv(io.BytesIO(export_bytes(res, "objects")))
    assert len(objects) == len(res.table) and "touches_border" in objects
    frames = pd.read_csv(io.BytesIO(export_bytes(res, "frames")))
    assert list(frames["frame"]) == done
    tracks = pd.read_csv(io.BytesIO(export_bytes(res, "tracks")))
    assert {"track_id", "frame", "label", "parent_track_id"} <= set(tracks.columns)
    with zipfile.ZipFile(io.BytesIO(export_bytes(res, "trackmate"))) as zf:
        spots = pd.read_csv(zf.open("tracks_trackmate.csv"))
        assert {"TRACK_ID", "POSITION_X", "FRAME"} <= set(spots.columns)
    rois_zip = export_bytes(res, "rois")
    with zipfile.ZipFile(io.BytesIO(rois_zip)) as zf:
        assert len(zf.namelist()) == len(res.table)
    rois_path = tmp_path / "rois.zip"
    rois_path.write_bytes(rois_zip)
    assert len(roiread(rois_path)) == len(res.table)
    with tifffile.TiffFile(io.BytesIO(export_bytes(res, "labels_ome"))) as tif:
        assert tif.is_ome and "PhysicalSizeX=" in tif.ome_metadata
        np.testing.assert_array_equal(tif.asarray(), stack)
    from microseg.geojson import read_geojson

    gj = export_bytes(res, "geojson")
    for t in done:
        back, _, _ = read_geojson(gj, stack.shape[1:], plane=(t, 0))
        np.testing.assert_array_equal(back, stack[t])
    png = export_bytes(res, "overlay", overlay=at.session_state["nuclei_ui"]["overlay"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    prov = json.loads(export_bytes(res, "provenance"))
    assert prov["microseg_version"] and prov["parameters"]["frames"] == len(done)
    with zipfile.ZipFile(io.BytesIO(export_bytes(res, "all"))) as zf:
        names = set(zf.namelist())
    assert {"labels.tif", "objects.csv", "objects.json", "tracks.csv", "rois.zip",
            "nuclei.geojson"} <= names  # fmt: skip


def test_nucleus_size_rescales_the_builtin_model():
    from webui.models import builtin_available

    if not builtin_available("nuclei"):
        pytest.skip("no built-in nuclei model installed")
    at = nuclei_page()
    at.selectbox(key="nuc_model").set_value("Built-in nuclei model (U-Net)").run()
    assert not at.radio(key="nuc_size_mode").disabled
    assert at.radio(key="nuc_size_mode").value == "Estimate from the image"
    at.radio(key="nuc_size_mode").set_value("Type it in").run()
    at.number_input(key="nuc_diameter").set_value(36.0).run()
    at.button(key="nuc_seg_frame").click().run()
    assert not at.exception and not at.error
    res = at.session_state["nuclei_result"]
    assert res.settings["object_diameter_px"] == 36.0
    rescaled = res.labels[0].copy()
    at.radio(key="nuc_size_mode").set_value("Use the image as it is").run()
    at.button(key="nuc_seg_frame").click().run()
    res = at.session_state["nuclei_result"]
    assert res.settings["object_diameter_px"] is None
    assert not np.array_equal(res.labels[0], rescaled)  # 36 px: the frame was halved


def test_nucleus_size_is_disabled_for_a_model_without_a_training_size(rf_model):
    at = nuclei_page(rf_model)
    assert at.radio(key="nuc_size_mode").disabled


def test_threshold_slider_starts_at_the_models_value(rf_model):
    from webui.models import builtin_available

    at = nuclei_page(rf_model)
    sliders = [s for s in at.slider if s.label == "Foreground threshold"]
    assert sliders and sliders[0].value == 0.5  # the forest records none
    if builtin_available("nuclei"):
        from microseg.zoo import load_builtin

        at.selectbox(key="nuc_model").set_value("Built-in nuclei model (U-Net)").run()
        sliders = [s for s in at.slider if s.label == "Foreground threshold"]
        assert sliders[0].value == load_builtin("nuclei").metadata["instances"]["threshold"]
        sliders[0].set_value(0.6).run()
        at.button(key="nuc_seg_frame").click().run()
        assert not at.exception
        assert at.session_state["nuclei_result"].settings["threshold"] == 0.6


def test_split_depth_slider_reaches_the_segmenter(rf_model):
    at = nuclei_page(rf_model)
    depth = [s for s in at.slider if s.label == "Split depth"]
    assert depth and depth[0].value == 0.15  # the default; the forest records none
    depth[0].set_value(0.4).run()
    at.button(key="nuc_seg_frame").click().run()
    assert not at.exception
    assert at.session_state["nuclei_result"].settings["split_depth"] == 0.4
    at.toggle(key="nuc_split").set_value(False).run()
    assert [s for s in at.slider if s.label == "Split depth"][0].disabled


def test_without_an_image_the_nuclei_samples_open_from_the_page():
    at = new_app()
    at.switch_page("pages/4_Nuclei.py").run()
    assert any("Open a sample" in i.value for i in at.info)
    at.button(key="quick_open_synthetic-nuclei-series").click().run()
    assert not at.exception
    assert at.session_state["image_source"]["key"] == "synthetic-nuclei-series"
    assert at.selectbox(key="nuc_model").options  # the page is drawn for the series


def test_a_grain_sample_on_the_nuclei_page_is_pointed_out():
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.switch_page("pages/4_Nuclei.py").run()
    assert not at.exception
    assert any("is a grains sample" in i.value for i in at.info)
    at.button(key="quick_open_synthetic-nuclei-series").click().run()
    assert at.session_state["image_source"]["key"] == "synthetic-nuclei-series"
    assert not any("is a grains sample" in i.value for i in at.info)


def _draw(at, mode: str, points_yx: list[tuple[float, float]]) -> None:
    """Inject a stroke on the corrections canvas (image pixels -> display pixels)."""
    from webui.annotate import display_geometry
    from webui.nuclei.corrections import DRAW_COLOUR, DRAW_WIDTH

    h, w = at.session_state["nuclei_result"].labels[0].shape
    _, _, scale = display_geometry((h, w))
    used = at.session_state["_nuc_draw_used"] if "_nuc_draw_used" in at.session_state else 0
    key = f"nuc_draw_{at.session_state['image_id']}_0_{mode}_{used}_0_{h}_0_{w}"
    pts = [((x + 0.5) * scale, (y + 0.5) * scale) for y, x in points_yx]
    cmds = [["M", *pts[0]]] + [["L", *p] for p in pts[1:]]
    obj = {"type": "path", "stroke": DRAW_COLOUR, "strokeWidth": DRAW_WIDTH, "path": cmds,
           "fill": None}  # fmt: skip
    at.session_state[key] = {"drawing": {"raw": {"objects": [obj]}, "data": None},
                             "backgroundFit": None}  # fmt: skip
    at.run()


def test_draw_on_the_frame_to_merge_split_and_delete(rf_model):
    at = nuclei_page(rf_model)
    at.button(key="nuc_seg_frame").click().run()
    res = at.session_state["nuclei_result"]
    n = len(res.frame_rows(0))
    rows = res.frame_rows(0).set_index("label")
    a, b = _touching_pair(res.labels[0], rows.index.to_numpy())
    at.toggle(key="nuc_draw_on").set_value(True).run()
    if at.segmented_control(key="nuc_draw_mode").value != "merge":
        at.segmented_control(key="nuc_draw_mode").set_value("merge").run()
    # merge: a stroke from the centre of one nucleus to the centre of its neighbour
    _draw(at, "merge", [(rows.loc[a, "y"], rows.loc[a, "x"]), (rows.loc[b, "y"], rows.loc[b, "x"])])
    assert not at.exception and not at.error, at.error[0].value if at.error else ""
    res = at.session_state["nuclei_result"]
    assert len(res.frame_rows(0)) == n - 1
    assert res.edits[-1].endswith("(drawn)") and "merged" in res.edits[-1]
    assert any("merged" in m.value for m in at.success)  # the outcome, beside the drawing
    # split the merged nucleus again across its middle
    keep = min(a, b)
    ys, xs = np.nonzero(res.labels[0] == keep)
    y_mid = float(np.median(ys))
    row = xs[ys == round(y_mid)]
    at.segmented_control(key="nuc_draw_mode").set_value("split").run()
    _draw(at, "split", [(y_mid, row.min() - 1), (y_mid, row.max() + 1)])
    assert not at.exception and not at.error, at.error[0].value if at.error else ""
    assert len(at.session_state["nuclei_result"].frame_rows(0)) == n
    # delete: a stroke over one nucleus
    res = at.session_state["nuclei_result"]
    victim = int(res.frame_rows(0)["label"].iloc[-1])
    vy, vx = np.argwhere(res.labels[0] == victim).mean(axis=0)
    at.segmented_control(key="nuc_draw_mode").set_value("delete").run()
    _draw(at, "delete", [(vy, vx - 1), (vy, vx + 1)])
    res = at.session_state["nuclei_result"]
    assert victim not in set(res.frame_rows(0)["label"]) and len(res.frame_rows(0)) == n - 1
    # add: outline the deleted nucleus again
    at.segmented_control(key="nuc_draw_mode").set_value("add").run()
    ring = [(vy + 7 * np.sin(a), vx + 7 * np.cos(a)) for a in np.linspace(0, 2 * np.pi, 25)]
    _draw(at, "add", ring)
    assert not at.exception and not at.error, at.error[0].value if at.error else ""
    res = at.session_state["nuclei_result"]
    assert len(res.frame_rows(0)) == n
    new_id = int(res.labels[0].max())
    assert res.labels[0][int(round(vy)), int(round(vx))] == new_id
    assert "added" in res.edits[-1]
    # a stroke on the background is one sentence and changes nothing
    from scipy import ndimage as ndi

    far = np.unravel_index(
        np.argmax(ndi.distance_transform_edt(res.labels[0] == 0)), res.labels[0].shape
    )
    at.segmented_control(key="nuc_draw_mode").set_value("delete").run()
    _draw(at, "delete", [(far[0], far[1]), (far[0], far[1] + 0.5)])
    assert not at.exception
    assert len(at.error) == 1 and "does not touch a nucleus" in at.error[0].value
    assert len(at.session_state["nuclei_result"].frame_rows(0)) == n


def test_train_on_my_corrections_selects_the_retrained_unet(rf_model):
    from webui.models import builtin_available

    if not builtin_available("nuclei"):
        pytest.skip("the built-in nuclei model is not installed")
    at = nuclei_page(rf_model)
    at.button(key="nuc_seg_frame").click().run()
    assert any(c.value.startswith("Correct nuclei of this frame first") for c in at.caption)
    res = at.session_state["nuclei_result"]
    ids = res.frame_rows(0)["label"].to_numpy()
    at.multiselect(key="nuc_del_ids").set_value([int(ids[0]), int(ids[1]), int(ids[2])]).run()
    at.button(key="nuc_del").click().run()
    assert not at.exception
    caption = [c.value for c in at.caption if c.value.startswith("Frame 0: ")]
    assert caption and "corrected place(s)" in caption[0]
    at.slider(key="nuc_retrain_s").set_value(10).run()
    at.button(key="nuc_retrain").click().run()
    job = at.session_state["nuclei_retrain_job"]
    job.join(120)
    assert job.result is not None and job.error is None
    at.run()
    assert not at.exception and not at.error
    assert at.session_state["models"]["deep"] is job.result
    assert at.selectbox(key="nuc_model").value == "Deep learning (U-Net, trained here)"
    text = at.session_state["nuclei_ui"]["retrain_report"][1]
    assert text.startswith("The U-Net was trained on 1 correction(s)")
    training = job.result.metadata["training"]
    assert training["finetuned"] and training["labelled_pixels"] > 0
    # the report says how much of the frame outside the corrections the new model redraws
    from microseg.corrections import changed_elsewhere

    if training["kept_initial"]:
        assert "Outside the corrected places" not in text
    else:
        share = changed_elsewhere(job.kwargs["init"], job.result, job.images[0], job.targets[0])
        assert f"changes the class of {100 * share:.1f} % of the pixels" in text
    # the retrained model segments the frame
    at.button(key="nuc_seg_frame").click().run()
    assert not at.exception and not at.error
    assert len(at.session_state["nuclei_result"].frame_rows(0)) > 0


def _segmented_with_the_builtin():
    """The Nuclei page with frame 0 segmented by the built-in model (skips without it)."""
    from webui.models import builtin_available

    if not builtin_available("nuclei"):
        pytest.skip("no built-in nuclei model installed")
    at = nuclei_page()
    at.selectbox(key="nuc_model").set_value("Built-in nuclei model (U-Net)").run()
    at.button(key="nuc_seg_frame").click().run()
    return at


def test_every_segmented_frame_shows_its_quality_verdict():
    at = _segmented_with_the_builtin()
    assert not at.exception
    texts = [e.value for e in (*at.success, *at.warning, *at.error)]
    boxes = [t for t in texts if t.startswith("**Quality:")]
    assert len(boxes) == 1, texts
    assert any(c.value == "Quality of frame 0:" for c in at.caption)
    res = at.session_state["nuclei_result"]
    assert res.labels[0].max() > 0


def test_the_verdict_is_reused_on_a_rerun_and_redone_after_an_edit():
    at = _segmented_with_the_builtin()
    first = at.session_state["nuclei_ui"]["frame_quality"][2]
    at.run()  # a plain rerun: the same verdict object, not computed again
    assert at.session_state["nuclei_ui"]["frame_quality"][2] is first
    doomed = int(at.session_state["nuclei_result"].labels[0].max())
    at.multiselect(key="nuc_del_ids").set_value([doomed]).run()
    at.button(key="nuc_del").click().run()
    assert not at.exception
    after = at.session_state["nuclei_ui"]["frame_quality"][2]
    assert after is not first
    assert after.checks["n_nuclei"] == first.checks["n_nuclei"] - 1


def test_the_nuclei_model_on_a_grain_micrograph_is_flagged():
    from webui.models import builtin_available

    if not builtin_available("nuclei"):
        pytest.skip("no built-in nuclei model installed")
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.switch_page("pages/4_Nuclei.py").run()
    at.selectbox(key="nuc_model").set_value("Built-in nuclei model (U-Net)").run()
    at.button(key="nuc_seg_frame").click().run()
    assert not at.exception
    flagged = [e.value for e in (*at.warning, *at.error) if e.value.startswith("**Quality:")]
    assert flagged and "unlike the images the model was trained on" in flagged[0], flagged


def test_a_bioimageio_package_of_microseg_loads_and_a_foreign_one_is_refused(tmp_path):
    import json
    import zipfile

    from microseg.deep.bioimageio import export_bioimageio
    from microseg.segmenter import load_segmenter

    package = export_bioimageio(load_segmenter("builtin:nuclei"), tmp_path / "nuclei_pkg.zip")
    at = nuclei_page()
    at.file_uploader(key="nuc_model_upload").set_value(
        ("nuclei_pkg.zip", package.read_bytes(), "application/zip")
    )
    at.run()
    assert not at.exception and not at.error
    assert "Model file: nuclei_pkg.zip" in at.selectbox(key="nuc_model").options

    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("rdf.yaml", json.dumps({"type": "model", "weights": {"torchscript": {}}}))
    at.file_uploader(key="nuc_model_upload").set_value(
        ("foreign.zip", foreign.read_bytes(), "application/zip")
    )
    at.run()
    assert not at.exception
    assert at.error and "foreign.zip holds torchscript weights" in at.error[0].value.replace(
        "'", ""
    )
