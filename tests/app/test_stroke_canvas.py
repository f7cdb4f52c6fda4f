"""The painting canvas's mapping from display strokes to image pixels."""

from __future__ import annotations

import numpy as np

from webui.stroke_canvas import stroke_mask

RED, CYAN = "#ff2d2d", "#00e5ff"


def test_stroke_mask_maps_a_zoomed_canvas_back_to_image_pixels():
    # a 1000 x 1200 image, the canvas shows rows 200-712 and columns 300-812 at 460 px
    region, shape, size = (200, 712, 300, 812), (1000, 1200), (460, 460)
    scale = 460 / 512
    # a horizontal stroke at image row 456 from column 400 to column 700
    pts = [((x - 300 + 0.5) * scale, (456 - 200 + 0.5) * scale) for x in (400, 700)]
    obj = {"type": "path", "stroke": RED, "strokeWidth": 3,
           "path": [["M", *pts[0]], ["L", *pts[1]]], "fill": None}  # fmt: skip
    mask = stroke_mask([obj], RED, region, shape, size)
    assert mask.shape == shape
    ys, xs = np.nonzero(mask)
    assert abs(np.median(ys) - 456) <= 1
    assert abs(xs.min() - 400) <= 2 and abs(xs.max() - 700) <= 2
    # a stroke of another colour is not taken
    assert not stroke_mask([obj], CYAN, region, shape, size).any()
