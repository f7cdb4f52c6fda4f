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
            "--corrections", "10", "--gowt1-frames", "021", "--out", str(out),
            "--set", 'teacher="none"']  # fmt: skip
    assert adapt.main(argv) == 0
    captured = capsys.readouterr()
    text = captured.out
    for s in ("ti64_sem", "nist_steel", "18-0-0", "+corr 10 %", "ft 3 s", "t021", "AP@0.5"):
        assert s in text, s
    assert "but {'teacher': 'none'}" in text and "teacher none" in captured.err
    assert out.read_text().strip() == text.strip()


def test_acceptance_rule_replays_a_recorded_run():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_acceptance as ba

    # (step, held-out score, boundary F1): the score rises by 0.04, then 0.08
    rec = [(0, 0.90, 0.60), (10, 0.94, 0.70), (20, 0.98, 0.65)]
    assert ba.ended_at(rec, 0.1) == rec[0]  # the starting model is kept
    assert ba.ended_at(rec, 0.05) == rec[2]  # replaced once the gain passes 0.05
    assert ba.ended_at(rec, 0.02) == rec[2]  # then the best score wins, right or not
    assert ba.ended_at(rec, 0.0) == rec[2]
    assert ba.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(ba.spearman([1, 1, 1], [1, 2, 3]))


@pytest.mark.data
def test_bench_acceptance_runs_on_a_real_crop(shared_data, capsys, tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_acceptance as ba

    monkeypatch.setattr(ba.acc, "DATA", shared_data)
    out = tmp_path / "acc.txt"
    argv = ["--crop", "256", "--seconds", "3", "--images", "18-0-0", "--out", str(out)]
    assert ba.main(argv) == 0
    text = capsys.readouterr().out
    assert "F1@m0.1" in text and "kept F1/map" in text
    row = [line for line in text.splitlines() if line.startswith("18-0-0")]
    assert row and "no acceptance test" not in row[0]
    kept_f1, kept_map = (float(v) for v in row[0].split()[-1].split("/"))
    assert 0 <= kept_f1 <= 1 and 0 <= kept_map <= 1
    assert out.read_text().strip() == text.strip()
