"""Page frame: configuration, state initialisation and the sidebar every page shares."""

from __future__ import annotations

import streamlit as st

from webui import address, signin, state, workspace


def page_setup(title: str) -> None:
    """Configure the page, initialise session state and draw the shared sidebar."""
    st.set_page_config(
        page_title=f"{title} · microseg", page_icon=":material/biotech:", layout="wide"
    )
    state.init_state()
    signin.require_sign_in()
    address.follow_address()
    _stroke_conflict()
    image = state.get("image")
    with st.sidebar:
        st.caption(f"Project: {workspace.current_project().name}")
        signin.sign_out_button()
        if image is None:
            st.caption("No image open: pick a sample or upload one on the home page.")
        else:
            src = state.get("image_source") or {}
            st.markdown(f"**Image:** {src.get('name', image.name)}")
            if src.get("citation"):
                st.caption(f"{src.get('source', '')} — {src['citation']} ({src.get('licence')})")


def _stroke_conflict() -> None:
    """When another tab saved this image's strokes underneath this one: say so, and let
    the user load theirs or keep (save over them) the strokes of this tab."""
    conflict = state.get("workspace_conflict")
    if not conflict:
        return
    with st.container(border=True, key="stroke_conflict"):
        st.warning(conflict, icon=":material/sync_problem:")
        c_theirs, c_mine, _ = st.columns([2, 2, 3])
        if c_theirs.button("Load the strokes saved there", key="conflict_theirs"):
            workspace_id = state.get("workspace_image")
            if workspace_id is not None:
                workspace.restore_strokes(workspace_id)
            state.put("workspace_conflict", None)
            st.rerun()
        if c_mine.button("Keep mine (save over them)", key="conflict_mine"):
            workspace.save_current_strokes(overwrite=True)
            st.rerun()


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
