"""Real browser: segment the sample series, move the frame slider, select a histogram range,
see the nuclei highlighted, track them."""

from __future__ import annotations

import re

import pytest
import tifffile
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _selected(page) -> int:
    text = page.get_by_text(re.compile(r"^\d+ nuclei selected")).first.inner_text()
    return int(re.match(r"(\d+)", text).group(1))


def test_segment_series_select_and_track(page, tmp_path):
    from tests.nuclei_fixtures import small_series, train_rf_model

    model = train_rf_model(tmp_path, small_series())

    page.set_viewport_size({"width": 1400, "height": 1700})
    page.goto(page.base_url, wait_until="domcontentloaded")
    page.locator(".st-key-open_synthetic-nuclei-series button").click()
    expect(page.get_by_text(re.compile(r"^Opened sample: Synthetic nuclei"))).to_be_visible(
        timeout=60_000
    )
    settle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Nuclei").click()
    expect(page.get_by_role("heading", name="Nuclei", exact=True)).to_be_visible(timeout=60_000)
    settle(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(model))
    expect(sidebar.get_by_role("combobox", name="Nuclei model")).to_have_value(
        "Model file: nuclei_rf.safetensors", timeout=60_000
    )
    expect(page.get_by_role("button", name="Segment all frames")).to_be_enabled()
    settle(page)

    # segment all frames in the background, then stop after a few
    page.get_by_role("button", name="Segment all frames").click()
    progress = page.get_by_text(re.compile(r"^Segmenting: \d+/170 frames"))
    expect(progress).to_be_visible(timeout=30_000)
    page.wait_for_function(
        """() => [...document.querySelectorAll('p')].some(p => {
                 const m = p.innerText.match(/^Segmenting: (\\d+)\\/170/); return m && +m[1] >= 4; })""",
        timeout=60_000,
    )
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text(re.compile(r"^Stopped after \d+ of 170 frames"))).to_be_visible(
        timeout=60_000
    )
    settle(page)
    no_traceback(page)
    expect(page.get_by_text(re.compile(r"^Frame 0: \d+ nuclei")).first).to_be_visible()

    # move the frame slider one step to the right
    page.get_by_test_id("stMain").get_by_test_id("stSlider").first.get_by_role("slider").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_text(re.compile(r"^Frame 1: \d+ nuclei")).first).to_be_visible(
        timeout=30_000
    )
    settle(page)
    assert _selected(page) == 0

    # box-select a range of the area histogram
    page.get_by_role("tab", name="Plots").click()
    hist = page.get_by_test_id("stPlotlyChart").nth(1)
    hist.scroll_into_view_if_needed()
    drag = hist.locator(".nsewdrag").first
    expect(drag).to_be_visible(timeout=30_000)
    box = drag.bounding_box()
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.45, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, y, steps=12)
    page.mouse.up()
    page.wait_for_function(
        """() => [...document.querySelectorAll('p')].some(p => /^[1-9]\\d* nuclei selected/.test(p.innerText))""",
        timeout=30_000,
    )
    settle(page)
    no_traceback(page)
    n_sel = _selected(page)
    frame_text = page.get_by_text(re.compile(r"^Frame 1: \d+ nuclei")).first.inner_text()
    n_frame = int(re.search(r"Frame 1: (\d+)", frame_text).group(1))
    assert 0 < n_sel < n_frame
    page.get_by_test_id("stPlotlyChart").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "nuclei_selected.png"), full_page=True)

    # track the segmented frames; tracks are drawn on the image
    page.get_by_role("tab", name="Tracks").click()
    page.get_by_role("button", name="Track nuclei").click()
    expect(page.get_by_text(re.compile(r"^\d+ tracks over \d+ frames"))).to_be_visible(
        timeout=60_000
    )
    settle(page)
    no_traceback(page)
    expect(page.get_by_text(re.compile(r"^\d+ tracks, \d+ division"))).to_be_visible()
    assert page.locator(".js-plotly-plot").first.locator("path.js-line").count() >= 1
    # later frames: tracks drawn as lines behind the nuclei
    page.get_by_test_id("stMain").get_by_test_id("stSlider").first.get_by_role("slider").focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(page.get_by_text(re.compile(r"^Frame 4: \d+ nuclei")).first).to_be_visible(
        timeout=30_000
    )
    settle(page)
    no_traceback(page)
    page.screenshot(path=str(SHOTS / "nuclei_tracks.png"), full_page=True)
    page.get_by_role("tab", name="Over time").click()
    settle(page)
    page.screenshot(path=str(SHOTS / "nuclei_over_time.png"), full_page=True)

    # downloads are made when clicked
    page.get_by_role("tab", name="Export").click()
    settle(page)
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Objects (CSV)").click()
    csv = tmp_path / "objects.csv"
    info.value.save_as(csv)
    header = csv.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:8] == [
        "frame",
        "label",
        "y",
        "x",
        "area_px",
        "area_um2",
        "mean_intensity",
        "touches_border",
    ]
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Label stack (TIFF)").click()
    tif = tmp_path / "labels.tif"
    info.value.save_as(tif)
    assert tifffile.imread(tif).shape == (170, 256, 256)
    no_traceback(page)
    assert not page.errors
