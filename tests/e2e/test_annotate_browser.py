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


def test_outlines_from_qupath_become_strokes_that_train(page, tmp_path):
    """Upload a QuPath GeoJSON of nuclei outlines on the Annotate page: they become this
    frame's strokes (nucleus, border, background) and the random forest trains on them; a
    Cellpose _seg.npy is refused with one sentence."""
    import json
    import pickle

    import numpy as np

    from microseg.geojson import features_from_labels

    open_annotate(page)
    lab = np.zeros((128, 128), np.uint16)
    yy, xx = np.mgrid[:128, :128]
    for i, (y, x) in enumerate([(30, 30), (30, 90), (90, 60)], start=1):
        lab[(yy - y) ** 2 + (xx - x) ** 2 <= 100] = i
    feats = list(features_from_labels(lab, class_name="Nucleus", color=(255, 0, 0)))
    gj = tmp_path / "qupath_export.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    seg = tmp_path / "frame_seg.npy"
    seg.write_bytes(pickle.dumps({"masks": lab}))

    page.get_by_text("Import / export labels").click()
    settle(page)
    dropzone = page.locator(".st-key-annot_outlines [data-testid='stFileUploaderDropzoneInput']")
    dropzone.set_input_files(str(seg))
    expect(page.get_by_text(re.compile(r"is a Cellpose file"))).to_be_visible(timeout=60_000)
    settle(page)
    dropzone.set_input_files(str(gj))
    caption = page.get_by_text(re.compile(r"^Painted pixels: "))
    expect(caption).not_to_contain_text("nucleus 0", timeout=60_000)
    settle(page, 120_000)
    text = caption.inner_text()
    counts = {
        name.strip(): int(n) for name, n in re.findall(r"([a-z ]+) (\d+)", text.split(":", 1)[1])
    }
    # every pixel of the image is labelled: the three discs and their borders, the rest background
    assert counts["nucleus"] + counts.get("border", 0) == int((lab > 0).sum())
    assert counts["background"] > 0
    expect(page.get_by_text(re.compile(r"^Random forest updated in"))).to_be_visible(
        timeout=120_000
    )
    no_traceback(page)
    page.screenshot(path=str(SHOTS / "annotate_outlines.png"), full_page=True)
    assert not page.errors
