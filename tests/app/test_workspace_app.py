"""AppTest: images and strokes survive a new session through the workspace (Recent work)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from microseg.store import Workspace
from tests.apphelpers import new_app

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def workspace_dir(tmp_path, monkeypatch):
    path = tmp_path / "workspace"
    monkeypatch.setenv("MICROSEG_WORKSPACE", str(path))
    return path


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
