"""Real browser: an uploaded micrograph the built-in grain model never saw gets a quality
verdict on the Grains page, with its reason and what to do."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT
from tests.e2e.browser import no_traceback, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TI64 = ROOT.parent / "shared" / "data" / "grains" / "nist_ti64_sem" / "ti64_sem_bse.tif"


def test_an_unfamiliar_sem_micrograph_is_flagged_on_the_grains_page(page):
    if not TI64.is_file():
        pytest.skip("shared data not available")
    page.goto(page.base_url, wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="microseg", exact=True)).to_be_visible(timeout=60_000)
    settle(page)
    page.get_by_role("tab", name="Upload").click()
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(TI64))
    expect(page.get_by_text("Opened upload: ti64_sem_bse.tif")).to_be_visible(timeout=60_000)
    settle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Grains", exact=True).click()
    expect(page.get_by_role("heading", name="Grains", exact=True)).to_be_visible(timeout=60_000)
    box = page.locator(".st-key-grains_quality")
    expect(box.get_by_text(re.compile(r"Quality: (check this|do not trust)\."))).to_be_visible(
        timeout=180_000
    )
    settle(page, 120_000)
    no_traceback(page)
    expect(
        box.get_by_text(re.compile("unlike the images the model was trained on"))
    ).to_be_visible()
    expect(box.get_by_text(re.compile(r"^What to do:"))).to_be_visible()
    box.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "grains_quality_ti64.png"), full_page=False)
    box.get_by_text("The numbers behind the verdict").click()
    expect(box.get_by_test_id("stDataFrame")).to_be_visible(timeout=30_000)
    assert not page.errors
