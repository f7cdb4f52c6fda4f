"""Real browser: train a U-Net from strokes, stop it, continue it, see the overlay and look inside."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, open_annotate, paint_nuclei_strokes, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(500)]


def _progress_text(page) -> str:
    return page.get_by_text(re.compile(r"^Training the U-Net: step")).first.inner_text()


def _saved_unets(workspace_dir) -> list:
    from microseg.store import Workspace

    ws = Workspace.open(workspace_dir)
    return [m for rec in ws.images() for m in ws.models(rec.id) if m.kind == "unet"]


def test_train_stop_continue_unet_and_inspect(page, server_workspace, tmp_path):
    paint_nuclei_strokes(page, open_annotate(page))

    page.get_by_test_id("stButtonGroup").get_by_text("Deep learning", exact=True).click()
    settle(page)
    page.get_by_role("button", name="Train U-Net").click()
    expect(page.get_by_text(re.compile(r"^Training the U-Net: step"))).to_be_visible(timeout=60_000)
    first = _progress_text(page)
    page.wait_for_function(
        """(t) => [...document.querySelectorAll('p, div')].some(
               e => /^Training the U-Net: step/.test(e.innerText) && e.innerText !== t)""",
        arg=first,
        timeout=60_000,
    )
    page.screenshot(path=str(SHOTS / "deep_training.png"), full_page=True)
    page.get_by_role("button", name=re.compile(r"^Stop")).click()
    expect(page.get_by_role("button", name="Continue training")).to_be_enabled(timeout=90_000)
    settle(page)
    no_traceback(page)
    # the stopped network is kept in the workspace with the image it was trained on
    (first_saved,) = _saved_unets(server_workspace)
    assert first_saved.task == "nuclei" and first_saved.name.startswith("U-Net trained on")

    page.get_by_role("button", name="Continue training").click()
    expect(page.get_by_text(re.compile(r"^Training the U-Net: step"))).to_be_visible(timeout=60_000)
    page.wait_for_timeout(4000)
    page.get_by_role("button", name=re.compile(r"^Stop")).click()
    expect(page.get_by_role("button", name="Continue training")).to_be_enabled(timeout=90_000)
    settle(page)
    no_traceback(page)
    expect(page.get_by_text("Most probable class per pixel")).to_be_visible(timeout=60_000)
    page.screenshot(path=str(SHOTS / "deep_trained.png"), full_page=True)
    # the continued network is kept beside the first, and loads
    saved = [m for m in _saved_unets(server_workspace) if m.id != first_saved.id]
    assert len(saved) == 1 and saved[0].sha256 != first_saved.sha256
    from microseg.segmenter import load_segmenter

    again = load_segmenter(saved[0].path)
    assert "nucleus" in again.classes
    assert again.predict_proba(np.zeros((32, 32), np.float32)).shape[0] == len(again.classes)

    # the trained U-Net as a bioimage.io package that the official tools accept and run
    button = page.get_by_role("button", name="bioimage.io package (ZIP)")
    button.scroll_into_view_if_needed()
    with page.expect_download(timeout=120_000) as info:
        button.click()
    package = tmp_path / "unet_bioimageio.zip"
    info.value.save_as(package)
    from bioimageio.core import test_model

    summary = test_model(package)
    assert summary.status == "passed", summary.format()
    settle(page)

    expect(page.get_by_text("U-Net", exact=True)).to_be_visible()
    page.get_by_role("button", name=re.compile(r"^Segment all \d+ frames")).click()
    expect(page.locator(".st-key-stack_t")).to_be_visible(timeout=240_000)
    settle(page)
    no_traceback(page)
    page.screenshot(path=str(SHOTS / "deep_all_frames.png"), full_page=True)

    page.get_by_test_id("stSidebarNav").get_by_text("Inside the network").click()
    expect(page.get_by_text(re.compile(r"enc0\.conv1"))).to_be_visible(timeout=60_000)
    settle(page)
    no_traceback(page)
    page.screenshot(path=str(SHOTS / "deep_inside.png"), full_page=True)
    assert not page.errors
