"""Real-browser fixtures: a Streamlit server on a free loopback port and Debian chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "shots"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server_workspace(tmp_path_factory) -> Path:
    """The server's workspace folder (never the user's home folder)."""
    return tmp_path_factory.mktemp("server-workspace")


def start_streamlit(workspace: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` on a free loopback port with ``workspace``; (process, url)."""
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", MICROSEG_WORKSPACE=str(workspace))
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
         "--server.headless", "true", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    proc.log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {log_path.read_text()}") from None
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("streamlit did not start within 60 s")


def stop_streamlit(proc: subprocess.Popen) -> None:
    """Stop a server from :func:`start_streamlit` (terminate, then kill)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    proc.log.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def server_url(server_workspace):
    """Start ``streamlit run app.py`` on a free loopback port; stop it afterwards."""
    proc, url = start_streamlit(server_workspace, ROOT / ".pytest_streamlit.log")
    yield url
    stop_streamlit(proc)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium through Playwright (skips when absent, unless CI requires it)."""
    exe = _chromium()
    if exe is None:
        if os.environ.get("MICROSEG_REQUIRE_BROWSER"):
            pytest.fail("chromium is required for browser tests but is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server_url, server_workspace):
    """A fresh page (new context = new Streamlit session) that records page errors.

    The server's workspace is emptied first, so no test sees another test's strokes.
    """
    from microseg.store import Workspace

    ws = Workspace.open(server_workspace)
    for record in ws.images():
        ws.delete_image(record.id)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.base_url = server_url
    SHOTS.mkdir(exist_ok=True)
    yield pg
    context.close()
