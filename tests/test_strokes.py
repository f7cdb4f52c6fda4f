"""Strokes: canvas drawings to image pixels, merging and validation."""

from __future__ import annotations

import numpy as np
import pytest

from microseg.errors import InputError
from microseg.strokes import (
    ERASE,
    merge_strokes,
    parse_colour,
    strokes_from_paths,
    strokes_from_rgba,
    validate_strokes,
)

COLOURS = ["#1f77b4", "#ff7f0e"]
ERASER = "#ffffff"


def rgba_canvas(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 4), np.uint8)


def paint(canvas: np.ndarray, ys: slice, xs: slice, colour: str, alpha: int = 255) -> None:
    canvas[ys, xs, :3] = parse_colour(colour).astype(np.uint8)
    canvas[ys, xs, 3] = alpha


def test_parse_colour_forms():
    np.testing.assert_array_equal(parse_colour("#ff7f0e"), [255, 127, 14])
    np.testing.assert_array_equal(parse_colour("#fff"), [255, 255, 255])
    np.testing.assert_array_equal(parse_colour("rgba(31, 119, 180, 0.5)"), [31, 119, 180])
    with pytest.raises(InputError):
        parse_colour("blue-ish")


def test_rgba_downscaled_display_maps_to_image_pixels():
    # display is half the image size: each display pixel covers 2x2 image pixels
    canvas = rgba_canvas(50, 60)
    paint(canvas, slice(10, 12), slice(5, 20), COLOURS[1])
    paint(canvas, slice(30, 31), slice(40, 50), COLOURS[0])
    out = strokes_from_rgba(canvas, COLOURS, (100, 120))
    assert out.shape == (100, 120) and out.dtype == np.uint8
    expected = np.zeros((100, 120), np.uint8)
    expected[20:24, 10:40] = 2
    expected[60:62, 80:100] = 1
    np.testing.assert_array_equal(out, expected)


def test_rgba_antialiased_edges_and_blends_are_dropped():
    canvas = rgba_canvas(20, 20)
    paint(canvas, slice(5, 8), slice(2, 18), COLOURS[1])
    paint(canvas, slice(4, 5), slice(2, 18), COLOURS[1], alpha=90)  # soft edge
    # a blend of the two class colours where strokes overlap
    blend = (parse_colour(COLOURS[0]) + parse_colour(COLOURS[1])) / 2
    canvas[12, 2:18, :3] = blend.astype(np.uint8)
    canvas[12, 2:18, 3] = 255
    # slightly off colour (compression/antialias rounding) still counts
    canvas[15, 2:18, :3] = parse_colour(COLOURS[0]).astype(np.uint8) + 6
    canvas[15, 2:18, 3] = 200
    out = strokes_from_rgba(canvas, COLOURS, (20, 20))
    assert (out[4] == 0).all()
    assert (out[5:8, 2:18] == 2).all()
    assert (out[12] == 0).all()
    assert (out[15, 2:18] == 1).all()
    assert out.sum() == 3 * 16 * 2 + 16


def test_rgba_zoomed_in_region_and_thin_lines():
    # canvas shows image rows 40..50, cols 60..70 at 8x: a 1-display-pixel line still labels
    canvas = rgba_canvas(80, 80)
    canvas[43, :, :3] = parse_colour(COLOURS[0]).astype(np.uint8)  # image row 40 + 43 // 8 = 45
    canvas[43, :, 3] = 255
    out = strokes_from_rgba(canvas, COLOURS, (100, 120), region=(40, 60, 50, 70))
    ys, xs = np.nonzero(out)
    assert set(ys.tolist()) == {45}
    assert xs.min() == 60 and xs.max() == 69
    with pytest.raises(InputError):
        strokes_from_rgba(canvas, COLOURS, (100, 120), region=(90, 60, 110, 70))


def test_rgba_eraser_and_bad_input():
    canvas = rgba_canvas(10, 10)
    paint(canvas, slice(2, 4), slice(2, 8), ERASER)
    out = strokes_from_rgba(canvas, COLOURS, (10, 10), eraser_colour=ERASER)
    assert (out[2:4, 2:8] == ERASE).all() and (out == ERASE).sum() == 12
    assert strokes_from_rgba(canvas, COLOURS, (10, 10)).sum() == 0  # white is not a class
    with pytest.raises(InputError):
        strokes_from_rgba(np.zeros((10, 10, 3), np.uint8), COLOURS, (10, 10))


def path_obj(colour: str, width: float, path: list) -> dict:
    return {"type": "path", "stroke": colour, "strokeWidth": width, "path": path}


def test_paths_straight_line_width():
    obj = path_obj(COLOURS[1], 4, [["M", 10, 20.5], ["L", 30, 20.5]])
    out = strokes_from_paths([obj], COLOURS, (50, 50), (50, 50))
    ys, xs = np.nonzero(out)
    assert (out[ys, xs] == 2).all()
    # pixel centres within 2 px of the segment y = 20.5, x in [10, 30]
    assert set(ys.tolist()) == {19, 20, 21}
    assert xs.min() == 8 and xs.max() == 31
    assert out[20, 20] == 2 and out[23, 20] == 0


