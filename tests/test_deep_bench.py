"""The U-Net benchmark script runs (tiny sizes; the figures come from full runs by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_unet", ROOT / "benchmarks" / "bench_unet.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_unet_smoke(capsys, tmp_path):
    out = tmp_path / "figures.txt"
    assert _bench().main(["--smoke", "--sections", "speed,memory", "--out", str(out)]) == 0
    text = out.read_text()
    assert "naive fp32 U-Net" in text and "faster" in text and "peak RSS" in text
    assert "Inference 128x128" in capsys.readouterr().out


def test_corrective_strokes_are_dabs_of_the_true_class_where_the_model_is_wrong():
    import numpy as np

    from microseg.deep import UNetSegmenter
    from microseg.deep.train import targets_from_masks

    bench = _bench()
    init = UNetSegmenter.new("grains", ["grain interior", "grain boundary"], 1, seed=0)
    rng = np.random.default_rng(0)
    image = (rng.random((64, 64)) * 255).astype(np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[::16] = mask[:, ::16] = True
    strokes = bench.corrective_strokes(init, image, mask, budget=40, seed=1)
    truth = targets_from_masks(mask, "grains")
    painted = strokes > 0
    assert 40 <= painted.sum() <= 40 + 8
    assert np.array_equal(strokes[painted], truth[painted])
    pred = np.argmax(init.predict_proba(image), 0) + 1
    assert (pred[painted] != truth[painted]).mean() > 0.5  # mostly where the model is wrong
