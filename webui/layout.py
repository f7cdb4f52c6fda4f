"""Page frame: configuration, state initialisation and the sidebar every page shares."""

from __future__ import annotations

import streamlit as st

from webui import state


def page_setup(title: str) -> None:
    """Configure the page, initialise session state and draw the shared sidebar."""
    st.set_page_config(
        page_title=f"{title} · microseg", page_icon=":material/biotech:", layout="wide"
    )
    state.init_state()
    image = state.get("image")
    with st.sidebar:
        if image is None:
            st.caption("No image open: pick a sample or upload one on the home page.")
        else:
            src = state.get("image_source") or {}
            st.markdown(f"**Image:** {src.get('name', image.name)}")
            if src.get("citation"):
                st.caption(f"{src.get('source', '')} — {src['citation']} ({src.get('licence')})")


def require_image():
    """Return the current image, or stop the page with a pointer to the home page."""
    image = state.get("image")
    if image is None:
        st.info("Open a sample or upload an image on the home page first.")
        st.page_link("pages/0_Home.py", label="Go to the home page", icon=":material/home:")
        st.stop()
    return image
