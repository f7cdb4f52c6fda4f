"""Real browser: open the home page, load a gallery sample, upload a 16-bit stack."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_gallery_sample_and_upload(page, tmp_path):
    page.goto(page.base_url, wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="microseg", exact=True)).to_be_visible(timeout=60_000)
    settle(page)
    page.get_by_role("button", name="Open").first.click()
    expect(page.get_by_text(re.compile(r"^Opened sample:"))).to_be_visible(timeout=60_000)
    settle(page)
    no_traceback(page)
    img = page.locator("[data-testid='stImage'] img").first
    expect(img).to_be_visible()
    assert img.evaluate("i => i.naturalWidth") > 100
    page.screenshot(path=str(SHOTS / "home_sample.png"), full_page=True)

    stack = np.zeros((4, 96, 128), np.uint16)
    yy, xx = np.mgrid[:96, :128]
    for t in range(4):
        stack[t] = (1000 + 20000 * (((yy - 40 - 5 * t) ** 2 + (xx - 60) ** 2) < 400)).astype(
            np.uint16
        )
    path = tmp_path / "series16.tif"
    tifffile.imwrite(
        path, stack, imagej=True, metadata={"axes": "TYX", "unit": "um"}, resolution=(2.0, 2.0)
    )
    page.get_by_role("tab", name="Upload").click()
    page.locator(".st-key-upload [data-testid='stFileUploaderDropzoneInput']").set_input_files(
        str(path)
    )
    expect(page.get_by_text("Opened upload: series16.tif")).to_be_visible(timeout=60_000)
    settle(page)
    no_traceback(page)
    expect(page.get_by_text(re.compile(r"4 frame\(s\)"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"pixel size 0\.5 µm/px"))).to_be_visible()
    page.screenshot(path=str(SHOTS / "home_upload.png"), full_page=True)

    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 10)
    page.locator(".st-key-upload [data-testid='stFileUploaderDropzoneInput']").set_input_files(
        str(bad)
    )
    expect(page.locator("[data-testid='stAlertContentError']")).to_be_visible(timeout=60_000)
    settle(page)
    no_traceback(page)
    assert not page.errors
