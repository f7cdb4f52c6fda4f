"""Real browser: correct the grain map, train the U-Net on the corrections, and see the
map redrawn by the retrained model with its score on held-out corrections."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import (
    no_traceback,
    paint_boundaries_across_the_map,
    settle,
    start_training_on_corrections,
)
from tests.e2e.conftest import SHOTS
from tests.e2e.test_grains_browser import _grain_count, open_grains_page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def test_train_on_my_corrections_redraws_the_map(page):
    n0 = open_grains_page(page)
    # before any correction the panel says what to do
    page.get_by_text("Train on my corrections").first.click()
    expect(page.get_by_text(re.compile(r"^Correct the map first"))).to_be_visible(timeout=30_000)
    # three separate corrections: lines across the map at a quarter, half, three quarters
    paint_boundaries_across_the_map(page)
    no_traceback(page)
    assert _grain_count(page) > n0
    start_training_on_corrections(page)
    expect(page.get_by_text(re.compile(r"^Training on the corrections: step"))).to_be_visible(
        timeout=60_000
    )
    page.screenshot(path=str(SHOTS / "grains_retrain_running.png"), full_page=False)
    notice = page.get_by_text(re.compile(r"^The U-Net was trained on 3 correction\(s\)"))
    expect(notice).to_be_visible(timeout=180_000)
    settle(page, 120_000)
    no_traceback(page)
    text = notice.inner_text()
    m = re.search(r"\(macro F1\): ([\d.]+) before, ([\d.]+) after", text)
    assert m, text
    before, after = float(m.group(1)), float(m.group(2))
    assert after >= before  # the starting model is kept unless the held-out labels say otherwise
    model_box = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Boundary model")
    if "it kept the starting model" in text:
        # nothing learned: the map keeps its model and the user's corrections stay
        assert after == before, text
        assert "Outside the corrected places" not in text, text
        expect(model_box).to_have_value(re.compile(r"^Built-in"), timeout=30_000)
        expect(page.get_by_text(re.compile(r"^boundary painted \("))).to_have_count(3)
    else:
        # the map is now drawn by the retrained U-Net, and the corrections were consumed
        assert after > before, text
        # and the report says how much of the map outside the corrections it redrew
        assert re.search(r"changes the class of [\d.]+ % of the pixels", text), text
        expect(model_box).to_have_value("Deep learning (U-Net, trained here)", timeout=30_000)
        expect(page.get_by_text(re.compile(r"^boundary painted \("))).to_have_count(0)
    page.locator(".st-key-grains_map .js-plotly-plot image").wait_for(
        state="attached", timeout=120_000
    )
    page.screenshot(path=str(SHOTS / "grains_retrained.png"), full_page=True)
    assert not page.errors
