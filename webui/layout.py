"""Page frame: configuration, state initialisation and the sidebar every page shares."""

from __future__ import annotations

import streamlit as st

from webui import address, state, workspace


def page_setup(title: str) -> None:
    """Configure the page, initialise session state and draw the shared sidebar."""
    st.set_page_config(
        page_title=f"{title} · microseg", page_icon=":material/biotech:", layout="wide"
    )
    state.init_state()
    address.follow_address()
    image = state.get("image")
    with st.sidebar:
        st.caption(f"Project: {workspace.current_project().name}")
        if image is None:
            st.caption("No image open: pick a sample or upload one on the home page.")
        else:
            src = state.get("image_source") or {}
            st.markdown(f"**Image:** {src.get('name', image.name)}")
            if src.get("citation"):
                st.caption(f"{src.get('source', '')} — {src['citation']} ({src.get('licence')})")


def require_image(task: str | None = None):
    """Return the current image, or stop the page with a pointer to the home page.

    With ``task`` ("nuclei" or "grains"), the samples of that task can be opened
    right here with one click, and a sample of the other task is pointed out.
    """
    image = state.get("image")
    if image is None:
        st.info("Open a sample or upload an image on the home page first.")
        if task is not None:
            _sample_buttons(task)
        st.page_link("pages/0_Home.py", label="Go to the home page", icon=":material/home:")
        st.stop()
    source = state.get("image_source") or {}
    other = source.get("task") if source.get("kind") == "sample" else None
    if task is not None and other in ("nuclei", "grains") and other != task:
        st.info(
            f"The open image is a {other} sample; the {task} measurements here mean little on it."
        )
        with st.expander(f"Open a {task} sample instead"):
            _sample_buttons(task)
    return image


def _sample_buttons(task: str) -> None:
    from webui import loading

    for sample in [s for s in loading.sample_catalogue() if s["task"] == task][:3]:
        if st.button(f"Open the sample: {sample['title']}", key=f"quick_open_{sample['key']}"):
            if loading.load_sample_into_state(sample["key"]):
                st.rerun()
    if state.get("load_error"):
        st.error(state.get("load_error"))
