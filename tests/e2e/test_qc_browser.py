"""Real browser: the QC review page over a small batch run, worst first, and one click
opens an image on the Grains page."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect

from microseg.cli import main
from tests.conftest import ROOT
from tests.e2e.browser import no_traceback, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DATA = ROOT.parent / "shared" / "data"


def test_qc_review_of_a_batch_run(page, tmp_path):
    steel = DATA / "grains" / "nist_steel" / "steel_original.tif"
    nuclei = DATA / "nuclei" / "dsb_sample" / "image.tif"
    if not (steel.is_file() and nuclei.is_file()):
        pytest.skip("shared data not available")
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(steel, inputs / "steel.tif")
    shutil.copy(nuclei, inputs / "nuclei.tif")  # a wrong image for a grain model
    out = tmp_path / "out"
    assert main(["batch", "--task", "grains", "--model", "builtin:grains", "--out", str(out),
                 str(inputs)]) == 0  # fmt: skip
    page.goto(page.base_url, wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="microseg", exact=True)).to_be_visible(timeout=60_000)
    settle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("QC review", exact=True).click()
    expect(page.get_by_role("heading", name="QC review", exact=True)).to_be_visible(timeout=60_000)
    settle(page)
    field = page.get_by_label("Folder on the server")
    field.fill(str(out))
    field.press("Enter")
    first = page.locator(".st-key-qc_item_0")
    expect(first.get_by_text("do not trust")).to_be_visible(timeout=60_000)
    expect(first.get_by_text("nuclei.tif")).to_be_visible()
    second = page.locator(".st-key-qc_item_1")
    expect(second.get_by_text("steel.tif")).to_be_visible()
    settle(page)
    no_traceback(page)
    assert first.locator("img").count() == 1  # a thumbnail
    page.screenshot(path=str(SHOTS / "qc_review.png"), full_page=True)
    second.get_by_role("button", name=re.compile("Open on the Grains page")).click()
    expect(page.get_by_role("heading", name="Grains", exact=True)).to_be_visible(timeout=60_000)
    expect(
        page.get_by_text(re.compile(r"Quality: (looks fine|check this|do not trust)\."))
    ).to_be_visible(timeout=120_000)
    expect(page.get_by_test_id("stSidebar").get_by_text("steel.tif")).to_be_visible()
    no_traceback(page)
    assert not page.errors
