"""Real browser: load the grain sample, train both models on the ML-vs-DL page with example
strokes from the ground truth, then select a histogram bar on the Grains page and see the
grains highlighted."""

from __future__ import annotations

import re
import zipfile

import pytest
import tifffile
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, open_sample, settle, stroke
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _full_shot(page, name: str) -> None:
    """Screenshot of the whole page (Streamlit scrolls inside its own container)."""
    height = page.evaluate(
        "() => document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
    )
    page.set_viewport_size({"width": 1400, "height": min(max(1000, height + 100), 6000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / name), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def _nav(page, name: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(name, exact=True).click()


def _yellow_pixels(page, key: str) -> int:
    """Yellow (selected) pixels in the grain-map image of the plotly chart ``key``."""
    return page.locator(f".st-key-{key} .js-plotly-plot").evaluate(
        """async el => {
            const img = el.querySelector('image');
            const src = img.getAttribute('href') || img.getAttribute('xlink:href');
            const im = new Image(); im.src = src; await im.decode();
            const c = document.createElement('canvas'); c.width = im.width; c.height = im.height;
            const g = c.getContext('2d'); g.drawImage(im, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                if (d[i] > 160 && d[i + 1] > 145 && d[i + 2] < 90) n++;
            return n; }"""
    )


def test_compare_models_and_linked_histogram(page, tmp_path):
    open_sample(page, "synthetic-grains")

    # ML vs DL: example strokes from the ground truth, a 3 s U-Net budget, run both
    _nav(page, "ML vs DL")
    expect(page.get_by_role("heading", name="Machine learning vs deep learning")).to_be_visible(
        timeout=60_000
    )
    settle(page)
    page.get_by_role("button", name="Use example strokes from the ground truth").click()
    expect(page.get_by_text(re.compile(r"^Strokes: grain interior"))).to_be_visible(timeout=60_000)
    settle(page)
    budget = page.get_by_label("Deep-learning training budget (s)")
    budget.fill("3")
    budget.press("Enter")
    settle(page)
    page.get_by_role("button", name="Train both models and compare").click()
    expect(page.get_by_role("heading", name="Size distributions")).to_be_visible(timeout=150_000)
    expect(page.get_by_test_id("stDataFrame").last).to_be_visible(timeout=60_000)
    settle(page, 120_000)
    no_traceback(page)
    assert page.get_by_text("Boundary F1").count() >= 2
    expect(page.get_by_role("heading", name="Classical ML (random forest)")).to_be_visible()
    expect(page.get_by_role("heading", name="Deep learning (U-Net)")).to_be_visible()
    page.locator(".st-key-cmp_dist .js-plotly-plot").wait_for(timeout=30_000)
    _full_shot(page, "grains_compare.png")
    page.locator(".st-key-cmp_dist").screenshot(path=str(SHOTS / "grains_compare_dist.png"))
    # the comparison's ZIP is made when clicked
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name="Everything (ZIP)").click()
    path = tmp_path / "compare.zip"
    info.value.save_as(path)
    names = set(zipfile.ZipFile(path).namelist())
    for end in ("_unet_grains.tif", "_random_forest_boundary.tif", "_compare.png"):
        assert any(n.endswith(end) for n in names), (end, names)

    # Grains page: the comparison's random forest, pick the tallest histogram bar
    _nav(page, "Grains")
    expect(page.get_by_role("heading", name="Grains", exact=True)).to_be_visible(timeout=60_000)
    hist = page.locator(".st-key-grains_hist_logarea .js-plotly-plot")
    hist.locator(".bars path").first.wait_for(state="attached", timeout=60_000)
    page.locator(".st-key-grains_map .js-plotly-plot image").wait_for(
        state="attached", timeout=60_000
    )
    settle(page, 120_000)
    no_traceback(page)
    before = _yellow_pixels(page, "grains_map")
    heights = hist.locator(".bars path").evaluate_all(
        "ps => ps.map(p => p.getBoundingClientRect().height)"
    )
    tallest = max(range(len(heights)), key=heights.__getitem__)
    box = hist.locator(".bars path").nth(tallest).bounding_box()
    # plotly's drag layer lies over the bars: click at the bar's position
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.get_by_text(re.compile(r"grain\(s\) selected"))).to_be_visible(timeout=60_000)
    settle(page, 120_000)
    no_traceback(page)
    n_sel = int(re.match(r"(\d+)", page.get_by_text(re.compile(r"grain\(s\) selected"))
                         .inner_text()).group(1))  # fmt: skip
    assert n_sel >= 1
    page.wait_for_function(
        """() => { const i = document.querySelector('.st-key-grains_map .js-plotly-plot image');
                   return i && (i.getAttribute('href') || '').length > 100; }""",
        timeout=30_000,
    )
    assert _yellow_pixels(page, "grains_map") > before + 100 * n_sel
    _full_shot(page, "grains_page.png")
    page.locator(".st-key-grains_map").screenshot(path=str(SHOTS / "grains_map_selected.png"))

    # click one grain's marker on the map: that grain alone is selected and its row shown
    page.get_by_role("button", name="Clear selection").click()
    expect(page.get_by_text(re.compile(r"grain\(s\) selected"))).to_have_count(0, timeout=60_000)
    settle(page, 120_000)
    page.locator(".st-key-grains_map").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    marker = page.locator(".st-key-grains_map .scatterlayer .points path").nth(40)
    box = marker.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.get_by_text("1 grain(s) selected (highlighted in yellow).")).to_be_visible(
        timeout=60_000
    )
    settle(page, 120_000)
    no_traceback(page)
    expect(
        page.locator(".st-key-grains_sel_rows").get_by_test_id("stDataFrame")
    ).to_be_visible()  # the grain's row
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Grain map (TIFF)").click()
    path = tmp_path / "grains.tif"
    info.value.save_as(path)
    assert tifffile.imread(path).shape == (512, 512)
    assert not page.errors


