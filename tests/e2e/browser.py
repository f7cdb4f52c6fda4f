"""Helpers for real-browser tests."""

from __future__ import annotations


def settle(page, timeout: int = 60_000) -> None:
    """Wait until the current Streamlit rerun has finished (no running icon, nothing stale)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')
                 && !document.querySelector('[data-testid="stElementContainer"][data-stale="true"]')""",
        timeout=timeout,
    )


def no_traceback(page) -> None:
    """Assert that no Streamlit exception box is on the page."""
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']"
    ).first.inner_text()
