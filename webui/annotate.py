"""Painting strokes on the canvas and keeping them in session state.

The canvas shows a region of the image scaled to the display; what the user
draws comes back as fabric.js path objects, which are rasterised into exact
image pixels and merged into the strokes kept in session state (the canvas
itself is only a view: changing its background clears it).
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from webui import state, workspace
from webui.render import class_overlay

ERASER_COLOUR = "#fefefe"
MAX_DISPLAY = 460


def display_geometry(region_shape: tuple[int, int]) -> tuple[int, int, float]:
    """Canvas width, height and scale (display px per image px) for a region."""
    h, w = region_shape
    scale = min(MAX_DISPLAY / w, MAX_DISPLAY / h, 4.0)
    return max(1, round(w * scale)), max(1, round(h * scale)), scale


def canvas_key(t: int, region: tuple[int, int, int, int]) -> str:
    """Canvas widget key: a new key (fresh canvas) per image, frame, region and generation."""
    return (
        f"canvas_{state.get('image_id')}_{t}_{'_'.join(map(str, region))}_{state.get('canvas_gen')}"
    )


def background(
    display_rgb: np.ndarray, strokes: np.ndarray | None, colours: list[str], size: tuple[int, int]
) -> Image.Image:
    """Canvas background: the image region with the strokes already stored drawn in."""
    img = display_rgb
    if strokes is not None and strokes.any():
        img = class_overlay(img, strokes, colours, opacity=0.85)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return Image.fromarray(img).resize(size, Image.Resampling.NEAREST)


def canvas_base(key: str, t: int) -> np.ndarray | None:
    """Strokes stored when the canvas ``key`` was created (its fixed background)."""
    store = state.get("canvas_base")
    if key not in store:
        current = state.strokes_for(t)
        store[key] = {"base": None if current is None else current.copy(), "n": 0}
    return store[key]["base"]


def merge_canvas(
    key: str,
    objects: list[dict],
    region: tuple[int, int, int, int],
    image_shape: tuple[int, int],
    display_size: tuple[int, int],
    colours: list[str],
) -> np.ndarray | None:
    """Rasterise the canvas objects into the region on top of the canvas's base strokes.

    The canvas holds every path drawn since it was created (its own undo and clear
    remove paths), so the strokes are always base + all paths. Returns the new
    full-image strokes (uint8), or None when the drawing has not changed.
    """
    from microseg.strokes import merge_strokes, strokes_from_paths

    entry = state.get("canvas_base")[key]
    if len(objects) == entry["n"]:
        return None
    entry["n"] = len(objects)
    y0, y1, x0, x1 = region
    base = entry["base"]
    merged = np.zeros(image_shape, np.uint8) if base is None else base.copy()
    if objects:
        drawn = strokes_from_paths(
            objects,
            colours,
            display_shape=(display_size[1], display_size[0]),
            out_shape=(y1 - y0, x1 - x0),
            eraser_colour=ERASER_COLOUR,
        )
        merged[y0:y1, x0:x1] = merge_strokes(merged[y0:y1, x0:x1], drawn)
    return merged


def import_labels(
    data: bytes, name: str, n_classes: int, image_shape: tuple[int, int]
) -> str | None:
    """Load a label image (ilastik/Fiji/...) as strokes of frame 0; returns an error or None."""
    from microseg.errors import InputError
    from microseg.io import read_image

    try:
        labels = read_image(data, name=name, palette="index").data[0, 0, 0]
    except InputError as exc:
        return str(exc)
    if labels.shape != image_shape:
        return (
            f"The label image is {labels.shape[1]} × {labels.shape[0]} px but the image is "
            f"{image_shape[1]} × {image_shape[0]} px."
        )
    if labels.dtype.kind == "f" or labels.min() < 0 or labels.max() > n_classes:
        return f"A label image must hold integers 0..{n_classes} (0 = unlabelled, k = class k)."
    state.set_strokes(0, labels.astype(np.uint8))
    state.refresh_canvas()
    return None


def import_outlines(
    data: bytes,
    name: str,
    task: str,
    n_classes: int,
    image_shape: tuple[int, int],
    t: int,
    everywhere: bool = True,
) -> str | None:
    """Objects outlined in another tool (QuPath GeoJSON, ImageJ ROIs, a NumPy label
    array) as the strokes of frame ``t`` (the previous ones can be undone); returns an
    error sentence or None."""
    import tempfile
    from pathlib import Path

    from microseg.annotations import read_mask, training_labels
    from microseg.errors import InputError

    safe = Path(name).name or "outlines.geojson"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / safe
            path.write_bytes(data)
            mask = read_mask(path, image_shape, task)
        strokes = training_labels(mask, task, n_classes, everywhere=everywhere)
    except InputError as exc:
        return str(exc)
    state.set_strokes(t, strokes)
    state.refresh_canvas()
    return None


def strokes_tiff(strokes: np.ndarray, classes: list[str]) -> bytes:
    """The strokes as a label TIFF (0 unlabelled, k class k) with class names in the metadata."""
    import io
    import json

    import tifffile

    buf = io.BytesIO()
    description = json.dumps({"microseg": "strokes", "classes": classes})
    tifffile.imwrite(buf, strokes.astype(np.uint8), description=description)
    return buf.getvalue()


def class_editor(task: str) -> None:
    """Add, rename, recolour and delete classes in the sidebar."""
    classes = state.get("classes")
    with st.expander("Classes", expanded=False):
        for i, cls in enumerate(list(classes)):
            c1, c2, c3 = st.columns([5, 2, 1])
            name = c1.text_input(f"Class {i + 1}", cls["name"], key=f"cls_name_{i}")
            colour = c2.color_picker(
                "Colour", cls["colour"], key=f"cls_col_{i}", label_visibility="hidden"
            )
            classes[i] = {"name": name.strip() or cls["name"], "colour": colour}
            if c3.button(
                "✕",
                key=f"cls_del_{i}",
                help="Delete this class and its strokes",
                disabled=len(classes) <= 2,
            ):
                _delete_class(i)
                st.rerun()
        if st.button("Add class", key="cls_add"):
            from microseg.tasks import PALETTE

            used = {c["colour"] for c in classes}
            colour = next((c for c in PALETTE if c not in used), "#000000")
            classes.append({"name": f"class {len(classes) + 1}", "colour": colour})
            st.rerun()
        if st.button("Reset to the task's defaults", key="cls_reset"):
            state.reset_classes(task)
            state.refresh_canvas()
            st.rerun()
    workspace.save_current_strokes()  # class names and colours of an annotated image


def _delete_class(index: int) -> None:
    classes = state.get("classes")
    classes.pop(index)
    k = index + 1
    for key, strokes in list(state.get("strokes").items()):
        new = strokes.copy()
        new[new == k] = 0
        new[new > k] -= 1
        state.get("strokes")[key] = new
    workspace.save_current_strokes()
    state.refresh_canvas()
