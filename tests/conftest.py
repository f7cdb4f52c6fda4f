"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pages re-raise unexpected errors under test (the app shows one sentence to users)
os.environ.setdefault("MICROSEG_RAISE_ERRORS", "1")


def shared_data_dir() -> Path | None:
    """``$MICROSEG_DATA`` or ``../shared/data`` beside the repository, if present."""
    env = os.environ.get("MICROSEG_DATA")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(autouse=True)
def temporary_workspace(tmp_path_factory, monkeypatch) -> Path:
    """Every test stores its workspace (images, strokes, models) in a fresh temporary folder."""
    path = tmp_path_factory.mktemp("workspace")
    monkeypatch.setenv("MICROSEG_WORKSPACE", str(path))
    return path


@pytest.fixture
def shared_data() -> Path:
    """Path of the shared public datasets; skips the test when they are absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (public datasets are not part of a clone)")
    return path
