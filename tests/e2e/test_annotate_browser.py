"""Real browser: paint strokes of two classes, watch the live overlay and the uncertainty map."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, open_annotate, paint_nuclei_strokes, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def test_paint_two_classes_live_overlay(page):
    upper = open_annotate(page)
    expect(page.get_by_text("Paint a few strokes of at least two classes")).to_be_visible()
    paint_nuclei_strokes(page, upper)
    page.screenshot(path=str(SHOTS / "annotate_after_strokes.png"), full_page=True)
    expect(page.get_by_text(re.compile(r"^Random forest updated in"))).to_be_visible(timeout=60_000)
    settle(page)
    no_traceback(page)
    overlay = page.locator("[data-testid='stImage'] img").last
    expect(overlay).to_be_visible()
    page.screenshot(path=str(SHOTS / "annotate_live.png"), full_page=True)

    page.get_by_text("Uncertainty", exact=True).click()
    settle(page)
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=60_000)
    page.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot .hm").first.wait_for(
        state="attached", timeout=60_000
    )
    no_traceback(page)
    page.screenshot(path=str(SHOTS / "annotate_uncertainty.png"), full_page=True)
    assert not page.errors
