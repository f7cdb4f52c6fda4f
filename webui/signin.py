"""Optional sign-in, set in ``.streamlit/secrets.toml``::

    [auth]
    password = "a shared password"      # everyone signs in with it and sees every project

or::

    [auth.users]                        # per-user tokens: each person sees their own projects
    anna = "a long random token"
    ben = "another one"

Without an ``[auth]`` section the app asks no one. Settings that cannot be used (an
empty password, a token that is not text) keep everyone out with one sentence, rather
than letting everyone in.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

import streamlit as st

from microseg.projects import DEFAULT_SLUG, home_project
from webui import state

FAILED_WAIT_S = 1.0  # after a wrong password: slows guessing down


@dataclass(frozen=True)
class AuthConfig:
    """A shared ``password``, or ``users`` (name -> token), or ``problem`` (why neither)."""

    password: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    problem: str | None = None


def auth_config() -> AuthConfig | None:
    """The sign-in settings, or None when the server asks no one to sign in."""
    try:
        section = st.secrets.get("auth")
    except Exception:  # noqa: BLE001 - no secrets file, or one that does not parse
        return None
    if section is None:
        return None
    bad = "The sign-in settings ([auth] in .streamlit/secrets.toml) cannot be used: "
    users = section.get("users") if hasattr(section, "get") else None
    password = section.get("password") if hasattr(section, "get") else None
    if users is not None:
        if not hasattr(users, "items") or not users:
            return AuthConfig(problem=bad + "[auth.users] must list name = token pairs.")
        tokens = {str(k): v for k, v in users.items()}
        if any(not isinstance(v, str) or len(v) < 8 for v in tokens.values()):
            return AuthConfig(problem=bad + "every token must be text of 8 characters or more.")
        return AuthConfig(users=tokens)
    if not isinstance(password, str) or not password:
        return AuthConfig(problem=bad + "give a password or [auth.users].")
    return AuthConfig(password=password)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def require_sign_in() -> None:
    """Stop the page behind a sign-in form until this session has signed in (nothing
    when the server asks no one)."""
    cfg = auth_config()
    if cfg is None or (state.get("signed_in") and cfg.problem is None):
        return
    st.title("microseg")
    if cfg.problem:
        st.error(cfg.problem + " Ask whoever runs this server.")
        st.stop()
    with st.form("sign_in"):
        st.markdown("**Sign in**")
        name = st.text_input("User name", key="signin_user") if cfg.users else ""
        secret = st.text_input(
            "Token" if cfg.users else "Password", type="password", key="signin_secret"
        )
        submitted = st.form_submit_button("Sign in", key="signin_go")
    if submitted:
        if cfg.users:
            expected = cfg.users.get(name.strip())
            ok = expected is not None and _same(secret, expected)
        else:
            ok = _same(secret, cfg.password or "")
        if ok:
            user = name.strip() if cfg.users else None
            state.put("signed_in", True)
            state.put("user", user)
            state.start_over(home_project(user).slug)
            st.rerun()
        time.sleep(FAILED_WAIT_S)
        st.error(
            "That user name and token do not match." if cfg.users else "That password is not right."
        )
    st.stop()


def sign_out_button() -> None:
    """A Sign out button in the sidebar of a signed-in session."""
    if not state.get("signed_in"):
        return
    who = state.get("user")
    if st.sidebar.button(f"Sign out{f' ({who})' if who else ''}", key="sign_out"):
        state.start_over(DEFAULT_SLUG)
        state.put("signed_in", False)
        state.put("user", None)
        st.rerun()
