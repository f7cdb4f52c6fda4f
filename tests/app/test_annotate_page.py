"""AppTest: the Annotate page with a drawing injected through session state."""

from __future__ import annotations

import numpy as np
import pytest

from tests.apphelpers import new_app

pytestmark = pytest.mark.timeout(300)


def _path(colour: str, points: list[tuple[float, float]], width: float = 12) -> dict:
    cmds = [["M", *points[0]]] + [["L", *p] for p in points[1:]]
    return {"type": "path", "stroke": colour, "strokeWidth": width, "path": cmds,
            "fill": None}  # fmt: skip


def _open_annotate(sample: str = "synthetic-nuclei-series"):
    at = new_app()
    at.button(key=f"open_{sample}").click().run()
    at.switch_page("pages/2_Annotate.py").run()
    assert not at.exception
    return at


def _canvas_key(at) -> str:
    h, w = at.session_state["image"].shape_yx
    return f"canvas_{at.session_state['image_id']}_0_0_{h}_0_{w}_{at.session_state['canvas_gen']}"


def _draw(at, objects: list[dict]) -> None:
    at.session_state[_canvas_key(at)] = {
        "drawing": {"raw": {"objects": objects}, "data": None},
        "backgroundFit": None,
    }
    at.run()


def test_no_strokes_asks_for_two_classes():
    at = _open_annotate()
    assert any("two classes" in i.value for i in at.info)


def test_one_class_only_is_refused_with_a_sentence():
    at = _open_annotate()
    colours = [c["colour"] for c in at.session_state["classes"]]
    _draw(at, [_path(colours[0], [(10, 10), (200, 10)])])
    assert not at.exception
    assert any("class" in i.value for i in at.info)
    assert at.session_state["models"] == {}


def test_two_class_strokes_train_live_and_map_to_image_pixels():
    at = _open_annotate()
    image = at.session_state["image"]
    truth = at.session_state["ground_truth"]["labels"][0]
    colours = [c["colour"] for c in at.session_state["classes"]]
    # display scale: the canvas shows the whole 256x256 frame at 460x460
    scale = 460 / image.shape_yx[1]
    ys, xs = np.nonzero(truth)
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(truth == 0)
    by, bx = np.unravel_index(np.argmax(dist), dist.shape)  # farthest from any nucleus
    r = max(2.0, dist[by, bx] / 2)
    bg = [((bx - r) * scale, by * scale), ((bx + r) * scale, by * scale)]
    lab = np.bincount(truth.ravel())[1:].argmax() + 1  # the largest nucleus
    yy, xx = np.nonzero(truth == lab)
    row = int(np.median(yy))
    xs_row = xx[yy == row]
    fg = [((xs_row.min() + 2) * scale, row * scale), ((xs_row.max() - 2) * scale, row * scale)]
    _draw(at, [_path(colours[0], bg, width=4), _path(colours[1], fg, width=4)])
    assert not at.exception
    strokes = at.session_state["strokes"][(at.session_state["image_id"], 0)]
    assert set(np.unique(strokes)) == {0, 1, 2}
    # nucleus strokes land on the nucleus in image pixels
    assert truth[strokes == 2].astype(bool).mean() > 0.9
    model = at.session_state["models"]["classical"]
    assert model.task == "nuclei"
    assert any("Random forest updated" in c.value for c in at.caption)
    fractions = at.dataframe[-1].value
    assert len(fractions) == 2
    assert abs(fractions["area fraction (%)"].sum() - 100) < 0.5


def test_undo_removes_last_change():
    at = _open_annotate()
    colours = [c["colour"] for c in at.session_state["classes"]]
    _draw(at, [_path(colours[0], [(10, 10), (300, 10)])])
    key = (at.session_state["image_id"], 0)
    assert key in at.session_state["strokes"]
    at.button(key="annot_undo").click().run()
    assert key not in at.session_state["strokes"]


def test_zoomed_region_strokes_land_at_full_resolution():
    import io

    import tifffile

    rng = np.random.default_rng(0)
    big = rng.integers(0, 200, size=(2048, 2048), dtype=np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, big)
    at = new_app()
    at.file_uploader(key="upload").set_value(("big.tif", buf.getvalue(), "image/tiff"))
    at.run()
    at.switch_page("pages/2_Annotate.py").run()
    assert not at.exception
    at.select_slider(key="annot_zoom_size").set_value(512).run()
    at.slider(key="annot_zoom_cy").set_value(1000).run()
    at.slider(key="annot_zoom_cx").set_value(300).run()
    # region: y 744..1256, x 44..556, shown at 460 px -> 0.898 display px per image px
    colours = [c["colour"] for c in at.session_state["classes"]]
    key = (
        f"canvas_{at.session_state['image_id']}_0_744_1256_44_556_{at.session_state['canvas_gen']}"
    )
    scale = 460 / 512
    at.session_state[key] = {
        "drawing": {
            "raw": {
                "objects": [
                    _path(colours[1], [(100 * scale, 50 * scale), (200 * scale, 50 * scale)], 2)
                ]
            },
            "data": None,
        },
        "backgroundFit": None,
    }
    at.run()
    assert not at.exception
    strokes = at.session_state["strokes"][(at.session_state["image_id"], 0)]
    ys, xs = np.nonzero(strokes == 2)
    assert abs(np.median(ys) - (744 + 50)) <= 1
    assert xs.min() >= 44 + 99 and xs.max() <= 44 + 201


def test_apply_to_every_slice_of_a_z_stack():
    import io

    import tifffile

    at = _open_annotate()
    frame = np.asarray(at.session_state["image"].frame(0), np.float32)
    frame8 = (255 * (frame - frame.min()) / np.ptp(frame)).astype(np.uint8)
    stack = np.stack([frame8, frame8, 255 - frame8])  # the last slice inverted
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, imagej=True, metadata={"axes": "ZYX"})
    at.switch_page("pages/0_Home.py").run()
    at.file_uploader(key="upload").set_value(("zstack.tif", buf.getvalue(), "image/tiff")).run()
    at.switch_page("pages/2_Annotate.py").run()
    image = at.session_state["image"]
    assert (image.n_frames, image.n_slices) == (1, 3)
    colours = [c["colour"] for c in at.session_state["classes"]]
    scale = 460 / image.shape_yx[1]
    bright = np.unravel_index(np.argmax(frame8), frame8.shape)
    dark = np.unravel_index(np.argmin(frame8), frame8.shape)
    _draw(at, [_path(colours[0], [((dark[1] - 3) * scale, dark[0] * scale),
                                  ((dark[1] + 3) * scale, dark[0] * scale)], width=4),
               _path(colours[1], [((bright[1] - 2) * scale, bright[0] * scale),
                                  ((bright[1] + 2) * scale, bright[0] * scale)], width=4)])  # fmt: skip
    assert not at.exception and "classical" in at.session_state["models"]
    assert any(h.value == "Apply to every slice" for h in at.subheader)
    at.button(key="stack_run").click().run()
    assert not at.exception
    maps = at.session_state["predictions"][("stack", "classical", at.session_state["image_id"])]
    assert maps.shape == (3, *image.shape_yx)
    np.testing.assert_array_equal(maps[0], maps[1])  # the same slice twice
    assert (maps[0] != maps[2]).mean() > 0.05  # the inverted slice is segmented as itself
    assert len(at.get("progress")) == 0  # the bar's slot is left empty
    assert at.slider(key="stack_t").label == "Slice"
