"""Smoke run of the adaptation benchmark at tiny sizes, and its simulated corrections."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def adapt():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "bench_adapt", ROOT / "benchmarks" / "bench_adapt.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_adapt"] = module
    spec.loader.exec_module(module)
    return module


def test_simulated_corrections_fix_the_worst_windows(adapt):
    gt = np.zeros((128, 128), bool)
    gt[:, 64] = True
    gt[40, :] = True
    pred = gt.copy()
    pred[40, :] = False  # the prediction misses the horizontal boundary
    pred[100, 10:30] = True  # and has a false one
    corr = adapt.simulated_corrections(gt, pred, 5 / 16, window=32)  # 5 of 16 windows
    covered = corr > 0
    assert covered.mean() == pytest.approx(5 / 16, abs=0.02)
    assert (corr[40, covered[40]] == 2).all() and covered[40].sum() >= 64  # the missed line
    assert (corr[100, 10:30] == 1).all()  # the false one is interior
    assert not corr[gt & ~covered].any()
    assert adapt.simulated_corrections(gt, gt, 0.1).sum() > 0  # still the asked share


@pytest.mark.data
def test_bench_adapt_runs_on_real_crops(adapt, shared_data, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(adapt, "DATA", shared_data)
    monkeypatch.setattr(adapt.acc, "DATA", shared_data)
    out = tmp_path / "adapt.txt"
    argv = ["--crop", "256", "--seconds", "3", "--corr-seconds", "2", "--tiles", "1",
            "--corrections", "10", "--gowt1-frames", "021", "--out", str(out)]  # fmt: skip
    assert adapt.main(argv) == 0
    text = capsys.readouterr().out
    for s in ("ti64_sem", "nist_steel", "18-0-0", "+corr 10 %", "ft 3 s", "t021", "AP@0.5"):
        assert s in text, s
    assert out.read_text().strip() == text.strip()
