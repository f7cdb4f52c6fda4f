"""View the current image: frame, slice, channel, contrast, zoom and image info."""

from __future__ import annotations

import streamlit as st

from webui import state, workspace
from webui.layout import page_setup, require_image
from webui.render import display_plane, image_info
from webui.widgets import frame_controls, pixel_size_input, zoom_controls

page_setup("Image")
st.title("Image")
image = require_image()

with st.sidebar:
    t, z, channel = frame_controls(image, key="view")
    st.subheader("Contrast")
    mode = st.radio(
        "Contrast",
        ["Auto (percentiles)", "Manual"],
        key="contrast_mode",
        horizontal=True,
        label_visibility="collapsed",
    )
    manual = None
    low, high = 0.5, 99.8
    if mode == "Manual":
        plane = image.plane(t, z)
        lo0, hi0 = float(plane.min()), float(plane.max())
        if hi0 <= lo0:
            hi0 = lo0 + 1.0
        manual = st.slider("Display range", lo0, hi0, (lo0, hi0), key="contrast_range")
    else:
        low, high = st.slider("Percentiles", 0.0, 100.0, (0.5, 99.8), step=0.1, key="contrast_pct")
    pixel_size_input(image)
    workspace.save_pixel_size()

rendered = display_plane(image, t=t, z=z, channel=channel, low=low, high=high, manual=manual)
y0, y1, x0, x1 = zoom_controls(image.shape_yx, key="view_zoom")
st.image(rendered[y0:y1, x0:x1], width="content" if (x1 - x0) <= 1000 else "stretch")
st.markdown(image_info(image, state.pixel_size()))
src = state.get("image_source") or {}
if src.get("citation"):
    st.caption(f"Data: {src.get('source')} — {src['citation']} — licence: {src.get('licence')}")
