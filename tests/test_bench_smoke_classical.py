"""Smoke runs of benchmarks/bench_classical.py at tiny sizes (the figures come from hand runs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_classical", ROOT / "benchmarks" / "bench_classical.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_run_prints_table(bench, capsys, tmp_path):
    out = tmp_path / "report.txt"
    rc = bench.main(["--synthetic", "--size", "64", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    for row in ("features [s]", "fit [s]", "predict [s]", "total [s]", "peak memory [MiB]"):
        assert row in text
    assert "foreground F1" in text and "live update" in text
    assert out.read_text().strip() == text.strip()


def test_run_returns_both_pipelines(bench):
    img, strokes, truth = bench.synthetic_case(64, seed=1)
    res = bench.run(img, strokes, truth, repeats=1, workers=1, memory=False)
    for name in ("microseg", "reference"):
        row = res[name]
        assert row["total"] == pytest.approx(row["features"] + row["fit"] + row["predict"])
        assert 0.5 < row["f1"] <= 1.0
    assert res["live"]["full"] > 0 and res["live"]["preview"] > 0


@pytest.mark.data
def test_real_frame_crop(bench, shared_data, capsys, monkeypatch):
    monkeypatch.setenv("MICROSEG_DATA", str(shared_data))
    rc = bench.main(["--frames", "021", "--size", "128", "--repeats", "1", "--no-memory"])
    assert rc == 0
    assert "GOWT1 01 frame 021: 128x128" in capsys.readouterr().out
