"""Small nuclei time series and a random-forest nuclei model for command and page tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from microseg.synth import NucleiSeries, synth_nuclei_series

PIXEL_SIZE = 0.65


def small_series(
    n_frames: int = 6, shape: tuple[int, int] = (96, 96), seed: int = 3
) -> NucleiSeries:
    """A short synthetic time-lapse (nuclei touch, move, divide; brightness drifts)."""
    return synth_nuclei_series(n_frames=n_frames, shape=shape, seed=seed, n_nuclei=8)


def write_series(folder: Path, series: NucleiSeries, name: str = "series.tif") -> Path:
    """Write the frames as an ImageJ TYX stack with its pixel size."""
    path = folder / name
    tifffile.imwrite(
        path,
        series.frames,
        imagej=True,
        metadata={"axes": "TYX", "unit": "um"},
        resolution=(1 / PIXEL_SIZE, 1 / PIXEL_SIZE),
    )
    return path


def train_rf_model(folder: Path, series: NucleiSeries, frames: tuple[int, ...] = (0, 3)) -> Path:
    """Train a random forest with ``microseg train`` on ground-truth masks of a few frames."""
    from microseg.cli import main

    images, masks = [], []
    for t in frames:
        images.append(folder / f"train_{t}.tif")
        masks.append(folder / f"train_{t}_mask.tif")
        tifffile.imwrite(images[-1], series.frames[t])
        tifffile.imwrite(masks[-1], series.labels[t])
    model = folder / "nuclei_rf.safetensors"
    rc = main(
        [
            "train",
            "--method",
            "rf",
            "--task",
            "nuclei",
            "--out",
            str(model),
            "--images",
            *map(str, images),
            "--masks",
            *map(str, masks),
        ]
    )
    assert rc == 0 and model.is_file()
    return model


def pooled_ap(pred: np.ndarray, truth: np.ndarray) -> float:
    """AP at IoU 0.5 (TP / (TP + FP + FN)) pooled over the frames of two label stacks."""
    from microseg.metrics import combine_matches, match_instances

    return combine_matches([match_instances(g, p) for g, p in zip(truth, pred, strict=True)]).ap
