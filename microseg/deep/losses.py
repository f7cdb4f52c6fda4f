"""Losses that ignore unlabelled pixels (target 0), with class-balanced weights."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted cross-entropy over labelled pixels only.

    Parameters
    ----------
    logits : Tensor
        ``(B, K, H, W)`` class logits.
    target : Tensor
        ``(B, H, W)`` integers: 0 = unlabelled (ignored), k = class k (1..K).
    weight : Tensor or None
        ``(K,)`` per-class weights.

    Returns
    -------
    Tensor
        Scalar loss; 0 (with a gradient path) when no pixel is labelled.
    """
    t = target.long() - 1
    if not bool((t >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, t, weight=weight, ignore_index=-1)


def balanced_class_weights(
    targets: list[np.ndarray], n_classes: int, power: float = 0.5, max_ratio: float = 10.0
) -> np.ndarray:
    """Inverse-frequency class weights (to ``power``), normalised to mean 1.

    Classes without labelled pixels get weight 1; the largest/smallest ratio is
    capped at ``max_ratio``.
    """
    counts = np.zeros(n_classes, np.float64)
    for t in targets:
        c = np.bincount(np.asarray(t).ravel().astype(np.int64), minlength=n_classes + 1)
        counts += c[1 : n_classes + 1]
    present = counts > 0
    w = np.ones(n_classes, np.float64)
    if present.any():
        freq = counts[present] / counts[present].sum()
        w[present] = freq ** (-power)
        w[present] = np.minimum(w[present], w[present].min() * max_ratio)
        w /= w[present].mean()
    return w.astype(np.float32)
