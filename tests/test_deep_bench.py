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
