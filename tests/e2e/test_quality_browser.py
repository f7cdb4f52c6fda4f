"""Real browser: an uploaded image gets a quality verdict on the Grains page, with its
reasons and what to do."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT
from tests.e2e.browser import no_traceback, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TI64 = ROOT.parent / "shared" / "data" / "grains" / "nist_ti64_sem" / "ti64_sem_bse.tif"
NUCLEI = ROOT.parent / "shared" / "data" / "nuclei" / "dsb_sample" / "image.tif"


def _grains_verdict(page, path):
    """Upload ``path``, open the Grains page and return its verdict box once it shows."""
    page.goto(page.base_url, wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="microseg", exact=True)).to_be_visible(timeout=60_000)
    settle(page)
    page.get_by_role("tab", name="Upload").click()
    page.locator(".st-key-upload [data-testid='stFileUploaderDropzoneInput']").set_input_files(
        str(path)
    )
    expect(page.get_by_text(f"Opened upload: {path.name}")).to_be_visible(timeout=60_000)
    settle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Grains", exact=True).click()
    expect(page.get_by_role("heading", name="Grains", exact=True)).to_be_visible(timeout=60_000)
    box = page.locator(".st-key-grains_quality")
    expect(
        box.get_by_text(re.compile(r"Quality: (looks fine|check this|do not trust)\."))
    ).to_be_visible(timeout=180_000)
    settle(page, 120_000)
    no_traceback(page)
    return box


def test_a_fluorescence_image_on_the_grains_page_is_not_trusted(page):
    """Not a grain structure at all: the verdict says so, why, and what to do."""
    if not NUCLEI.is_file():
        pytest.skip("shared data not available")
    box = _grains_verdict(page, NUCLEI)
    expect(box.get_by_text("Quality: do not trust.")).to_be_visible()
    expect(box.get_by_text(re.compile("isolated blobs"))).to_be_visible()
    expect(box.get_by_text(re.compile(r"^What to do:"))).to_be_visible()
    box.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "grains_quality_nuclei.png"), full_page=False)
    box.get_by_text("The numbers behind the verdict").click()
    expect(box.get_by_test_id("stDataFrame")).to_be_visible(timeout=30_000)
    assert not page.errors


def test_an_sem_micrograph_gets_a_sound_map_from_the_generalist(page):
    """The SEM Ti-6Al-4V micrograph the first built-in model failed on (948 'grains',
    boundary F1 0.58): the generalist's map is a tessellation the checks accept."""
    if not TI64.is_file():
        pytest.skip("shared data not available")
    box = _grains_verdict(page, TI64)
    expect(box.get_by_text("Quality: looks fine.")).to_be_visible()
    box.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "grains_quality_ti64.png"), full_page=False)
    assert not page.errors
