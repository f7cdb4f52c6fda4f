"""Smoke runs of the nuclei benchmarks at tiny sizes (the figures come from full runs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def acc():
    return _load("bench_nuclei_accuracy")


@pytest.fixture(scope="module")
def series():
    return _load("bench_nuclei_series")


def test_split_merge_counts(acc):
    gt = np.zeros((20, 40), np.uint16)
    gt[2:10, 2:10] = 1  # cut in two by the prediction
    gt[2:10, 20:26] = 2  # merged with 3 into one prediction
    gt[2:10, 26:32] = 3
    pred = np.zeros_like(gt)
    pred[2:10, 2:6] = 1
    pred[2:10, 6:10] = 2
    pred[2:10, 20:32] = 3
    assert acc.split_merge(gt, pred) == (1, 1)
    assert acc.split_merge(gt, gt) == (0, 0)


def test_count_errors(series):
    e = series.count_errors(np.array([10, 9, 12, 10]), np.array([10.0, 10.0, 10.0, 10.0]))
    assert e["max"] == pytest.approx(0.2)
    assert e["mean"] == pytest.approx(0.075)
    assert e["over5"] == 2 and e["worst_frame"] == 2


def test_naive_measure_matches_object_table(series):
    from microseg.measure import object_table

    labels = np.zeros((32, 32), np.int32)
    labels[3:9, 4:15] = 1
    labels[15:30, 10:20] = 2
    frame = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    rows = series.naive_measure(labels, frame, 0)
    ref = object_table(labels, frame)
    assert [r["label"] for r in rows] == ref["label"].tolist()
    for r, (_, o) in zip(rows, ref.iterrows(), strict=True):
        assert r["area_px"] == o["area_px"]
        assert r["y"] == pytest.approx(o["y"]) and r["x"] == pytest.approx(o["x"])
        assert r["mean_intensity"] == pytest.approx(o["mean_intensity"])
        assert r["solidity"] == pytest.approx(o["solidity"])


def test_series_smoke_in_process(series, capsys, tmp_path):
    out = tmp_path / "series.txt"
    argv = ["--sections", "synth", "--frames", "3", "--size", "96", "--ap-step", "1"]
    rc = series.main([*argv, "--in-process", "--workers", "1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    for name in ("microseg", "naive"):
        row = next(ln.split() for ln in lines if ln.startswith(f"{name} "))
        fps, ap = float(row[1]), float(row[6])
        assert fps > 0 and 0.5 <= ap <= 1.0
    assert "count robustness" in text and "Otsu + DT watershed" in text
    assert out.read_text(encoding="utf-8").strip() == text.strip()


@pytest.mark.data
def test_accuracy_smoke(acc, shared_data, capsys):
    argv = ["--data", str(shared_data), "--dsb-limit", "2", "--gowt1-frames", "021"]
    rc = acc.main([*argv, "--sim-frames", "3", "--crop", "128", "--threads", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "DSB 2018 held-out split" in text and "0 of them in the training" in text
    assert "GOWT1" in text and "SIM+" in text
    lines = text.splitlines()
    plain = [ln for ln in lines if ln.startswith("microseg as is  ")]
    assert len(plain) == 3  # DSB, GOWT1, SIM+
    assert all(0.0 <= float(ln.split()[3]) <= 1.0 for ln in plain[:2])
    augmented = [ln for ln in lines if ln.startswith("microseg as is, augmented")]
    assert len(augmented) == 4  # DSB, GOWT1, SIM+ and SIM+ with the temporal fix
    temporal = [ln for ln in lines if ln.startswith("microseg as is + temporal")]
    assert len(temporal) == 1
    assert all(0.0 <= float(ln[36:].split()[0]) <= 1.0 for ln in plain[2:] + temporal)  # SEG
    gt_row = [ln for ln in text.splitlines() if ln.startswith("ground-truth masks")][0]
    assert float(gt_row.split()[2]) == pytest.approx(1.0)  # SEG of the GT itself


@pytest.mark.data
def test_cancer_smoke_writes_csv_and_plot(series, shared_data, capsys, tmp_path):
    csv, png = tmp_path / "c.csv", tmp_path / "c.png"
    argv = ["--sections", "cancer", "--data", str(shared_data), "--cancer-frames", "3"]
    rc = series.main([*argv, "--cancer-csv", str(csv), "--cancer-png", str(png)])
    assert rc == 0
    import pandas as pd

    table = pd.read_csv(csv)
    assert table["frame"].tolist() == [0, 1, 2]
    assert (table["count_microseg"] > 0).all()
    pytest.importorskip("PIL")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cancer_cell_migration" in capsys.readouterr().out


def test_pipeline_gives_each_worker_a_share_of_the_cores():
    torch = pytest.importorskip("torch")
    import os

    from microseg.image import MicroImage
    from microseg.nuclei import FrameMeasurer, run_nuclei

    seen: list[int] = []

    def segment(frame: np.ndarray) -> np.ndarray:
        seen.append(torch.get_num_threads())
        return (frame > 0).astype(np.uint16)

    frames = np.zeros((4, 16, 16), np.uint16)
    frames[:, 4:9, 4:9] = 10
    before = torch.get_num_threads()
    run = run_nuclei(MicroImage.from_array(frames, "TYX"), segment, FrameMeasurer(), workers=2)
    assert run.frames["count"].tolist() == [1, 1, 1, 1]
    assert set(seen) == {min(before, max(1, (os.cpu_count() or 1) // 2))}
    assert torch.get_num_threads() == before
