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


def _soft_erode(p: torch.Tensor) -> torch.Tensor:
    a = -F.max_pool2d(-p, (3, 1), stride=1, padding=(1, 0))
    b = -F.max_pool2d(-p, (1, 3), stride=1, padding=(0, 1))
    return torch.minimum(a, b)


def _soft_dilate(p: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(p, 3, stride=1, padding=1)


def soft_skeleton(p: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Differentiable skeleton of ``(B, 1, H, W)`` maps in [0, 1] (iterated soft
    morphological opening; Shit et al., clDice, CVPR 2021)."""
    skel = F.relu(p - _soft_dilate(_soft_erode(p)))
    for _ in range(iterations):
        p = _soft_erode(p)
        delta = F.relu(p - _soft_dilate(_soft_erode(p)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def cl_dice_loss(
    prob: torch.Tensor,
    truth: torch.Tensor,
    valid: torch.Tensor | None = None,
    iterations: int = 5,
    smooth: float = 1.0,
) -> torch.Tensor:
    """1 - clDice of a thin structure: the predicted skeleton's share inside the true
    structure and the true skeleton's share inside the prediction, combined as F1.

    Parameters
    ----------
    prob, truth : Tensor
        ``(B, H, W)`` probability of the structure and its true mask (0/1).
    valid : Tensor, optional
        ``(B, H, W)`` 1 where the truth is known; other pixels do not count.
    iterations : int
        Skeleton iterations; at least half the structure's width in pixels.

    Returns
    -------
    Tensor
        Scalar in [0, 1]; 0 when the skeletons lie inside each other's structure.
    """
    prob, truth = prob[:, None], truth[:, None].to(prob.dtype)
    if valid is not None:
        v = valid[:, None].to(prob.dtype)
        prob, truth = prob * v, truth * v
    sp, st = soft_skeleton(prob, iterations), soft_skeleton(truth, iterations)
    precision = ((sp * truth).sum() + smooth) / (sp.sum() + smooth)
    sensitivity = ((st * prob).sum() + smooth) / (st.sum() + smooth)
    return 1.0 - 2.0 * precision * sensitivity / (precision + sensitivity)
