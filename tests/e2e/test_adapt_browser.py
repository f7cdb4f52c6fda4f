"""Real browser, the whole human-in-the-loop cycle on an uploaded SEM micrograph: paint
strokes, train the U-Net from the built-in grain model, measure grains with it, correct
the map, train on the corrections and see the score on held-out corrections."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT
from tests.e2e.browser import (
    no_traceback,
    paint_boundaries_across_the_map,
    settle,
    start_training_on_corrections,
    stroke,
)
from tests.e2e.conftest import SHOTS
from tests.e2e.test_grains_browser import _grain_count

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TI64 = ROOT.parent / "shared" / "data" / "grains" / "nist_ti64_sem"
SIDE = 320  # the crop uploaded (image px)


def _crop(tmp_path):
    """A corner of the Ti-6Al-4V micrograph as a PNG, and NIST's boundaries of it."""
    import tifffile
    from PIL import Image

    img = tifffile.imread(TI64 / "ti64_sem_bse.tif")
    img = img[..., 0] if img.ndim == 3 else img
    ref = tifffile.imread(TI64 / "ti64_nist_tool_boundaries.tif") > 0
    path = tmp_path / "ti64_corner.png"
    Image.fromarray(np.asarray(img[:SIDE, :SIDE], np.uint8)).save(path)
    return path, ref[:SIDE, :SIDE]


def _stroke_targets(ref: np.ndarray, n: int = 3) -> tuple[list, list]:
    """Image-px polylines along NIST's boundaries (the longest pieces between junctions)
    and across grain interiors (rows at least 6 px from any boundary), ``n`` of each."""
    from scipy import ndimage as ndi

    # boundary segments between junctions, each drawn as a polyline along its main axis
    nbrs = ndi.convolve(ref.astype(int), np.ones((3, 3), int), mode="constant") - 1
    pieces, n_pieces = ndi.label(ref & (nbrs <= 2), structure=np.ones((3, 3)))
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    boundary = []
    for lab in np.argsort(sizes)[::-1][:n]:
        yy, xx = np.nonzero(pieces == lab)
        pts = np.c_[xx, yy].astype(float)
        centred = pts - pts.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        order = np.argsort(centred @ axis)
        boundary.append([tuple(pts[i]) for i in order[2:-2:6]])
    far = ndi.distance_transform_edt(~ref) >= 6
    inner = []  # (length, y, x0, x1) of horizontal runs far from every boundary
    for y in range(8, SIDE - 8, 6):
        row = np.r_[False, far[y], False]
        d = np.diff(row.astype(int))
        for x0, x1 in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0], strict=True):
            inner.append((x1 - x0, y, x0 + 2, x1 - 3))
    inner.sort(reverse=True)
    interior, rows = [], []
    for length, y, x0, x1 in inner:
        if length >= 25 and all(abs(y - r) > 20 for r in rows):
            interior.append([(x0, y), (x1, y)])
            rows.append(y)
        if len(interior) == n:
            break
    return boundary, interior


def _map_picture(page) -> str:
    """The grain map's picture as drawn (its data URL)."""
    img = page.locator(".st-key-grains_map .js-plotly-plot image").first
    return img.get_attribute("href") or ""


def _pick(page, name: str) -> None:
    page.get_by_test_id("stSidebar").get_by_text(name, exact=True).click()
    settle(page)


