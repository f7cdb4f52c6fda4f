"""The address bar carries the project and the open image, so that a refresh, a
bookmark or a link to a colleague on the same server opens the same image on the
same page.

The page is already in the URL path (``/Grains``); the project is the query parameter
``project=<slug>`` (absent for the default project) and the image ``image=<workspace
id>``. An image that is not in the workspace (the workspace cannot be used) leaves no
parameter, since a link could not open it again.
"""

from __future__ import annotations

import streamlit as st

from microseg.errors import InputError
from microseg.projects import DEFAULT_SLUG, get_project
from webui import state, workspace

IMAGE_PARAM = "image"
PROJECT_PARAM = "project"


def follow_address() -> None:
    """In a session with no image open, go to the project and open the image the address
    names; then make the address name them. Called once per page run, before the page
    draws anything."""
    params = st.query_params
    wanted = (params.get(PROJECT_PARAM), params.get(IMAGE_PARAM))
    if (
        state.get("image") is None
        and wanted != (None, None)
        and state.get("address_tried") != wanted
    ):
        problem = _go_to(*wanted)
        state.put("address_tried", wanted)  # one try per address: no loop on a bad link
        if problem:
            st.warning(problem)
    name_open_image()


def name_open_image() -> None:
    """Make the address name the session's project and open image (no image parameter
    when the image is not in the workspace, or could not be opened)."""
    params = st.query_params
    project = state.get("project")
    if project != DEFAULT_SLUG:
        if params.get(PROJECT_PARAM) != project:
            params[PROJECT_PARAM] = project
    elif PROJECT_PARAM in params:
        del params[PROJECT_PARAM]
    current = state.get("workspace_image")
    if current is not None:
        if params.get(IMAGE_PARAM) != str(current):
            params[IMAGE_PARAM] = str(current)
    elif IMAGE_PARAM in params:
        del params[IMAGE_PARAM]


def _go_to(project: str | None, image: str | None) -> str | None:
    """Switch to ``project`` and open ``image``; the sentence that says what failed."""
    if project is not None and project != state.get("project"):
        try:
            slug = get_project(project, user=state.get("user")).slug
        except InputError:
            return (
                "The project in this address is not on this server (it was deleted, or the "
                "link comes from another server); you stay in the project you were in."
            )
        state.start_over(slug)
    if image is None:
        return None
    if image.isdigit() and len(image) <= 18:
        workspace_id = int(image)
        if workspace_id in {r.id for r in workspace.recent_images()}:
            if workspace.open_recent(workspace_id):
                if state.get("workspace_image") == workspace_id:
                    return None
    return (
        "The image in this address is not in this project's workspace (it was deleted, "
        "or the link comes from another server); open one on the home page."
    )
