"""Smoke runs of the grain benchmarks at tiny sizes, and their measures (the figures come
from full runs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):  # noqa: ANN202
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def acc():
    return _load("bench_grains_accuracy")


@pytest.fixture(scope="module")
def mvd(acc):
    return _load("bench_ml_vs_dl")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> str:
    from microseg.deep import UNetSegmenter

    model = UNetSegmenter.new(
        "grains", ["grain interior", "grain boundary"], in_channels=3, depth=2, base=4
    )
    return str(model.save(tmp_path_factory.mktemp("w") / "tiny.safetensors"))


def _quadrants(n: int = 40) -> np.ndarray:
    lab = np.zeros((n, n), np.int32)
    h = n // 2
    lab[: h - 1, : h - 1], lab[: h - 1, h:] = 1, 2
    lab[h:, : h - 1], lab[h:, h:] = 3, 4
    return lab


def test_merge_split_counts(mvd):
    truth = _quadrants()
    assert mvd.merge_split(truth, truth) == {"merged": 0, "split": 0, "n_truth": 4}
    merged = truth.copy()
    merged[merged == 3] = 1  # left half one grain
    assert mvd.merge_split(truth, merged)["merged"] == 2
    assert mvd.merge_split(truth, merged)["split"] == 0
    split = truth.copy()
    split[25:, 20:30] = 5  # grain 4 cut in two halves
    split[25:, 30] = 0
    res = mvd.merge_split(truth, split)
    assert res["split"] == 1 and res["merged"] == 0


def test_delta_g_does_not_depend_on_pixel_size(acc):
    a = _quadrants(60)
    b = np.kron(np.arange(1, 10).reshape(3, 3), np.ones((20, 20), np.int32))
    (pa, ia), (pb, ib) = acc.delta_g_is_scale_free(b, a)
    assert pa == pytest.approx(pb, abs=1e-9) and ia == pytest.approx(ib, abs=1e-9)
    assert pa > 0.5 and ia > 0.3  # smaller grains: larger G


def test_pooled_of_equal_fields_is_the_field(acc):
    lab = np.kron(np.arange(1, 17).reshape(4, 4), np.ones((16, 16), np.int32))
    row = acc.measure(lab, None)
    pool = acc.pooled([row, row], acc.NOMINAL_PX_UM)
    assert pool["mean_intercept"] == pytest.approx(row["mean_intercept"])
    assert pool["g_int"] == pytest.approx(row["g_int"])
    assert pool["g_plan"] == pytest.approx(row["g_plan"])
    assert pool["n_grains"] == 2 * row["n_grains"]
    assert acc.curve_marks(60.0) == [0.0, 10.0, 20.0, 40.0, 60.0]
    assert acc.curve_marks(2.0, [0.0, 1.0, 5.0]) == [0.0, 1.0, 2.0]


def test_strokes_from_truth_are_sparse_and_on_their_class(mvd):
    from microseg.synth import synth_grains

    s = synth_grains((192, 192), n_grains=25, seed=3)
    st = mvd.strokes_from_truth(s.boundaries, s.labels, seed=3)
    cover = np.count_nonzero(st) / st.size
    assert 0.005 < cover < 0.04
    assert (st == 2).any() and (st == 1).any()
    assert s.boundaries[st == 2].all() and not s.boundaries[st == 1].any()


def test_ml_vs_dl_synthetic_smoke(mvd, tiny_weights, capsys, tmp_path):
    out = tmp_path / "r.txt"
    argv = ["--sections", "synth", "--seeds", "1", "--size", "96", "--n-grains", "12"]
    argv += ["--seconds", "1.5", "--weights", tiny_weights, "--out", str(out)]
    assert mvd.main(argv) == 0
    text = capsys.readouterr().out
    assert "grain-size distribution" in text and "random forest:" in text
    assert "U-Net fine-tuned:" in text and "merged" in text
    assert out.read_text().strip() == text.strip()


@pytest.mark.data
def test_accuracy_then_ml_vs_dl_on_real_crops(
    acc, mvd, tiny_weights, shared_data, capsys, tmp_path, monkeypatch
):
    monkeypatch.setattr(acc, "DATA", shared_data)
    cache = tmp_path / "cache"
    argv = ["--tiles", "18-0-0", "--crop", "192", "--seconds", "1.5", "--weights", tiny_weights]
    assert acc.main([*argv, "--cache", str(cache)]) == 0
    text = capsys.readouterr().out
    for s in ("nist_steel", "18-0-0", "fine-tuned", "U-Net from scratch", "ΔG check"):
        assert s in text
    assert "µm" in text and "px" in text
    argv = ["--sections", "tbm", "--tiles", "18-0-0", "--crop", "192", "--seconds", "1.5"]
    assert mvd.main([*argv, "--weights", tiny_weights, "--cache", str(cache)]) == 0
    text = capsys.readouterr().out
    assert "18-0-0" in text and "unseen" in text
    assert "reused from" in text  # the same models, not trained twice
