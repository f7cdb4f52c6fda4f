"""Real browser: paint strokes of two classes, watch the live overlay and the uncertainty map."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def stroke(page, canvas, points):
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=10)
    page.mouse.up()


def _targets():
    """Canvas points (460 px display of the 256 px frame 0) on background and on nuclei."""
    from scipy import ndimage as ndi

    from microseg.samples import load_sample

    truth = load_sample("synthetic-nuclei-series").ground_truth["labels"][0]
    scale = 460 / truth.shape[1]
    dist = ndi.distance_transform_edt(truth == 0)
    by, bx = np.unravel_index(np.argmax(dist), dist.shape)
    r = max(2.0, dist[by, bx] / 2)
    h, w = truth.shape
    by = min(max(by, 3), h - 4)
    bg = [(max(bx - r, 3) * scale, by * scale), (min(bx + r, w - 4) * scale, by * scale)]
    sizes = np.bincount(truth.ravel())
    sizes[0] = 0
    fgs = []
    for lab in np.argsort(sizes)[::-1][:2]:
        yy, xx = np.nonzero(truth == lab)
        row = int(np.median(yy))
        xs = xx[yy == row]
        fgs.append([((xs.min() + 2) * scale, row * scale), ((xs.max() - 2) * scale, row * scale)])
    return bg, fgs


def test_paint_two_classes_live_overlay(page):
    bg, fgs = _targets()
    page.goto(page.base_url, wait_until="domcontentloaded")
    page.locator(".st-key-open_synthetic-nuclei-series button").click()
    expect(page.get_by_text(re.compile(r"^Opened sample: Synthetic nuclei"))).to_be_visible(
        timeout=60_000
    )
    settle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Annotate").click()
    upper = page.locator("[data-testid='stBidiComponentIsolated'] canvas.upper-canvas")
    expect(upper).to_be_visible(timeout=60_000)
    settle(page)
    expect(page.get_by_text("Paint a few strokes of at least two classes")).to_be_visible()

    page.get_by_test_id("stSidebar").get_by_text("background", exact=True).click()
    settle(page)
    stroke(page, upper, bg)
    settle(page)
    page.get_by_test_id("stSidebar").get_by_text("nucleus", exact=True).click()
    settle(page)
    for fg in fgs:
        stroke(page, upper, fg)
        settle(page)
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
