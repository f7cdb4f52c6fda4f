"""Nuclei: instances, measurements, linked plots, time series, tracking, corrections, exports."""

from __future__ import annotations

import streamlit as st

from microseg.io import image_stem
from webui import nuclei as nv
from webui import state
from webui.layout import page_setup, require_image

page_setup("Nuclei")
st.title("Nuclei")
image = require_image("nuclei")
image_id = state.get("image_id")

nv.finish_retraining()  # a model trained on the corrections becomes the selected one
with st.sidebar:
    settings = nv.model_sidebar(image)

nv.collect_job(image)
t = nv.frame_slider(image)
nv.action_bar(image, t, settings)
nv.show_message()

res = nv.current_result(image_id)
if res is not None and settings is not None and res.pixel_size_um != settings["pixel_size_um"]:
    nv.remeasure(image, res, settings["pixel_size_um"])
keys = nv.selected_keys(res, t) if res is not None and res.labels else set()
nv.viewer(image, res, t, keys, settings["channel"] if settings else None)

if res is not None and res.labels:
    nv.verdict_panel(image, res, t, settings)
    st.radio("Table and plots show", ["This frame", "All frames"], horizontal=True, key="nuc_scope")
    tabs = st.tabs(["Table", "Plots", "Over time", "Tracks", "Correct", "Export"], key="nuc_tabs")
    with tabs[0]:
        nv.table_tab(res, t)
    with tabs[1]:
        nv.plots_tab(res, t, keys)
    with tabs[2]:
        nv.time_tab(res, t)
    with tabs[3]:
        nv.tracks_tab(res)
    with tabs[4]:
        nv.corrections_tab(image, res, t)
    with tabs[5]:
        nv.exports_tab(res, image_stem(image.name))
