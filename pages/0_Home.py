"""Home: what the app does, the sample gallery and upload."""

from __future__ import annotations

import streamlit as st

from webui import loading, state, workspace
from webui.layout import page_setup
from webui.projects_panel import project_panel

page_setup("microseg")
st.title("microseg")
st.markdown(
    "Segment micrographs in the browser: paint a few strokes per class, train a model on "
    "this computer, and measure what you came for: **nuclei** counts, sizes and tracks "
    "over time, or **grain-size distributions** with the ASTM E112 grain number."
)
col_ml, col_dl = st.columns(2)
col_ml.markdown(
    "**Classical machine learning**: a random forest on engineered multi-scale filters "
    "(Gaussian, Laplacian of Gaussian, gradient magnitude, difference of Gaussians, "
    "structure tensor and Hessian eigenvalues). Trains in a second from few strokes; "
    "struggles where classes differ by texture rather than by local intensity."
)
col_dl.markdown(
    "**Deep learning**: a U-Net that learns its own features from the raw pixels. "
    "Starts from a built-in model and fine-tunes on your strokes; better on faint "
    "boundaries and drifting brightness, at the cost of longer training."
)
st.markdown(
    "Next: [view the image](/Image) · [annotate and train](/Annotate) · "
    "[inside the network](/Inside_the_network) · [nuclei](/Nuclei) · [grains](/Grains) · "
    "[ML vs DL](/ML_vs_DL)"
)

project_panel()
recent = workspace.recent_images()
if recent:
    st.header("Recent work")
    st.caption(
        "Images you opened, with their strokes, pixel size and saved models; kept across "
        "refreshes and restarts."
    )
if state.get("workspace_error"):
    st.warning(state.get("workspace_error"))
with st.container(key="recent_work"):
    for rec in recent[:15]:
        size, labelled, models, opened = workspace.describe(rec)
        c_name, c_size, c_lab, c_mod, c_when, c_open, c_del = st.columns(
            [3, 3, 2, 2, 2, 1.4, 1.4], vertical_alignment="center"
        )
        c_name.markdown(f"**{rec.name}**")
        c_size.caption(size)
        c_lab.caption(labelled)
        c_mod.caption(models)
        c_when.caption(opened)
        if c_open.button("Open", key=f"ws_open_{rec.id}", width="stretch"):
            if workspace.open_recent(rec.id):
                st.session_state["opened_message"] = f"Opened from recent work: {rec.name}"
            st.rerun()
        if c_del.button("Delete", key=f"ws_delete_{rec.id}", width="stretch"):
            state.put("workspace_delete", rec.id)
            st.rerun()
        if state.get("workspace_delete") == rec.id:
            with st.container(border=True):
                st.markdown(
                    f"Delete **{rec.name}**, its strokes and the models saved with it from the "
                    "workspace for good?"
                )
                c_yes, c_no, _ = st.columns([1, 1, 4])
                if c_yes.button("Delete", key="ws_delete_yes", type="primary"):
                    workspace.delete_recent(rec.id)
                    state.put("workspace_delete", None)
                    st.rerun()
                if c_no.button("Cancel", key="ws_delete_no"):
                    state.put("workspace_delete", None)
                    st.rerun()

st.header("Open an image")
tab_gallery, tab_upload = st.tabs(["Sample gallery", "Upload"])
with tab_gallery:
    catalogue = loading.sample_catalogue()
    cols = st.columns(3)
    for i, sample in enumerate(catalogue):
        with cols[i % 3].container(border=True):
            st.markdown(f"**{sample['title']}**")
            st.caption(sample["description"])
            st.caption(f"Source: {sample['source']} · Licence: {sample['licence']}")
            if st.button("Open", key=f"open_{sample['key']}", width="stretch"):
                if loading.load_sample_into_state(sample["key"]):
                    st.session_state["opened_message"] = f"Opened sample: {sample['title']}"
                st.rerun()
with tab_upload:
    from microseg.io import supported_suffixes
    from microseg.tasks import TASKS

    shows = {"nuclei": "Nuclei or cells", "grains": "Grains (a polycrystal micrograph)",
             "semantic": "Other regions"}  # fmt: skip
    if st.session_state.get("upload_task") != state.get("task"):
        st.session_state["upload_task"] = state.get("task")  # follows samples and Annotate
    st.radio("The image shows", [k for k in shows if k in TASKS], format_func=shows.get,
             horizontal=True, key="upload_task",
             on_change=lambda: state.switch_task(st.session_state["upload_task"]),
             help="Sets the classes you paint on the Annotate page (background and nucleus, "
             "or grain interior and grain boundary); you can change them there.")  # fmt: skip
    up = st.file_uploader(
        "PNG, JPEG, TIFF / OME-TIFF / ImageJ stacks (8/16/32-bit, float), CZI",
        type=[s.lstrip(".") for s in supported_suffixes()],
        key="upload",
    )
    if up is not None and st.session_state.get("last_upload") != (up.name, up.size):
        st.session_state["last_upload"] = (up.name, up.size)
        if loading.load_upload_into_state(up.name, up.getvalue(), st.session_state["upload_task"]):
            st.session_state["opened_message"] = f"Opened upload: {up.name}"
        st.rerun()

error = state.get("load_error")
if error:
    st.error(error)
image = state.get("image")
if image is not None and not error:
    st.success(st.session_state.get("opened_message", f"Current image: {image.name}"))
    from webui.render import image_info, show_plane

    show_plane(image, t=0, width=420)
    st.markdown(image_info(image, state.pixel_size()))
