"""Is an image like the ones a U-Net was trained on? Its own feature statistics say.

Every encoder level of the network turns an image into feature maps; the mean and
spread of each channel over a crop are a signature of what the network sees there
(:func:`feature_signature`). Over crops of the training images these signatures have
a mean and a spread per dimension, recorded in the model file
(``metadata["feature_stats"]``, :func:`record_feature_stats`). A new image's
**unfamiliarity** (:func:`unfamiliarity`) is the root-mean-square z-score of its
crops' signatures against them, divided by the same figure's 95th percentile over
the training crops: about 1 or below on images like the training data, several
times that on images unlike it (another modality, inverted contrast, another scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

CROP = 192  # side of the crops a signature is taken over (a multiple of 16)
MAX_CROPS = 9


def _crops(x: np.ndarray, n: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Up to ``n`` crops of ``CROP`` px of a prepared ``(C, Y, X)`` image (a grid, or random)."""
    _, h, w = x.shape
    side_y, side_x = min(CROP, h - h % 16 or h), min(CROP, w - w % 16 or w)
    if rng is None:
        k = max(1, int(np.ceil(np.sqrt(n))))
        ys = np.linspace(0, h - side_y, k).round().astype(int)
        xs = np.linspace(0, w - side_x, k).round().astype(int)
        starts = [(y, x) for y in ys for x in xs][:n]
    else:
        starts = [
            (int(rng.integers(0, h - side_y + 1)), int(rng.integers(0, w - side_x + 1)))
            for _ in range(n)
        ]
    return [x[:, y : y + side_y, xx : xx + side_x] for y, xx in sorted(set(starts))]


@torch.no_grad()
def _signature(net: torch.nn.Module, crop: np.ndarray, device: torch.device) -> np.ndarray:
    c, h, w = crop.shape
    m = 2 ** (len(net.encoders) - 1)
    h2, w2 = max(m, h - h % m), max(m, w - w % m)
    t = torch.from_numpy(np.ascontiguousarray(crop[:, :h2, :w2], np.float32))[None].to(device)
    parts = []
    for i, enc in enumerate(net.encoders):
        if i > 0:
            t = net.pool(t)
        t = enc(t)
        parts += [t.mean(dim=(0, 2, 3)), t.std(dim=(0, 2, 3))]
    return torch.cat(parts).float().cpu().numpy()


def feature_signature(
    model,  # noqa: ANN001 - a UNetSegmenter
    image: np.ndarray,
    n_crops: int = MAX_CROPS,
    rng: np.random.Generator | None = None,
    zoom: float = 1.0,
) -> np.ndarray:
    """Signatures ``(n, D)`` of crops of ``image``: per encoder channel, mean and std.

    Parameters
    ----------
    model : UNetSegmenter
        The network; the image is prepared as for prediction.
    image : ndarray
        Any image the model accepts.
    n_crops : int
        Number of crops (a regular grid; random positions with ``rng``).
    rng : numpy.random.Generator, optional
        Random crop positions (used when recording training statistics).
    zoom : float
        Rescale the prepared image first, as prediction does when it rescales objects
        to the training size.
    """
    x = model.prepare(image)
    if zoom != 1.0:
        from microseg.deep.segmenter import _resize

        h, w = x.shape[-2:]
        x = _resize(np.asarray(x, np.float32), (max(8, round(h * zoom)), max(8, round(w * zoom))))
    net = model.inference_net()
    return np.stack([_signature(net, c, model.device) for c in _crops(x, n_crops, rng)])


def _rms_z(sig: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(((sig - mean) / std) ** 2, axis=-1))


def record_feature_stats(
    model,  # noqa: ANN001
    images: Sequence[np.ndarray],
    crops_per_image: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Signature statistics of ``images`` (the training images), stored in the model.

    Sets and returns ``model.metadata["feature_stats"]``: per-dimension ``mean`` and
    ``std`` of the crop signatures, and ``scale``, the 95th percentile of the training
    crops' own RMS z-scores (so that :func:`unfamiliarity` is about 1 on them).
    """
    rng = np.random.default_rng(seed)
    sigs = np.concatenate([feature_signature(model, im, crops_per_image, rng) for im in images])
    mean = sigs.mean(axis=0)
    floor = max(float(np.median(sigs.std(axis=0))) * 0.1, 1e-6)
    std = np.maximum(sigs.std(axis=0), floor)
    scale = float(np.percentile(_rms_z(sigs, mean, std), 95))
    stats = {
        "mean": [round(float(v), 6) for v in mean],
        "std": [round(float(v), 6) for v in std],
        "scale": round(max(scale, 1e-6), 6),
        "n_crops": int(len(sigs)),
        "n_images": len(images),
        "crop_px": CROP,
    }
    model.metadata["feature_stats"] = stats
    return stats


def unfamiliarity(model, image: np.ndarray, zoom: float = 1.0) -> float | None:  # noqa: ANN001
    """How unlike the training images ``image`` looks to the network (~1: alike).

    The median over a grid of crops of the RMS z-score of their signatures, divided by
    the training crops' 95th percentile. ``None`` when the model records no statistics
    or they do not fit it. ``zoom``: the image is rescaled first, as the network saw it
    (see :func:`feature_signature`).
    """
    stats = (getattr(model, "metadata", None) or {}).get("feature_stats")
    if not isinstance(stats, dict):
        return None
    try:
        mean = np.asarray(stats["mean"], np.float64)
        std = np.asarray(stats["std"], np.float64)
        scale = float(stats["scale"])
    except (KeyError, TypeError, ValueError):
        return None
    sig = feature_signature(model, image, zoom=zoom)
    if sig.shape[1] != mean.shape[0] or std.shape != mean.shape or not scale > 0:
        return None
    return float(np.median(_rms_z(sig, mean, std)) / scale)
