"""The address bar carries the open image, so that a refresh, a bookmark or a link to
a colleague on the same server opens the same image on the same page.

The page is already in the URL path (``/Grains``); the image is the query parameter
``image=<workspace id>``. An image that is not in the workspace (the workspace cannot
be used) leaves no parameter, since a link could not open it again.
"""

from __future__ import annotations

import streamlit as st

from webui import state, workspace

IMAGE_PARAM = "image"


def follow_address() -> None:
    """Open the image the address names when none is open; then make the address name
    the open image. Called once per page run, before the page draws anything."""
    params = st.query_params
    wanted = params.get(IMAGE_PARAM)
    if state.get("image") is None and wanted is not None and state.get("address_tried") != wanted:
        state.put("address_tried", wanted)  # one try per address: no loop on a bad link
        if not _open(wanted):
            st.warning(
                "The image in this address is not in this server's workspace (it was "
                "deleted, or the link comes from another server); open one on the home page."
            )
    name_open_image()


def name_open_image() -> None:
    """Make the address name the open image (no parameter when it is not in the
    workspace, or when the address named an image that could not be opened)."""
    params = st.query_params
    current = state.get("workspace_image")
    if current is not None:
        if params.get(IMAGE_PARAM) != str(current):
            params[IMAGE_PARAM] = str(current)
    elif IMAGE_PARAM in params:
        del params[IMAGE_PARAM]


def _open(wanted: str) -> bool:
    if not wanted.isdigit() or len(wanted) > 18:
        return False
    workspace_id = int(wanted)
    if workspace_id not in {r.id for r in workspace.recent_images()}:
        return False
    return workspace.open_recent(workspace_id) and state.get("workspace_image") == workspace_id
