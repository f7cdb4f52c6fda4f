"""Paint strokes per class and train a classical or deep model, with live results."""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from microseg.tasks import TASKS
from webui import annotate, state
from webui.layout import page_setup, require_image
from webui.render import display_plane
from webui.results import apply_to_stack_section, model_file_section, result_panel
from webui.widgets import zoom_controls

page_setup("Annotate")
st.title("Annotate and train")
image = require_image()

with st.sidebar:
    task = st.selectbox(
        "Task",
        list(TASKS),
        index=list(TASKS).index(state.get("task")),
        key="task_select",
        help="Sets the default classes and how results are used.",
    )
    state.switch_task(task)
    t = 0
    if image.n_frames > 1:
        t = st.slider("Frame", 0, image.n_frames - 1, 0, key="annot_t")
    annotate.class_editor(task)
    classes = state.get("classes")
    names = [c["name"] for c in classes]
    colours = [c["colour"] for c in classes]
    st.subheader("Brush")
    tool = st.radio("Paint", names + ["Eraser"], key="annot_tool", horizontal=True)
    brush = st.slider("Brush size (image px)", 1, 40, 4, key="annot_brush")
    c1, c3 = st.columns(2)
    c2 = st
    if c1.button("Undo", key="annot_undo", help="Undo the last change of the strokes"):
        if state.undo_strokes():
            state.refresh_canvas()
    if c2.button(f"Clear all '{tool}' strokes", key="annot_clear_class", disabled=tool == "Eraser"):
        current = state.strokes_for(t)
        if current is not None:
            new = current.copy()
            new[new == names.index(tool) + 1] = 0
            state.set_strokes(t, new)
            state.refresh_canvas()
    if c3.button("Clear all", key="annot_clear_all"):
        state.set_strokes(t, None)
        state.refresh_canvas()
    with st.expander("Import / export labels"):
        up = st.file_uploader(
            "Label image (0 = unlabelled, k = class k)",
            type=["tif", "tiff", "png"],
            key="annot_import",
        )
        if up is not None and st.session_state.get("annot_imported") != (up.name, up.size):
            st.session_state["annot_imported"] = (up.name, up.size)
            err = annotate.import_labels(up.getvalue(), up.name, len(classes), image.shape_yx)
            if err:
                st.error(err)
        outlines = st.file_uploader(
            "Objects from another tool: QuPath GeoJSON, Fiji RoiSet (.zip, .roi), an "
            "ilastik export (.h5) or a NumPy label array (.npy)",
            type=["geojson", "json", "zip", "roi", "h5", "hdf5", "npy"],
            key="annot_outlines",
            disabled=task not in ("nuclei", "grains"),
            help="Nuclei: each outline is a nucleus; grains: each outline a grain and each "
            "line a boundary. They replace this frame's strokes (Undo brings them back).",
        )
        everywhere = st.checkbox(
            "The outlines cover every object in the image",
            value=True,
            key="annot_outlines_all",
            help="Then everything else is labelled too (background, boundary); otherwise "
            "only the objects and a thin ring around them.",
        )
        if outlines is not None and st.session_state.get("annot_outlined") != (
            outlines.name,
            outlines.size,
            everywhere,
            t,
        ):
            st.session_state["annot_outlined"] = (outlines.name, outlines.size, everywhere, t)
            err = annotate.import_outlines(
                outlines.getvalue(),
                outlines.name,
                task,
                len(classes),
                image.shape_yx,
                t,
                everywhere=everywhere,
            )
            if err:
                st.error(err)
        current = state.strokes_for(t)
        st.download_button(
            "Download strokes (TIFF)",
            data=b"" if current is None else annotate.strokes_tiff(current, names),
            file_name="strokes.tif",
            disabled=current is None,
            key="annot_export",
        )

method = (
    st.segmented_control(
        "Model", ["Classical ML", "Deep learning"], default="Classical ML", key="annot_method"
    )
    or "Classical ML"
)
region = zoom_controls(image.shape_yx, key="annot_zoom")
y0, y1, x0, x1 = region
disp = display_plane(image, t=t)[y0:y1, x0:x1]
width, height, scale = annotate.display_geometry((y1 - y0, x1 - x0))
key = annotate.canvas_key(t, region)
base = annotate.canvas_base(key, t)
col_canvas, col_result = st.columns([5, 4])
with col_canvas:
    st.caption(
        f"Paint on the image — {tool}, brush {brush} px. Strokes of each class train the model."
    )
    bg = annotate.background(
        disp, None if base is None else base[y0:y1, x0:x1], colours, (width, height)
    )
    colour = annotate.ERASER_COLOUR if tool == "Eraser" else colours[names.index(tool)]
    result = st_canvas(
        fill_color="rgba(0,0,0,0)",
        stroke_width=max(1, round(brush * scale)),
        stroke_color=colour,
        background_image=bg,
        update_streamlit=True,
        width=width,
        height=height,
        drawing_mode="freedraw",
        return_image_data=True,
        key=key,
    )
    objects = (result.json_data or {}).get("objects", []) if result is not None else []
    merged = annotate.merge_canvas(key, objects, region, image.shape_yx, (width, height), colours)
    if merged is not None:
        state.set_strokes(t, merged)
    strokes = state.strokes_for(t)
    counts = (
        np.bincount(strokes.ravel(), minlength=len(classes) + 1)[1:]
        if strokes is not None
        else np.zeros(len(classes), int)
    )
    st.caption(
        "Painted pixels: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=False))
    )

with col_result:
    result_panel(method, image, t, strokes, classes, task)

apply_to_stack_section(image, classes, "deep" if method == "Deep learning" else "classical")
model_file_section(classes)
