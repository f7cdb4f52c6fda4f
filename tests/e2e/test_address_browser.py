"""Real browser: a refresh, or the address given to a colleague, opens the same image
on the same page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, open_sample, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _on_grains_page_with_the_sample(page) -> None:
    expect(page.get_by_role("heading", name="Grains", exact=False).first).to_be_visible(
        timeout=60_000
    )
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text(re.compile(r"Image:.*[Gg]rain"))).to_be_visible(timeout=60_000)
    page.locator(".st-key-grains_map .js-plotly-plot image").wait_for(
        state="attached", timeout=120_000
    )  # the grain map of the reopened image is measured and drawn
    settle(page, 120_000)
    no_traceback(page)


def test_refresh_and_shared_address_reopen_the_image_on_the_same_page(page, browser):
    open_sample(page, "synthetic-grains")
    page.get_by_test_id("stSidebarNav").get_by_text("Grains").click()
    page.wait_for_url(re.compile(r"/Grains\?image=\d+$"), timeout=60_000)
    _on_grains_page_with_the_sample(page)
    address = page.url

    page.reload(wait_until="domcontentloaded")
    _on_grains_page_with_the_sample(page)
    assert page.url == address
    page.screenshot(path=str(SHOTS / "address_after_refresh.png"), full_page=True)

    colleague = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    colleague.goto(address, wait_until="domcontentloaded")
    _on_grains_page_with_the_sample(colleague)
    colleague.context.close()

    stale = re.sub(r"image=\d+", "image=987654", address)
    page.goto(stale, wait_until="domcontentloaded")
    expect(page.get_by_text(re.compile("not in this project's workspace"))).to_be_visible(
        timeout=60_000
    )
    settle(page)
    no_traceback(page)
    assert not page.errors


def test_paint_refresh_and_find_the_same_strokes_on_the_same_page(page):
    from tests.e2e.browser import open_annotate, paint_nuclei_strokes

    paint_nuclei_strokes(page, open_annotate(page))
    painted = page.get_by_text(re.compile(r"^Painted pixels:"))
    expect(painted).to_be_visible(timeout=60_000)
    before = painted.inner_text()
    assert re.search(r"background \d+, nucleus \d+", before)
    page.wait_for_url(re.compile(r"/Annotate\?image=\d+$"), timeout=60_000)
    page.reload(wait_until="domcontentloaded")
    expect(page.get_by_text(re.compile(r"^Painted pixels:"))).to_have_text(before, timeout=60_000)
    settle(page)
    no_traceback(page)
    assert "/Annotate?image=" in page.url and not page.errors
