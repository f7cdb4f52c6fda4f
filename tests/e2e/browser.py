"""Helpers for real-browser tests."""

from __future__ import annotations

import re

import numpy as np
from playwright.sync_api import expect


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


def stroke(page, canvas, points):
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=10)
    page.mouse.up()


def nuclei_stroke_targets():
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


def open_sample(page, key: str) -> None:
    """Open the home page and the gallery sample ``key``."""
    page.goto(page.base_url, wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="microseg", exact=True)).to_be_visible(timeout=60_000)
    settle(page)
    page.locator(f".st-key-open_{key} button").click()
    expect(page.get_by_text(re.compile(r"^Opened sample:"))).to_be_visible(timeout=60_000)
    settle(page)


def open_annotate(page):
    """Open the synthetic nuclei series and the Annotate page; returns the drawing canvas."""
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
    return upper


def paint_nuclei_strokes(page, upper) -> None:
    """One background stroke and two nucleus strokes on frame 0 of the nuclei series."""
    bg, fgs = nuclei_stroke_targets()
    page.get_by_test_id("stSidebar").get_by_text("background", exact=True).click()
    settle(page)
    stroke(page, upper, bg)
    settle(page)
    page.get_by_test_id("stSidebar").get_by_text("nucleus", exact=True).click()
    settle(page)
    for fg in fgs:
        stroke(page, upper, fg)
        settle(page)


def paint_boundaries_across_the_map(page, fractions=(0.25, 0.5, 0.75)) -> None:
    """On the Grains page: open the corrections and paint one boundary across the whole
    map at each fraction of its height (each one a separate correction)."""
    page.get_by_text("Correct the grain map").click()
    settle(page)
    page.get_by_text("Paint on the map").click()
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=60_000)
    box = canvas.bounding_box()
    w, h = box["width"], box["height"]
    for i, frac in enumerate(fractions, start=1):
        canvas = page.locator("canvas.upper-canvas").first
        canvas.scroll_into_view_if_needed()
        stroke(page, canvas, [(4, h * frac), (w - 4, h * frac)])
        expect(page.get_by_text(re.compile(r"^boundary painted \("))).to_have_count(
            i, timeout=60_000
        )
        settle(page, 120_000)


def start_training_on_corrections(page, n: int = 3) -> None:
    """On the Grains page with ``n`` corrections made: set the retraining budget to 10 s
    and press "Train on my corrections"."""
    panel = page.locator(".st-key-grains_retrain_panel")
    panel.scroll_into_view_if_needed()
    expect(
        panel.get_by_text(re.compile(rf"^{n} correction\(s\): \d+ corrected place"))
    ).to_be_visible(timeout=60_000)
    slider = panel.get_by_role("slider")
    slider.focus()
    for _ in range(5):  # 60 s -> 10 s
        slider.press("ArrowLeft")
    settle(page)
    panel.get_by_role("button", name="Train on my corrections").click()
