"""AppTest: the address carries the open image, so a refresh or a link opens it again."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from microseg.store import Workspace
from tests.apphelpers import ROOT, new_app

pytestmark = pytest.mark.timeout(300)


def _visit(image_param: str | None, page: str | None = None) -> AppTest:
    """A fresh session (a refresh, a bookmark, a colleague's link) at this address."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if image_param is not None:
        at.query_params["image"] = image_param
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception
    return at


def test_opening_an_image_puts_it_in_the_address_and_a_refresh_opens_it_again(workspace_dir):
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.switch_page("pages/5_Grains.py").run()
    assert not at.exception
    (record,) = Workspace.open(workspace_dir).images()
    assert at.query_params["image"] == str(record.id)

    fresh = _visit(str(record.id), "pages/5_Grains.py")
    assert fresh.session_state["workspace_image"] == record.id
    assert fresh.session_state["image_source"]["key"] == "synthetic-grains"
    assert fresh.session_state["task"] == "grains"
    assert not fresh.warning
    assert fresh.query_params["image"] == str(record.id)


@pytest.mark.parametrize("param", ["999", "abc", "-1", "1" * 40])
def test_an_address_naming_no_image_of_this_workspace_says_so_once(workspace_dir, param):
    at = _visit(param)
    assert at.session_state["image"] is None
    (warning,) = at.warning
    assert "not in this project's workspace" in warning.value
    assert "image" not in at.query_params
    at.run()  # the next run does not try again
    assert not at.warning and not at.exception


def test_a_deleted_image_leaves_the_address(workspace_dir):
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    (record,) = Workspace.open(workspace_dir).images()
    Workspace.open(workspace_dir).delete_image(record.id)
    fresh = _visit(str(record.id))
    assert fresh.session_state["image"] is None and "image" not in fresh.query_params


def test_an_address_with_a_project_opens_that_project_and_its_image(workspace_dir):
    from microseg import projects

    steel = projects.create_project("Steel", workspace_dir)
    record = steel.workspace().add_image(
        b'{"microseg_sample": "synthetic-grains"}', "Synthetic polycrystal",
        source={"kind": "sample", "key": "synthetic-grains"},
    )  # fmt: skip
    Workspace.open(workspace_dir).add_image(b"other", "other.tif")  # same id, other project
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["project"] = steel.slug
    at.query_params["image"] = str(record.id)
    at.run()
    assert not at.exception and not at.warning
    assert at.session_state["project"] == "steel"
    assert at.session_state["image_source"]["key"] == "synthetic-grains"
    assert (at.query_params["project"], at.query_params["image"]) == ("steel", str(record.id))


def test_an_address_naming_an_unknown_project_says_so(workspace_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["project"] = "../gone"
    at.query_params["image"] = "1"
    at.run()
    assert "project in this address is not on this server" in at.warning[0].value
    assert at.session_state["project"] == "default" and at.session_state["image"] is None
    assert "project" not in at.query_params