def _grain_count(page) -> int:
    metric = page.get_by_test_id("stMetric").filter(has_text=re.compile(r"^Grains"))
    return int(metric.first.get_by_test_id("stMetricValue").inner_text().strip())


def open_grains_page(page) -> int:
    """The grain sample on the Grains page with its map drawn; returns the grain count."""
    open_sample(page, "synthetic-grains")
    _nav(page, "Grains")
    expect(page.get_by_role("heading", name="Grains", exact=True)).to_be_visible(timeout=60_000)
    page.locator(".st-key-grains_map .js-plotly-plot image").wait_for(
        state="attached", timeout=120_000
    )
    settle(page, 120_000)
    no_traceback(page)
    return _grain_count(page)


def test_paint_and_erase_boundaries_on_the_grain_map(page):
    n0 = open_grains_page(page)
    page.get_by_text(f"Grain table ({n0} grains)").click()  # stays open as the count changes
    settle(page)
    page.get_by_text("Correct the grain map").click()
    settle(page)
    assert page.locator("canvas.upper-canvas").count() == 0  # no canvas until painting is on
    page.get_by_text("Paint on the map").click()
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=60_000)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    w, h = box["width"], box["height"]

    # paint: a line across the whole map cuts every grain it crosses in two
    stroke(page, canvas, [(4, h * 0.5), (w - 4, h * 0.5)])
    expect(page.get_by_text(re.compile(r"^boundary painted \("))).to_be_visible(timeout=60_000)
    settle(page, 120_000)
    no_traceback(page)
    n1 = _grain_count(page)
    assert n1 > n0 + 2
    expect(page.get_by_text(f"Grain table ({n1} grains)")).to_be_visible()
    assert page.locator(".st-key-grains_table_panel details[open]").count() == 1
    page.locator(".st-key-grains_paint_mode").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "grains_paint.png"), full_page=False)

    # undo, then erase: a stroke down the map merges the grains on both sides of each
    # boundary it crosses
    page.get_by_role("button", name="Undo correction").click()
    expect(page.get_by_text(re.compile(r"^boundary painted \("))).to_have_count(0, timeout=60_000)
    settle(page, 120_000)
    assert _grain_count(page) == n0
    page.locator(".st-key-grains_paint_mode").get_by_text("Erase a false boundary").click()
    settle(page, 120_000)
    canvas = page.locator("canvas.upper-canvas").first
    canvas.scroll_into_view_if_needed()
    stroke(page, canvas, [(w * 0.5, 4), (w * 0.5, h - 4)])
    expect(page.get_by_text(re.compile(r"^boundary erased under a painted stroke"))).to_be_visible(
        timeout=60_000
    )
    settle(page, 120_000)
    no_traceback(page)
    assert _grain_count(page) < n0 - 2
    assert not page.errors


def test_the_qupath_geojson_download_is_the_grain_map(page, tmp_path):
    """The Export section's GeoJSON holds one QuPath detection per grain of the map."""
    from microseg.geojson import read_geojson

    n = open_grains_page(page)
    button = page.get_by_role("button", name="QuPath objects (GeoJSON)")
    button.scroll_into_view_if_needed()
    settle(page, 120_000)
    page.screenshot(path=str(SHOTS / "grains_exports.png"))
    with page.expect_download(timeout=120_000) as info:
        button.click()
    gj = tmp_path / "sample.geojson"
    info.value.save_as(gj)
    settle(page)
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name="Grain map (TIFF)").click()
    tif = tmp_path / "grains.tif"
    info.value.save_as(tif)
    labels = tifffile.imread(tif)
    back, _, classes = read_geojson(gj, labels.shape)
    assert len(classes) == n == labels.max()
    assert (back == labels).all()
    expect(page.get_by_text(re.compile(r"the GeoJSON in QuPath"))).to_be_visible()
    no_traceback(page)
    assert not page.errors
