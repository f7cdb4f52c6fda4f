"""The Projects panel of the home page: switch, create, rename, delete (confirmed),
export to one file and import one."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import streamlit as st

from microseg import projects
from microseg.errors import InputError
from webui import address, state, workspace


def _go(slug: str, message: str) -> None:
    state.start_over(slug)
    state.put("project_message", message)
    address.name_open_image()
    st.rerun()


def project_panel() -> None:
    """Draw the panel (an expander headed by the current project's name)."""
    current = workspace.current_project()
    message = state.get("project_message")
    with st.expander(f"Project: {current.name}", icon=":material/folder:", expanded=bool(message)):
        if message:
            st.info(message)
            state.put("project_message", None)
        who = (
            "Only you see your projects."
            if state.get("user")
            else "Everyone on this server can open every project."
        )
        st.caption(
            f"A project holds its images, strokes, models and specimen fields. {who} "
            "The address of a page names its project."
        )
        everything = projects.list_projects(user=state.get("user"))
        names = {p.slug: p.name for p in everything}
        chosen = st.selectbox(
            "Work in", list(names), index=list(names).index(current.slug),
            format_func=names.get, key=f"project_pick_{current.slug}",
        )  # fmt: skip
        if chosen != current.slug:
            _go(chosen, f"You are in the project {names[chosen]}.")
        c_new, c_rename = st.columns(2)
        with c_new.form("project_new", clear_on_submit=True, border=False):
            name = st.text_input(
                "New project", placeholder="e.g. Ti-6Al-4V heat treatment", key="project_new_name"
            )
            if st.form_submit_button("Create and open", key="project_create"):
                try:
                    made = projects.create_project(name, user=state.get("user"))
                except InputError as exc:
                    st.error(str(exc))
                else:
                    _go(made.slug, f"Created the project {made.name}; it is empty.")
        with c_rename.form("project_rename", border=False):
            name = st.text_input(
                "Rename this project", value=current.name, key=f"project_name_{current.slug}"
            )
            if st.form_submit_button("Rename", key="project_rename_go"):
                try:
                    renamed = projects.rename_project(current.slug, name, user=state.get("user"))
                except InputError as exc:
                    st.error(str(exc))
                else:
                    state.put("project_message", f"Renamed the project to {renamed.name}.")
                    st.rerun()
        _export(current)
        _import()
        if current.slug != projects.DEFAULT_SLUG:
            _delete(current)


def _export(current: projects.Project) -> None:
    st.markdown("**Move it to another machine**")
    prepared = state.get("project_file")
    if st.button("Make a project file", key="project_export"):
        with st.spinner("Packing the project ..."), tempfile.TemporaryDirectory() as tmp:
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", current.name).strip("_") or "project"
            try:
                path = projects.export_project_file(
                    current.slug, Path(tmp) / f"{stem}.zip", user=state.get("user")
                )
                prepared = (current.slug, path.name, path.read_bytes())
            except InputError as exc:
                st.error(str(exc))
                prepared = None
        state.put("project_file", prepared)
    if prepared is not None and prepared[0] == current.slug:
        st.download_button(
            f"Download {prepared[1]} ({workspace.size_text(len(prepared[2]))})", prepared[2],
            file_name=prepared[1], mime="application/zip", key="project_download",
        )  # fmt: skip
        st.caption("Import it on the other machine's home page; it opens there as a new project.")


def _import() -> None:
    up = st.file_uploader(
        "Import a project file (.zip made by microseg)", type=["zip"], key="project_import"
    )
    if up is not None and st.button("Import as a new project", key="project_import_go"):
        with st.spinner("Checking and importing the project ..."):
            try:
                made, summary = projects.import_project_file(up.getvalue(), user=state.get("user"))
            except InputError as exc:
                st.error(str(exc))
                return
        _go(
            made.slug,
            f"Imported the project {made.name}: {summary.images} image(s), {summary.frames} "
            f"annotated frame(s), {summary.models} model(s), {summary.fields} specimen field(s).",
        )


def _delete(current: projects.Project) -> None:
    if not state.get("project_confirm_delete"):
        if st.button("Delete this project", key="project_delete"):
            state.put("project_confirm_delete", True)
            st.rerun()
        return
    with st.container(border=True):
        n = len(workspace.recent_images())
        st.markdown(
            f"Delete the project **{current.name}** with its {n} image(s), their strokes and "
            "models, and its specimen fields, for good?"
        )
        c_yes, c_no, _ = st.columns([1, 1, 4])
        if c_yes.button("Delete", key="project_delete_yes", type="primary"):
            try:
                projects.delete_project(current.slug, user=state.get("user"))
            except InputError as exc:
                st.error(str(exc))
                return
            home = projects.home_project(state.get("user"))
            _go(home.slug, f"Deleted the project {current.name}.")
        if c_no.button("Cancel", key="project_delete_no"):
            state.put("project_confirm_delete", False)
            st.rerun()