def test_strokes_then_corrections_on_an_uploaded_sem_micrograph(page, tmp_path):
    if not (TI64 / "ti64_sem_bse.tif").is_file():
        pytest.skip("shared data not available")
    path, ref = _crop(tmp_path)
    boundary, interior = _stroke_targets(ref)
    assert len(boundary) == 3 and len(interior) == 3

    # upload it as a grain micrograph
    page.goto(page.base_url, wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="microseg", exact=True)).to_be_visible(timeout=60_000)
    settle(page)
    page.get_by_role("tab", name="Upload").click()
    page.get_by_text("Grains (a polycrystal micrograph)").click()
    settle(page)
    page.locator(".st-key-upload [data-testid='stFileUploaderDropzoneInput']").set_input_files(
        str(path)
    )
    expect(page.get_by_text("Opened upload: ti64_corner.png")).to_be_visible(timeout=60_000)
    settle(page)

    # paint boundary and interior strokes on the Annotate page
    page.get_by_test_id("stSidebarNav").get_by_text("Annotate").click()
    upper = page.locator("[data-testid='stBidiComponentIsolated'] canvas.upper-canvas")
    expect(upper).to_be_visible(timeout=60_000)
    settle(page)
    scale = upper.bounding_box()["width"] / SIDE
    for name, segments in (("grain boundary", boundary), ("grain interior", interior)):
        _pick(page, name)
        for seg in segments:
            stroke(page, upper, [(x * scale, y * scale) for x, y in seg])
            settle(page)
    no_traceback(page)

    # train the U-Net from the built-in grain model for 20 s
    page.get_by_test_id("stButtonGroup").get_by_text("Deep learning", exact=True).click()
    settle(page)
    slider = page.get_by_role("slider", name="Training time (s)")
    slider.focus()
    for _ in range(8):  # 60 s -> 20 s
        slider.press("ArrowLeft")
    settle(page)
    page.get_by_role("button", name="Train U-Net").click()
    expect(page.get_by_text(re.compile(r"^Training the U-Net: step"))).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Most probable class per pixel")).to_be_visible(timeout=240_000)
    settle(page, 120_000)
    no_traceback(page)
    page.screenshot(path=str(SHOTS / "adapt_ti64_trained.png"), full_page=True)
    # the training time chosen is still set after the run (not back to its default)
    budget = page.get_by_test_id("stSlider").filter(has_text="Training time (s)")
    expect(budget.get_by_test_id("stSliderThumbValue")).to_have_text("20")

    # the Grains page: the built-in model's map, then the trained network's
    page.get_by_test_id("stSidebarNav").get_by_text("Grains", exact=True).click()
    expect(page.get_by_role("heading", name="Grains", exact=True)).to_be_visible(timeout=60_000)
    model_box = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Boundary model")
    model_box.click()
    page.get_by_role("option", name=re.compile(r"^Built-in grains model")).click()
    page.locator(".st-key-grains_map .js-plotly-plot image").wait_for(
        state="attached", timeout=120_000
    )
    settle(page, 120_000)
    n_builtin = _grain_count(page)
    map_builtin = _map_picture(page)
    model_box.click()
    page.get_by_role("option", name=re.compile(r"^Deep learning \(U-Net")).click()
    settle(page, 120_000)
    page.locator(".st-key-grains_map .js-plotly-plot image").wait_for(
        state="attached", timeout=120_000
    )
    no_traceback(page)
    # the map is redrawn from the trained network
    page.wait_for_function(
        """(before) => [...document.querySelectorAll('.st-key-grains_map .js-plotly-plot image')]
               .some(e => (e.getAttribute('href') || '') !== before)""",
        arg=map_builtin,
        timeout=120_000,
    )
    n_trained = _grain_count(page)
    assert n_builtin > 0 and n_trained > 0

    # correct the map: three boundaries painted across it, then train on them
    paint_boundaries_across_the_map(page)
    page.get_by_text("Train on my corrections").first.click()
    settle(page)
    start_training_on_corrections(page)
    notice = page.get_by_text(re.compile(r"^The U-Net was trained on 3 correction\(s\)"))
    expect(notice).to_be_visible(timeout=240_000)
    settle(page, 120_000)
    no_traceback(page)
    m = re.search(r"\(macro F1\): ([\d.]+) before, ([\d.]+) after", notice.inner_text())
    assert m, notice.inner_text()
    assert float(m.group(2)) >= float(m.group(1))
    page.screenshot(path=str(SHOTS / "adapt_ti64_retrained.png"), full_page=True)
    assert not page.errors
