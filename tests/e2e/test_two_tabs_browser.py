"""Real browser: two tabs painting on one image; the later save never silently
overwrites the other tab's strokes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from microseg.store import Workspace
from tests.e2e.browser import no_traceback, open_annotate, paint_nuclei_strokes, settle, stroke
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _stored(root) -> np.ndarray:
    ws = Workspace.open(root)
    (record,) = ws.images()
    return ws.load_strokes(record.id).frames[0]


def _canvas(page):
    upper = page.locator("[data-testid='stBidiComponentIsolated'] canvas.upper-canvas")
    expect(upper).to_be_visible(timeout=60_000)
    settle(page)
    return upper


def test_a_stale_tab_is_told_and_chooses(page, browser, server_workspace):
    upper = open_annotate(page)
    paint_nuclei_strokes(page, upper)
    page.wait_for_url(re.compile(r"/Annotate\?image=\d+$"), timeout=60_000)
    first = _stored(server_workspace)

    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    other.goto(page.url, wait_until="domcontentloaded")  # the same image, by its address
    other_canvas = _canvas(other)
    stroke(other, other_canvas, [(30, 400), (200, 400)])
    settle(other)
    theirs = _stored(server_workspace)
    assert (theirs != first).any()

    painted = page.get_by_text(re.compile(r"^Painted pixels:"))
    before = painted.inner_text()
    stroke(page, upper, [(30, 300), (200, 300)])
    expect(page.get_by_text(re.compile("changed in another tab")).first).to_be_visible(
        timeout=60_000
    )  # said at once (a toast); the notice is at the top of the next page run
    settle(page)
    assert painted.inner_text() != before  # this tab keeps its new stroke
    page.get_by_test_id("stSidebarNav").get_by_text("Annotate", exact=True).click()
    notice = page.locator(".st-key-stroke_conflict")
    expect(notice.get_by_text(re.compile("changed in another tab"))).to_be_visible(timeout=60_000)
    settle(page)
    no_traceback(page)
    page.screenshot(path=str(SHOTS / "two_tabs_conflict.png"), full_page=True)
    assert np.array_equal(_stored(server_workspace), theirs)  # not overwritten

    page.get_by_role("button", name="Load the strokes saved there").click()
    expect(notice).to_have_count(0, timeout=60_000)
    settle(page)
    stroke(page, _canvas(page), [(30, 200), (200, 200)])  # now in step: saved
    settle(page)
    mine = _stored(server_workspace)
    assert (mine != theirs).any() and np.array_equal(mine[theirs > 0], theirs[theirs > 0])
    no_traceback(page)
    no_traceback(other)
    other.context.close()
    assert not page.errors
