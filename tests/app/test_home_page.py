"""AppTest: the home page gallery, uploads and bad files; the image viewer."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from tests.apphelpers import ROOT, new_app

pytestmark = pytest.mark.timeout(300)


def _tiff_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def test_home_lists_synthetic_samples():
    at = new_app()
    assert not at.exception
    labels = [b.label for b in at.button]
    assert labels.count("Open") >= 2
    text = " ".join(m.value for m in at.markdown)
    assert "Synthetic" in text or "synthetic" in text


def test_open_synthetic_grain_sample():
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    assert not at.exception
    assert at.success and "Opened sample" in at.success[0].value
    image = at.session_state["image"]
    assert image.shape_yx == (512, 512)
    assert at.session_state["ground_truth"]  # the grain sample carries its ground truth


def test_upload_16bit_multipage_tiff():
    stack = (np.arange(5 * 64 * 80, dtype=np.uint16).reshape(5, 64, 80) * 7) % 60000
    at = new_app()
    at.file_uploader(key="upload").set_value(("stack.tif", _tiff_bytes(stack), "image/tiff"))
    at.run()
    assert not at.exception
    assert not at.error, at.error[0].value
    image = at.session_state["image"]
    assert image.n_frames * image.n_slices == 5 and image.shape_yx == (64, 80)
    assert image.dtype == np.uint16


def test_upload_for_grains_gives_the_grain_classes():
    at = new_app()
    assert at.radio(key="upload_task").value == "nuclei"  # the session's task
    at.radio(key="upload_task").set_value("grains").run()
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    at.file_uploader(key="upload").set_value(("steel.tif", _tiff_bytes(image), "image/tiff"))
    at.run()
    assert not at.exception and not at.error
    assert at.session_state["task"] == "grains"
    names = [c["name"] for c in at.session_state["classes"]]
    assert names == ["grain interior", "grain boundary"]
    # a change of mind after the upload applies too
    at.radio(key="upload_task").set_value("nuclei").run()
    assert [c["name"] for c in at.session_state["classes"]] == ["background", "nucleus"]
    # opening a grain sample sets the task, and the choice follows it
    at.button(key="open_synthetic-grains").click().run()
    assert at.session_state["task"] == "grains"
    assert at.radio(key="upload_task").value == "grains"


@pytest.mark.parametrize(
    "name,payload",
    [
        ("empty.tif", b""),
        ("notes.png", b"this is not an image at all" * 10),
        ("cut.tif", _tiff_bytes(np.ones((64, 64), np.uint16))[:200]),
    ],
)
def test_bad_upload_gives_one_sentence(name, payload):
    at = new_app()
    at.file_uploader(key="upload").set_value((name, payload, "application/octet-stream"))
    at.run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "Traceback" not in message and message.rstrip().endswith(".")
    assert at.session_state["image"] is None


def test_image_page_on_series_has_frame_slider():
    at = new_app()
    at.button(key="open_synthetic-nuclei-series").click().run()
    at.switch_page("pages/1_Image.py").run()
    assert not at.exception
    slider = at.slider(key="view_t")
    assert slider.max == at.session_state["image"].n_frames - 1
    slider.set_value(5).run()
    assert not at.exception
    assert any("frame" in m.value for m in at.markdown)


def test_root_is_repo():
    assert (ROOT / "app.py").is_file()
