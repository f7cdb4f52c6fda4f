"""A painting canvas over a result (grain map, nuclei outlines) that hands back each new
stroke as a full-image pixel mask, for corrections drawn by hand.

The canvas shows a region of the image (zoom for large images) scaled to the display.
Each stroke is used once: the canvas that held it is replaced by a fresh one. A new
canvas mounts with one extra rerun of the page, so the outcome of a stroke is kept
(:func:`report`) and shown above the canvas until the next stroke or :func:`clear_report`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st
from PIL import Image

Region = tuple[int, int, int, int]


def stroke_mask(
    objects: list[dict],
    colour: str,
    region: Region,
    image_shape: tuple[int, int],
    display_size: tuple[int, int],
) -> np.ndarray:
    """Image pixels under the canvas paths drawn in ``colour`` (full-image bool mask).

    ``region`` ``(y0, y1, x0, x1)`` is the part of the image the canvas shows at
    ``display_size`` (width, height).
    """
    from microseg.strokes import strokes_from_paths

    y0, y1, x0, x1 = region
    scale = (display_size[1] / (y1 - y0), display_size[0] / (x1 - x0))
    drawn = strokes_from_paths(objects, [colour], display_shape=(display_size[1], display_size[0]),
                               out_shape=image_shape, offset=(y0, x0), scale=scale)  # fmt: skip
    return drawn == 1


def report(key: str, kind: str, text: str) -> None:
    """Keep the outcome of the last stroke on canvas ``key`` (``kind``: success, info,
    warning or error) to show above the canvas."""
    st.session_state[f"_{key}_report"] = (kind, text)


def clear_report(key: str) -> None:
    """Forget the outcome shown above canvas ``key`` (another action replaced it)."""
    st.session_state.pop(f"_{key}_report", None)


def stroke_canvas(
    image_shape: tuple[int, int],
    render: Callable[[Region, tuple[int, int]], np.ndarray],
    key: str,
    context: str,
    colour: str,
    width: int,
) -> np.ndarray | None:
    """Show the canvas; return the mask of a stroke drawn since the last run, else None.

    Parameters
    ----------
    image_shape : (int, int)
        ``(Y, X)`` of the image the strokes refer to.
    render : callable
        ``render(region, (width, height))`` → RGB uint8 background of that size.
    key : str
        Widget key prefix (also of the zoom controls and the kept report).
    context : str
        Part of the canvas key (image, frame, mode ...): a change gives a fresh canvas.
    colour, width : str, int
        Brush colour and width in display pixels.
    """
    from streamlit_drawable_canvas import st_canvas

    from webui.annotate import display_geometry
    from webui.widgets import zoom_controls

    region = zoom_controls(image_shape, key=f"{key}_zoom")
    y0, y1, x0, x1 = region
    w, h, _ = display_geometry((y1 - y0, x1 - x0))
    used = st.session_state.get(f"_{key}_used", 0)  # strokes taken so far
    kept = st.session_state.get(f"_{key}_report")
    if kept:
        getattr(st, kept[0])(kept[1])
    else:
        st.write("")  # room for the canvas's toolbar, which floats above its top edge
    result = st_canvas(
        fill_color="rgba(0,0,0,0)",
        stroke_width=width,
        stroke_color=colour,
        background_image=Image.fromarray(render(region, (w, h))),
        update_streamlit=True,
        width=w,
        height=h,
        drawing_mode="freedraw",
        key=f"{key}_{context}_{used}_{'_'.join(map(str, region))}",
    )
    objects = (result.json_data or {}).get("objects", []) if result is not None else []
    if not objects:
        return None
    st.session_state[f"_{key}_used"] = used + 1  # this canvas is not shown again
    clear_report(key)
    mask = stroke_mask(objects[-1:], colour, region, image_shape, (w, h))
    return mask if mask.any() else None
