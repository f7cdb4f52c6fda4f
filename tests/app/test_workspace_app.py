"""AppTest: images and strokes survive a new session through the workspace (Recent work)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from microseg.store import Workspace
from tests.apphelpers import new_app

pytestmark = pytest.mark.timeout(300)


def _path(colour: str, points: list[tuple[float, float]], width: float = 12) -> dict:
    cmds = [["M", *points[0]]] + [["L", *p] for p in points[1:]]
    return {"type": "path", "stroke": colour, "strokeWidth": width, "path": cmds, "fill": None}


def _draw(at, objects: list[dict]) -> None:
    h, w = at.session_state["image"].shape_yx
    key = f"canvas_{at.session_state['image_id']}_0_0_{h}_0_{w}_{at.session_state['canvas_gen']}"
    at.session_state[key] = {"drawing": {"raw": {"objects": objects}, "data": None},
                             "backgroundFit": None}  # fmt: skip
    at.run()
    assert not at.exception


def _bold(at) -> list[str]:
    return [m.value.strip("*") for m in at.markdown if m.value.startswith("**")]


def _has_recent_work(at) -> bool:
    return "Recent work" in [h.value for h in at.header]


def test_strokes_and_classes_come_back_in_a_new_session(workspace_dir):
    at = new_app()
    assert not _has_recent_work(at)  # an empty workspace shows no section
    at.button(key="open_synthetic-nuclei-series").click().run()
    at.switch_page("pages/2_Annotate.py").run()
    assert not at.exception
    colours = [c["colour"] for c in at.session_state["classes"]]
    _draw(at, [_path(colours[0], [(20, 20), (300, 20)])])  # one class: no training
    at.text_input(key="cls_name_0").set_value("medium").run()
    painted = at.session_state["strokes"][(at.session_state["image_id"], 0)].copy()
    assert (painted == 1).sum() > 100

    ws = Workspace.open(workspace_dir)
    (record,) = ws.images()
    assert record.n_labelled == 1
    assert np.array_equal(ws.load_strokes(record.id).frames[0], painted)

    fresh = new_app()  # a browser refresh: a new session, the same server workspace
    assert not fresh.exception and fresh.session_state["image"] is None
    assert _has_recent_work(fresh)
    captions = [c.value for c in fresh.caption]
    assert "256 × 256 px, 170 frames" in captions and "1 labelled frame" in captions
    fresh.button(key=f"ws_open_{record.id}").click().run()
    assert not fresh.exception
    assert "Opened from recent work" in fresh.success[0].value
    restored = fresh.session_state["strokes"][(fresh.session_state["image_id"], 0)]
    assert np.array_equal(restored, painted)
    assert fresh.session_state["classes"][0]["name"] == "medium"
    assert fresh.session_state["image"].n_frames == 170
    assert fresh.session_state["ground_truth"]  # a sample opens with its ground truth


def _nuclei_strokes(at) -> list[dict]:
    """A background stroke far from any nucleus and a stroke across the largest nucleus."""
    from scipy import ndimage as ndi

    truth = at.session_state["ground_truth"]["labels"][0]
    colours = [c["colour"] for c in at.session_state["classes"]]
    scale = 460 / truth.shape[1]
    dist = ndi.distance_transform_edt(truth == 0)
    by, bx = np.unravel_index(np.argmax(dist), dist.shape)
    r = max(2.0, dist[by, bx] / 2)
    lab = np.bincount(truth.ravel())[1:].argmax() + 1
    yy, xx = np.nonzero(truth == lab)
    row = int(np.median(yy))
    xs = xx[yy == row]
    return [
        _path(colours[0], [((bx - r) * scale, by * scale), ((bx + r) * scale, by * scale)], 4),
        _path(colours[1], [((xs.min() + 2) * scale, row * scale),
                           ((xs.max() - 2) * scale, row * scale)], 4),
    ]  # fmt: skip


def _train_forest_and_set_pixel_size(workspace_dir):
    at = new_app()
    at.button(key="open_synthetic-nuclei-series").click().run()
    at.switch_page("pages/2_Annotate.py").run()
    strokes = _nuclei_strokes(at)
    _draw(at, strokes)
    first = at.session_state["models"]["classical"]
    ws = Workspace.open(workspace_dir)
    (record,) = ws.images()
    (saved,) = ws.models(record.id)
    assert (saved.kind, saved.task, saved.role) == ("rf", "nuclei", "trained")
    # live retraining after another stroke replaces the saved forest of this image
    _draw(at, strokes + [_path(strokes[0]["stroke"], [(5, 5), (5, 60)], 4)])
    model = at.session_state["models"]["classical"]
    assert model is not first
    (saved,) = ws.models(record.id)
    assert (
        len(ws.models()) == 1
        and saved.summary["training"]["stroke_pixels"]
        == (model.metadata["training"]["stroke_pixels"])
    )
    at.switch_page("pages/1_Image.py").run()
    at.number_input(key="pixel_size_widget").set_value(0.25).run()
    assert not at.exception
    assert ws.image(record.id).pixel_size_um == pytest.approx(0.25)
    return at, model, record, saved


def _nuclei_page_after_reopen(record):
    fresh = new_app()  # a new session: nothing in memory
    fresh.button(key=f"ws_open_{record.id}").click().run()
    assert not fresh.exception
    fresh.switch_page("pages/4_Nuclei.py").run()
    assert not fresh.exception
    return fresh


def test_trained_forest_and_pixel_size_come_back_in_a_new_session(workspace_dir):
    at, model, record, saved = _train_forest_and_set_pixel_size(workspace_dir)
    frame = at.session_state["image"].frame(0)

    fresh = new_app()
    assert "1 saved model" in [c.value for c in fresh.caption]
    fresh.button(key=f"ws_open_{record.id}").click().run()
    assert not fresh.exception
    assert fresh.session_state["pixel_size_override"] == pytest.approx(0.25)
    assert fresh.session_state["models"] == {}  # nothing is loaded before it is chosen
    fresh.switch_page("pages/1_Image.py").run()
    assert fresh.number_input(key="pixel_size_widget").value == pytest.approx(0.25)
    assert any("0.25 µm" in m.value for m in fresh.markdown)

    fresh.switch_page("pages/4_Nuclei.py").run()
    assert not fresh.exception
    box = fresh.selectbox(key="nuc_model")
    (label,) = [o for o in box.options if o.startswith("Random forest trained on this image")]
    box.set_value(label).run()
    fresh.button(key="nuc_seg_frame").click().run()
    assert not fresh.exception and not fresh.error
    labels = fresh.session_state["nuclei_result"].labels[0]
    truth = fresh.session_state["ground_truth"]["labels"][0]
    n, n_true = len(np.unique(labels[labels > 0])), len(np.unique(truth[truth > 0]))
    assert n >= n_true // 2
    # the model offered again is the one trained in the first session
    from microseg.segmenter import load_segmenter

    again = load_segmenter(saved.path)
    assert np.array_equal(again.predict_proba(frame), model.predict_proba(frame))
    assert fresh.session_state["nuclei_result"].settings["model_sha256"] == saved.sha256


def test_saved_models_that_cannot_be_loaded_are_skipped_with_one_sentence(workspace_dir, tmp_path):
    from microseg.modelfile import save_model

    at = new_app()
    at.button(key="open_synthetic-nuclei-series").click().run()
    ws = Workspace.open(workspace_dir)
    (image,) = ws.images()
    records = {}
    for seed, name in enumerate(["gone", "damaged", "unusable"]):
        weights = {"w": np.full((4, 3), seed, np.float32)}
        meta = {"kind": "rf", "task": "nuclei", "classes": ["background", "nucleus"]}
        path = save_model(tmp_path / f"{name}.safetensors", weights, meta)
        records[name] = ws.add_model(path, f"{name}.safetensors", image_id=image.id,
                                     role="uploaded")  # fmt: skip
    records["gone"].path.unlink()
    raw = bytearray(records["damaged"].path.read_bytes())
    raw[-4:] = b"\x01\x02\x03\x04"  # same size, other bytes
    records["damaged"].path.write_bytes(bytes(raw))

    fresh = _nuclei_page_after_reopen(image)
    assert "3 saved models" in [c.value for c in new_app().caption]
    box = fresh.selectbox(key="nuc_model")
    (label,) = [o for o in box.options if o.startswith("Model file ")]
    assert "unusable.safetensors" in label  # the gone and damaged files are not offered
    warnings = sorted(w.value for w in fresh.warning)
    assert len(warnings) == 2 and not fresh.error
    assert "'damaged.safetensors'" in warnings[0] and "file is damaged" in warnings[0]
    assert "'gone.safetensors'" in warnings[1] and "file is missing" in warnings[1]
    assert all(w.count(". ") == 0 and w.endswith("skipped.") for w in warnings)

    box.set_value(label).run()  # loaded when chosen: it fails, in one sentence
    fresh.run()
    assert not fresh.exception
    assert not [o for o in fresh.selectbox(key="nuc_model").options if o.startswith("Model file")]
    (unusable,) = [w.value for w in fresh.warning if "unusable" in w.value]
    assert "not a model this microseg can use" in unusable and unusable.count(". ") == 0
    assert records["damaged"].path.is_file() and len(ws.models(image.id)) == 3  # nothing deleted


def test_uploaded_model_file_is_saved_with_the_image(workspace_dir, tmp_path):
    from microseg.classical import RandomForestSegmenter

    rng = np.random.default_rng(0)
    img = rng.random((48, 48)).astype(np.float32)
    img[:, 24:] += 2.0
    strokes = np.zeros((48, 48), np.uint8)
    strokes[10:14, 4:20], strokes[30:34, 28:44] = 1, 2
    forest = RandomForestSegmenter()
    forest.fit(img, strokes, classes=["background", "nucleus"], task="nuclei")
    data = forest.save(tmp_path / "my_forest.safetensors").read_bytes()

    at = new_app()
    at.button(key="open_synthetic-nuclei-series").click().run()
    at.switch_page("pages/2_Annotate.py").run()
    at.file_uploader(key="model_upload").set_value(
        ("my_forest.safetensors", data, "application/octet-stream")
    ).run()
    assert not at.exception and not at.error
    ws = Workspace.open(workspace_dir)
    (image,) = ws.images()
    (saved,) = ws.models(image.id)
    assert (saved.name, saved.role, saved.kind) == ("my_forest.safetensors", "uploaded", "rf")
    assert at.session_state["workspace_models"] == {"classical": saved.id}
    at.switch_page("pages/4_Nuclei.py").run()  # offered once, as the session's own model
    options = at.selectbox(key="nuc_model").options
    assert "Classical ML (random forest, trained here)" in options
    assert not any(o.startswith("Model file") for o in options)

    fresh = _nuclei_page_after_reopen(image)
    options = fresh.selectbox(key="nuc_model").options
    assert [o for o in options if o.startswith("Model file my_forest.safetensors (saved ")]
    assert "Classical ML (random forest, trained here)" not in options


def test_cleared_strokes_stay_cleared(workspace_dir):
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.switch_page("pages/2_Annotate.py").run()
    colours = [c["colour"] for c in at.session_state["classes"]]
    _draw(at, [_path(colours[1], [(20, 40), (200, 40)])])
    ws = Workspace.open(workspace_dir)
    (record,) = ws.images()
    assert ws.images()[0].n_labelled == 1
    at.button(key="annot_clear_all").click().run()
    assert ws.load_strokes(record.id).frames == {}

    fresh = new_app()
    fresh.button(key=f"ws_open_{record.id}").click().run()
    assert not any(k[0] == fresh.session_state["image_id"] for k in fresh.session_state["strokes"])


def test_upload_reopens_from_stored_bytes_and_delete_asks_first(workspace_dir):
    stack = (np.arange(3 * 48 * 64, dtype=np.uint16).reshape(3, 48, 64) * 11) % 50000
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, photometric="minisblack")
    at = new_app()
    at.file_uploader(key="upload").set_value(("small.tif", buf.getvalue(), "image/tiff")).run()
    assert not at.exception and not at.error
    (record,) = Workspace.open(workspace_dir).images()
    assert record.name == "small.tif" and record.path.read_bytes() == buf.getvalue()

    fresh = new_app()
    assert "small.tif" in _bold(fresh)
    assert any("64 × 48 px" in c.value for c in fresh.caption)
    fresh.button(key=f"ws_open_{record.id}").click().run()
    assert not fresh.exception
    image = fresh.session_state["image"]
    assert image.dtype == np.uint16 and image.shape_yx == (48, 64)
    assert image.n_frames * image.n_slices == 3
    assert np.array_equal(image.data.reshape(3, 48, 64), stack)

    fresh.button(key=f"ws_delete_{record.id}").click().run()
    assert record.path.is_file()  # nothing is deleted before the confirmation
    fresh.button(key="ws_delete_no").click().run()
    assert Workspace.open(workspace_dir).images()
    fresh.button(key=f"ws_delete_{record.id}").click().run()
    fresh.button(key="ws_delete_yes").click().run()
    assert not fresh.exception
    assert Workspace.open(workspace_dir).images() == []
    assert not record.path.exists()
    assert "small.tif" not in _bold(fresh) and not _has_recent_work(fresh)


def test_unusable_workspace_folder_keeps_the_app_working(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the workspace folder should be")
    monkeypatch.setenv("MICROSEG_WORKSPACE", str(blocker))
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    assert not at.exception
    assert at.session_state["image"] is not None
    assert len(at.warning) == 1
    message = at.warning[0].value
    assert "memory only" in message and str(blocker) in message
    assert message.rstrip().endswith(".") and message.count(". ") == 0


def test_two_tabs_on_one_image_never_overwrite_each_other_unasked(workspace_dir):
    def painted(at):
        return at.session_state["strokes"][(at.session_state["image_id"], 0)].copy()

    def stored():
        ws = Workspace.open(workspace_dir)
        (record,) = ws.images()
        return ws.load_strokes(record.id).frames[0]

    tab_a = new_app()
    tab_a.button(key="open_synthetic-nuclei-series").click().run()
    tab_a.switch_page("pages/2_Annotate.py").run()
    colour = tab_a.session_state["classes"][0]["colour"]
    _draw(tab_a, [_path(colour, [(20, 20), (300, 20)])])
    (record,) = Workspace.open(workspace_dir).images()

    tab_b = new_app()  # a second tab on the same image
    tab_b.button(key=f"ws_open_{record.id}").click().run()
    tab_b.switch_page("pages/2_Annotate.py").run()
    _draw(tab_b, [_path(colour, [(20, 200), (300, 200)])])
    theirs = painted(tab_b)
    assert np.array_equal(stored(), theirs)

    one_stroke = int((painted(tab_a) > 0).sum())
    _draw(tab_a, [_path(colour, [(20, 20), (300, 20)]), _path(colour, [(20, 120), (300, 120)])])
    assert np.array_equal(stored(), theirs)  # tab A did not overwrite tab B
    assert any("another tab" in t.value for t in tab_a.toast)  # said at once
    assert (painted(tab_a) > 0).sum() > one_stroke  # and this tab keeps its new stroke
    tab_a.run()
    (warning,) = [w for w in tab_a.warning if "another tab" in w.value]
    assert "kept in this tab" in warning.value
    tab_a.button(key="conflict_theirs").click().run()
    assert not tab_a.exception and tab_a.session_state["workspace_conflict"] is None
    assert np.array_equal(painted(tab_a), theirs)

    _draw(tab_b, [_path(colour, [(20, 200), (300, 200)]), _path(colour, [(20, 240), (300, 240)])])
    assert tab_b.session_state["workspace_conflict"] is None
    mine = painted(tab_b)
    assert (mine != theirs).any()
    assert np.array_equal(stored(), mine)
    tab_a.run()
    before = painted(tab_a)
    _draw(tab_a, [_path(colour, [(20, 60), (300, 60)])])  # A has B's first save: stale again
    assert (painted(tab_a) != before).any()
    assert tab_a.session_state["workspace_conflict"] is not None
    tab_a.run()  # the notice and its buttons are at the top from the next run
    tab_a.button(key="conflict_mine").click().run()
    assert not tab_a.exception and tab_a.session_state["workspace_conflict"] is None
    assert np.array_equal(stored(), painted(tab_a))
