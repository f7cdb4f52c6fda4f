"""Real browser: open a sample, then the Inside-the-network page from the sidebar."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, open_sample, settle
from tests.e2e.conftest import SHOTS
from webui.models import builtin_available

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_inside_the_network_page(page):
    open_sample(page, "synthetic-nuclei-series")

    page.locator("[data-testid='stSidebarNav'] a", has_text="Inside the network").click()
    expect(page.get_by_role("heading", name="Inside the network")).to_be_visible(timeout=60_000)
    settle(page)
    no_traceback(page)
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    # the engineered filter bank is shown in every case
    expect(page.get_by_text("Laplacian of Gaussian 1.6", exact=True)).to_be_visible()
    if builtin_available("nuclei") or builtin_available("grains"):
        expect(page.get_by_text(re.compile(r"^enc0\.conv1: \d+ kernels of 3×3"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"^enc0: \d+ channels × \d+×\d+ px"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"^dec0 · \d+×\d+×\d+ · ch \d+"))).to_be_visible()
        kernels = page.locator("[data-testid='stImage'] img").nth(1)
        assert kernels.evaluate("i => i.naturalWidth") > 50
    else:
        expect(
            page.get_by_text(re.compile("train a U-Net on the Annotate page first"))
        ).to_be_visible()
        expect(page.get_by_role("link", name=re.compile("Annotate page"))).to_be_visible()
    page.screenshot(path=str(SHOTS / "inside_the_network.png"), full_page=True)
    assert not page.errors
