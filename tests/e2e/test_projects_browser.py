"""Real browser: a project exported to one file and imported as a new project gives the
same grain figures, with the pixel size set in the first."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import no_traceback, open_sample, settle
from tests.e2e.conftest import SHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _grain_figures(page) -> dict[str, str]:
    """The metric tiles of the Grains page (label -> value) once the map is drawn."""
    expect(page.get_by_role("heading", name="Grains", exact=True)).to_be_visible(timeout=60_000)
    page.locator(".st-key-grains_map .js-plotly-plot image").wait_for(
        state="attached", timeout=240_000
    )
    settle(page, 240_000)
    no_traceback(page)
    metrics = page.get_by_test_id("stMetric")
    out = {}
    for i in range(metrics.count()):
        m = metrics.nth(i)
        out[m.get_by_test_id("stMetricLabel").inner_text()] = m.get_by_test_id(
            "stMetricValue"
        ).inner_text()
    assert "Grains" in out and "G planimetric (E112)" in out
    return out


def _nav(page, name: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(name, exact=True).click()


def test_export_a_project_and_import_it_as_a_new_one(page, tmp_path):
    open_sample(page, "synthetic-grains")
    _nav(page, "Grains")
    _grain_figures(page)  # the first map, before the pixel size changes it
    size = page.get_by_label("Pixel size (µm/px), 0 = use the file's")
    expect(size).to_be_visible(timeout=60_000)
    size.fill("0.2500")
    size.press("Enter")
    settle(page, 120_000)
    before = _grain_figures(page)

    _nav(page, "Home")
    expander = page.get_by_test_id("stExpander").filter(has_text="Project: Default project")
    expander.get_by_text("Project: Default project").click()
    page.get_by_role("button", name="Make a project file").click()
    download = page.get_by_role("button", name=re.compile(r"^Download Default_project\.zip"))
    expect(download).to_be_visible(timeout=60_000)
    settle(page)
    page.screenshot(path=str(SHOTS / "projects_panel.png"), full_page=True)
    with page.expect_download(timeout=60_000) as info:
        download.click()
    archive = tmp_path / "project.zip"
    info.value.save_as(archive)

    page.locator(
        ".st-key-project_import [data-testid='stFileUploaderDropzoneInput']"
    ).set_input_files(str(archive))
    page.get_by_role("button", name="Import as a new project").click()
    expect(page.get_by_text(re.compile(r"^Imported the project Default project \(2\): 1 image"))
           ).to_be_visible(timeout=60_000)  # fmt: skip
    settle(page)
    no_traceback(page)
    assert re.search(r"project=default-project-2", page.url)
    page.screenshot(path=str(SHOTS / "projects_imported.png"), full_page=True)
    page.locator(".st-key-recent_work").get_by_role("button", name="Open", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Opened from recent work"))).to_be_visible(timeout=60_000)
    settle(page)
    _nav(page, "Grains")
    after = _grain_figures(page)
    assert after == before
    expect(
        page.get_by_test_id("stSidebar").get_by_text("Project: Default project (2)")
    ).to_be_visible()
    assert not page.errors
