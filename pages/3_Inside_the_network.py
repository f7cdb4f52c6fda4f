"""Inside the network: learned kernels and feature maps next to the engineered filter bank."""

from __future__ import annotations

import streamlit as st

from webui import network_view as nv
from webui import state
from webui.layout import page_setup, require_image
from webui.render import display_plane
from webui.widgets import frame_controls

page_setup("Inside the network")
st.title("Inside the network")
st.markdown(nv.EXPLANATION)
image = require_image()

picked = nv.pick_network()
with st.sidebar:
    t, z, channel = frame_controls(image, key="net")
region = nv.region_controls(image.shape_yx, key="net_region")
y0, y1, x0, x1 = region

shown = display_plane(image, t=t, z=z, channel=channel)[y0:y1, x0:x1]
col_in, col_learned, col_eng = st.columns([1, 1.4, 1.4], gap="medium")
with col_in:
    st.subheader("Input")
    nv.render_input(shown, region)
    if picked is not None:
        st.subheader("Learned kernels")
        nv.safely("show the kernels", lambda: nv.render_kernels(picked[1]))

maps = None
if picked is not None:
    model_id, model = picked
    plane = image.plane(t, z)[:, y0:y1, x0:x1]
    with st.spinner("Running the network on the region ..."):
        maps = nv.safely(
            "compute the feature maps",
            lambda: nv.cached_feature_maps(
                model_id, model, plane, (state.get("image_id"), t, z, region)
            ),
        )
with col_learned:
    st.subheader("Learned features (U-Net)")
    if picked is None:
        st.caption("Train a U-Net on the Annotate page to see its feature maps here.")
    elif maps is not None:
        nv.safely("show the feature maps", lambda: nv.render_feature_maps(maps, model.config.depth))
with col_eng:
    st.subheader("Engineered features (classical)")
    nv.render_filter_bank(image, t, z, channel, region, key="net_bank")

if maps is not None:
    st.subheader("From edges to structures")
    st.caption(
        "The input and the strongest channel of every level, encoder first, then decoder: "
        "level name · channels×height×width · channel shown."
    )
    nv.safely("show the levels", lambda: nv.render_progression(shown, maps))
