"""Real browser: the server is killed (SIGKILL) while a U-Net trains, moments after the
strokes were saved; after a restart the database is intact, the strokes are there, and
nothing unreferenced is left once swept. (A kill in the middle of a stroke save is
tests/test_store_crash.py.)"""

from __future__ import annotations

import re
import signal
import sqlite3

import numpy as np
import pytest
from playwright.sync_api import expect

from microseg.store import DB_NAME, Workspace
from tests.e2e.browser import no_traceback, open_annotate, paint_nuclei_strokes, settle
from tests.e2e.conftest import ROOT, start_streamlit, stop_streamlit

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def _page(browser, url):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.base_url = url
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


def test_kill_9_during_training_then_restart(browser, tmp_path):
    root = tmp_path / "workspace"
    proc, url = start_streamlit(root, ROOT / ".pytest_streamlit_crash.log")
    try:
        page = _page(browser, url)
        paint_nuclei_strokes(page, open_annotate(page))
        ws = Workspace.open(root)
        (record,) = ws.images()
        saved = ws.load_strokes(record.id).frames[0].copy()
        assert (saved > 0).sum() > 100
        page.get_by_test_id("stButtonGroup").get_by_text("Deep learning", exact=True).click()
        settle(page)
        page.get_by_role("button", name="Train U-Net").click()
        expect(page.get_by_text(re.compile(r"^Training the U-Net: step"))).to_be_visible(
            timeout=60_000
        )
        page.wait_for_timeout(1500)
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup of any kind
        proc.wait(timeout=30)
        proc.log.close()
    page.context.close()

    con = sqlite3.connect(root / DB_NAME)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    proc, url = start_streamlit(root, ROOT / ".pytest_streamlit_crash.log")
    try:
        page = _page(browser, url)
        page.goto(url, wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Recent work")).to_be_visible(timeout=60_000)
        settle(page)
        page.locator(".st-key-recent_work").get_by_role("button", name="Open", exact=True).click()
        expect(page.get_by_text(re.compile(r"^Opened from recent work"))).to_be_visible(
            timeout=60_000
        )
        settle(page)
        no_traceback(page)
        ws = Workspace.open(root)
        (again,) = ws.images()
        assert np.array_equal(ws.load_strokes(again.id).frames[0], saved)
        ws.sweep_leftovers(older_than_s=0)
        referenced = {m.path for m in ws.models()} | {
            root / v for v in ws.load_strokes(again.id).versions.values()
        } | {r.path for r in ws.images()}  # fmt: skip
        on_disk = {p for sub in ("images", "strokes", "models") for p in (root / sub).rglob("*")
                   if p.is_file()}  # fmt: skip
        assert on_disk == referenced
        for m in ws.models():  # a model saved before the kill is whole
            from microseg.modelfile import read_metadata

            assert read_metadata(m.path)["kind"] in ("rf", "unet")
        assert not page.errors
    finally:
        stop_streamlit(proc)
