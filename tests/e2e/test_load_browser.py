"""Load, in short: two real browser sessions on one fresh server at once, one training a
U-Net on a grain image while the other segments nuclei, for 30 s; both hold, no errors,
the server's memory under the bound. The full run (8 sessions, 120 s, several on one
image) is ``benchmarks/bench_load.py``; two tabs on one image is test_two_tabs_browser."""

from __future__ import annotations

import sys

import pytest

from tests.e2e.conftest import ROOT, _chromium, start_streamlit, stop_streamlit

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_load  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def test_two_sessions_at_once_hold_without_errors(browser, tmp_path):
    proc, url = start_streamlit(tmp_path / "workspace", ROOT / ".pytest_streamlit_load.log")
    try:
        fig = bench_load.run_load(url, proc.pid, sessions=2, seconds=30, chromium=_chromium())
    finally:
        stop_streamlit(proc)
    print("\n".join(bench_load.report(fig, 30)))
    assert fig["errors"] == []
    assert fig["held"] == 2 and fig["actions"] >= 2 * 6
    assert 0 < fig["idle_mb"] < fig["peak_mb"] < bench_load.MEMORY_BOUND_MB
