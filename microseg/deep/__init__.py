"""Deep learning: a small U-Net trained on the CPU from strokes or masks.

Public API: :class:`UNetSegmenter`, :func:`train_unet`, :class:`TrainConfig`,
:class:`TrainingJob`, :func:`predict_stack`, :func:`export_onnx` and the
inspection helpers in :mod:`microseg.deep.inspect`.
"""

from __future__ import annotations

from microseg.deep.onnx_export import export_onnx
from microseg.deep.segmenter import UNetSegmenter, predict_stack
from microseg.deep.tiling import Stopped, predict_proba_tiled
from microseg.deep.train import (
    TrainConfig,
    Trainer,
    TrainingJob,
    TrainingProgress,
    targets_from_masks,
    train_unet,
)
from microseg.deep.unet import UNet, UNetConfig

__all__ = [
    "Stopped",
    "TrainConfig",
    "Trainer",
    "TrainingJob",
    "TrainingProgress",
    "UNet",
    "UNetConfig",
    "UNetSegmenter",
    "export_onnx",
    "predict_proba_tiled",
    "predict_stack",
    "targets_from_masks",
    "train_unet",
]
