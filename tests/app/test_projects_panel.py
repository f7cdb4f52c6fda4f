"""AppTest: the home page's Projects panel keeps studies apart and moves them as one file."""

from __future__ import annotations

import pytest

from microseg import projects
from microseg.store import Workspace
from tests.apphelpers import new_app

pytestmark = pytest.mark.timeout(300)


def _create(at, name: str):
    at.text_input(key="project_new_name").set_value(name)
    at.button(key="project_create").click().run()
    assert not at.exception
    return at


def _recent_sizes(at) -> list[str]:
    """The size captions under Recent work (one per image of the session's project)."""
    return [c.value for c in at.caption if c.value.endswith(" px") or c.value.endswith("0 frames")]


def test_a_new_project_holds_its_own_images_and_the_address_names_it(workspace_dir):
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    _create(at, "Steel 4140")
    assert at.session_state["project"] == "steel-4140" and at.session_state["image"] is None
    assert any("Created the project Steel 4140" in i.value for i in at.info)
    assert at.query_params["project"] == "steel-4140" and "image" not in at.query_params
    at.button(key="open_synthetic-nuclei-series").click().run()
    steel = projects.get_project("steel-4140", workspace_dir).workspace()
    assert [r.name for r in steel.images()] == ["Synthetic nuclei time-lapse"]
    assert [r.name for r in Workspace.open(workspace_dir).images()] == ["Synthetic polycrystal"]
    assert at.query_params["image"] == str(steel.images()[0].id)

    at.selectbox(key="project_pick_steel-4140").set_value("default").run()
    assert at.session_state["project"] == "default" and at.session_state["image"] is None
    assert "project" not in at.query_params
    assert len([b for b in at.button if b.key.startswith("ws_open_")]) == 1
    assert _recent_sizes(at) == ["512 × 512 px"]  # the polycrystal, not the 170-frame series


def test_rename_and_confirmed_delete(workspace_dir):
    at = _create(new_app(), "Alumina")
    at.text_input(key="project_name_alumina").set_value("Alumina 99.5 %")
    at.button(key="project_rename_go").click().run()
    assert projects.get_project("alumina", workspace_dir).name == "Alumina 99.5 %"
    assert "Project: Alumina 99.5 %" in [c.value for c in at.sidebar.caption]
    at.button(key="project_delete").click().run()
    assert projects.get_project("alumina", workspace_dir)  # nothing gone before confirming
    at.button(key="project_delete_no").click().run()
    at.button(key="project_delete").click().run()
    at.button(key="project_delete_yes").click().run()
    assert not at.exception and at.session_state["project"] == "default"
    assert [p.slug for p in projects.list_projects(workspace_dir)] == ["default"]
    assert "project_delete" not in [b.key for b in at.button]  # the default cannot go


def test_a_project_deleted_in_another_tab_sends_the_session_home(workspace_dir):
    at = _create(new_app(), "Short-lived")
    at.button(key="open_synthetic-grains").click().run()
    projects.delete_project("short-lived", workspace_dir)  # another tab
    at.run()
    assert not at.exception
    assert at.session_state["project"] == "default" and at.session_state["image"] is None
    assert any("was deleted" in i.value for i in at.info)
    assert not (workspace_dir / "projects" / "short-lived").exists()  # not made again


def test_make_a_project_file_offers_the_download(workspace_dir):
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.button(key="project_export").click().run()
    assert not at.exception and not at.error
    (prepared,) = [at.session_state["project_file"]]
    assert prepared[0] == "default" and prepared[1] == "Default_project.zip"
    manifest = projects.read_manifest(prepared[2])
    assert manifest["name"] == "Default project" and any(
        n.startswith("images/") for n in manifest["files"]
    )
