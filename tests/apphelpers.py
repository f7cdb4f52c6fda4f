"""Helpers for AppTest page tests."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def new_app(timeout: float = 120) -> AppTest:
    """Run the home page once in a fresh session."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    return at.run()
