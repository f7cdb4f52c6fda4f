"""AppTest: optional sign-in from secrets; per-user tokens keep projects apart."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from microseg import projects
from tests.apphelpers import ROOT

pytestmark = pytest.mark.timeout(300)

USERS = {"anna": "anna-token-123", "ben": "ben-token-456"}


@pytest.fixture
def server_root(workspace_dir, monkeypatch):
    monkeypatch.setattr("webui.signin.FAILED_WAIT_S", 0.0)  # no wait after a wrong token
    return workspace_dir


def _app(auth: dict | None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if auth is not None:
        at.secrets["auth"] = auth
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception
    return at


def _sign_in(at: AppTest, secret: str, name: str | None = None) -> AppTest:
    if name is not None:
        at.text_input(key="signin_user").set_value(name)
    at.text_input(key="signin_secret").set_value(secret)
    at.button(key="signin_go").click().run()
    assert not at.exception
    return at


def test_without_auth_settings_nobody_is_asked(server_root):
    at = _app(None)
    assert not [t for t in at.text_input if t.key == "signin_secret"]
    assert "open_synthetic-grains" in [b.key for b in at.button]


def test_a_shared_password_guards_every_page(server_root):
    at = _app({"password": "correct horse"}, "pages/5_Grains.py")
    assert "open_synthetic-grains" not in [b.key for b in at.button]
    assert not at.session_state["signed_in"]
    _sign_in(at, "wrong")
    assert at.error[0].value == "That password is not right."
    assert not at.session_state["signed_in"]
    _sign_in(at, "correct horse")
    assert at.session_state["signed_in"] and at.session_state["user"] is None
    assert not [t for t in at.text_input if t.key == "signin_secret"]
    at.button(key="sign_out").click().run()
    assert not at.session_state["signed_in"]
    assert [t for t in at.text_input if t.key == "signin_secret"]


def test_per_user_tokens_show_each_person_only_their_projects(server_root):
    projects.create_project("Shared, before sign-in", server_root)
    anna = _sign_in(_app({"users": USERS}), USERS["ben"], "anna")  # someone else's token
    assert not anna.session_state["signed_in"]
    assert "do not match" in anna.error[0].value
    _sign_in(anna, USERS["anna"], "anna")
    assert anna.session_state["user"] == "anna"
    assert anna.session_state["project"] == "anna-s-project"
    anna.button(key="open_synthetic-grains").click().run()
    assert len(projects.get_project("anna-s-project", server_root).workspace().images()) == 1

    ben = _sign_in(_app({"users": USERS}), USERS["ben"], "ben")
    options = ben.selectbox(key=f"project_pick_{ben.session_state['project']}").options
    assert options == ["ben's project"]  # not anna's, not the shared one
    assert ben.session_state["project"] != "anna-s-project"
    assert ben.session_state["image"] is None

    intruder = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    intruder.secrets["auth"] = {"users": USERS}
    intruder.query_params["project"] = "anna-s-project"
    intruder.query_params["image"] = "1"
    intruder.run()
    _sign_in(intruder, USERS["ben"], "ben")  # ben follows a link to anna's project
    assert intruder.session_state["project"] == "ben-s-project"
    assert intruder.session_state["image"] is None
    assert "not on this server" in intruder.warning[0].value


@pytest.mark.parametrize(
    ("auth", "words"),
    [({"password": ""}, "give a password"), ({"users": {}}, "name = token"),
     ({"users": {"anna": "short"}}, "8 characters"), ({"users": {"anna": 12345678}}, "text"),
     ({"something": "else"}, "give a password")],
)  # fmt: skip
def test_unusable_auth_settings_keep_everyone_out(server_root, auth, words):
    at = _app(auth)
    assert words in at.error[0].value and "Ask whoever runs this server" in at.error[0].value
    assert "open_synthetic-grains" not in [b.key for b in at.button]