def test_paths_zoomed_region_offset_and_scale():
    # the canvas shows the image from (100, 200) at 4 display px per image px
    obj = path_obj(COLOURS[0], 2, [["M", 0, 2], ["L", 40, 2]])
    out = strokes_from_paths([obj], COLOURS, (40, 40), (300, 400), offset=(100, 200), scale=4)
    ys, xs = np.nonzero(out)
    assert set(ys.tolist()) == {100}  # canvas y 2 -> image y 100.5: row 100
    assert xs.min() == 200 and xs.max() == 209


def test_paths_quadratic_curve_and_order():
    curve = path_obj(COLOURS[0], 3, [["M", 5, 5], ["Q", 25, 45, 45, 5]])
    over = path_obj(COLOURS[1], 3, [["M", 25, 0], ["L", 25, 49]])
    erase = path_obj(ERASER, 5, [["M", 0, 10], ["L", 49, 10]])
    out = strokes_from_paths(
        [curve, over, erase], COLOURS, (50, 50), (50, 50), eraser_colour=ERASER
    )
    # the curve's midpoint is at (x 25, y 25): painted over by the vertical line
    assert out[25, 25] == 2
    assert out[20, 15] == 1 or out[19, 15] == 1  # on the curve's left flank
    assert (out[8:12] == ERASE).all() and (out[12] == 1).any() and (out[7] == 1).any()
    # colours that are no class (and no eraser) are ignored, as are non-path objects
    other = [path_obj("#00ff00", 3, [["M", 0, 0], ["L", 10, 10]]), {"type": "rect"}]
    assert strokes_from_paths(other, COLOURS, (50, 50), (50, 50)).sum() == 0


def test_paths_matches_rgba_mapping_on_scaled_display():
    obj = path_obj(COLOURS[1], 6, [["M", 20, 20], ["L", 80, 60]])
    out = strokes_from_paths([obj], COLOURS, (100, 100), (50, 50))
    # width 6 display px = 3 image px at half scale
    assert out[20, 25] == 2  # centre of the line in image coordinates
    assert out[5, 5] == 0
    n = int((out == 2).sum())
    length = np.hypot(30, 20)
    assert 2.5 * length < n < 4.5 * length


def test_merge_strokes():
    base = np.zeros((6, 6), np.uint8)
    base[0] = 1
    base[5] = 2
    new = np.zeros((6, 6), np.uint8)
    new[2] = 2
    new[0, :3] = ERASE
    eraser = np.zeros((6, 6), bool)
    eraser[5, 3:] = True
    out = merge_strokes(base, new, eraser)
    assert out.tolist()[0] == [0, 0, 0, 1, 1, 1]
    assert (out[2] == 2).all()
    assert out.tolist()[5] == [2, 2, 2, 0, 0, 0]
    assert base[0, 0] == 1  # inputs untouched
    np.testing.assert_array_equal(merge_strokes(None, new), np.where(new == ERASE, 0, new))
    with pytest.raises(InputError):
        merge_strokes(base, np.zeros((5, 6), np.uint8))


def valid_strokes() -> np.ndarray:
    s = np.zeros((8, 10), np.uint8)
    s[1, 1:4] = 1
    s[6, 5:9] = 2
    return s


def test_validate_accepts_good_strokes():
    validate_strokes(valid_strokes(), (8, 10), 2)
    validate_strokes(valid_strokes(), (3, 8, 10), 3)  # (C, Y, X) shape, one class unpainted


def test_validate_no_strokes():
    with pytest.raises(InputError, match="no strokes"):
        validate_strokes(np.zeros((8, 10), np.uint8), (8, 10), 2)


def test_validate_one_class_names_it():
    s = valid_strokes()
    s[s == 1] = 0
    with pytest.raises(InputError, match="Only 'nucleus' is painted; paint at least two classes"):
        validate_strokes(s, (8, 10), 2, classes=["background", "nucleus"])


def test_validate_shape_mismatch_is_outside_the_image():
    with pytest.raises(InputError, match="outside the image"):
        validate_strokes(np.zeros((9, 10), np.uint8), (8, 10), 2)
    with pytest.raises(InputError):
        validate_strokes(np.zeros((2, 8, 10), np.uint8), (8, 10), 2)


def test_validate_label_range_and_dtype():
    s = valid_strokes()
    s[0, 0] = 3
    with pytest.raises(InputError, match="label 3 but there are only 2 classes"):
        validate_strokes(s, (8, 10), 2)
    with pytest.raises(InputError, match="negative"):
        validate_strokes(valid_strokes().astype(np.int16) - 1, (8, 10), 2)
    with pytest.raises(InputError, match="integer"):
        validate_strokes(valid_strokes().astype(np.float32), (8, 10), 2)
