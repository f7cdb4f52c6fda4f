"""Real browser: painted strokes (and the forest trained on them) come back after a page reload,
through Recent work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, open_annotate, paint_nuclei_strokes, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
PAINTED = re.compile(r"^Painted pixels: background (\d+), nucleus (\d+)")


def _painted(page) -> tuple[int, int]:
    caption = page.get_by_text(PAINTED)
    expect(caption).to_be_visible(timeout=60_000)
    match = PAINTED.match(caption.inner_text())
    return int(match.group(1)), int(match.group(2))


def test_strokes_come_back_after_a_reload(page):
    upper = open_annotate(page)
    paint_nuclei_strokes(page, upper)
    settle(page)
    painted = _painted(page)
    assert painted[0] > 0 and painted[1] > 0

    page.reload(wait_until="domcontentloaded")  # a new session: memory is gone
    page.goto(page.base_url, wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="Recent work")).to_be_visible(timeout=60_000)
    settle(page)
    recent = page.locator(".st-key-recent_work")
    expect(recent.get_by_text("Synthetic nuclei time-lapse", exact=True)).to_be_visible()
    expect(recent.get_by_text("1 labelled frame", exact=True)).to_be_visible()
    expect(recent.get_by_text("1 saved model", exact=True)).to_be_visible()  # the live forest
    shots = Path("/tmp/shots")
    shots.mkdir(exist_ok=True)
    recent.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "home_recent_work.png"), full_page=True)
    page.screenshot(path=str(SHOTS / "home_recent_work.png"), full_page=True)

    recent.locator("[class*='st-key-ws_open_'] button").first.click()
    expect(page.get_by_text("Opened from recent work: Synthetic nuclei time-lapse")).to_be_visible(
        timeout=60_000
    )
    settle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Annotate").click()
    expect(page.locator("[data-testid='stBidiComponentIsolated'] canvas")).not_to_have_count(
        0, timeout=60_000
    )
    settle(page)
    assert _painted(page) == painted
    no_traceback(page)
    page.screenshot(path=str(shots / "annotate_restored.png"), full_page=True)
    assert not page.errors
