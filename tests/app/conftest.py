"""Fixtures shared by the AppTest page tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def workspace_dir(tmp_path, monkeypatch):
    """The server's workspace folder for this test (``MICROSEG_WORKSPACE``)."""
    path = tmp_path / "workspace"
    monkeypatch.setenv("MICROSEG_WORKSPACE", str(path))
    return path
