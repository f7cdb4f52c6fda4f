"""Looking inside a U-Net: learned kernels and feature maps at each level."""

from __future__ import annotations

import numpy as np
import torch

from microseg.deep.segmenter import UNetSegmenter
from microseg.deep.unet import UNet
from microseg.errors import InputError


def _net(model: UNetSegmenter | UNet) -> UNet:
    return model.net if isinstance(model, UNetSegmenter) else model


def conv_layer_names(model: UNetSegmenter | UNet) -> list[str]:
    """Names of the 3x3 convolution layers, input side first (e.g. ``enc0.conv1``)."""
    net = _net(model)
    return [f"{level}.{conv}" for level in net.level_names() for conv in ("conv1", "conv2")]


def layer_kernels(model: UNetSegmenter | UNet, layer: str = "enc0.conv1") -> np.ndarray:
    """Kernels of one convolution layer as ``(n, kh, kw)`` float32.

    For a layer with several input channels, each output channel's kernel is
    summed over its inputs (what it responds to in the mean of its inputs).
    """
    net = _net(model)
    level, _, conv = layer.partition(".")
    mods = net.level_modules()
    if level not in mods or conv not in ("conv1", "conv2"):
        raise InputError(f"Unknown layer '{layer}'; choose one of {conv_layer_names(net)}.")
    w = getattr(mods[level], conv).weight.detach().cpu().float().numpy()
    return w.sum(axis=1).astype(np.float32)


def first_layer_kernels(model: UNetSegmenter | UNet) -> np.ndarray:
    """Kernels of the first convolution ``(n, kh, kw)`` (summed over input channels)."""
    return layer_kernels(model, "enc0.conv1")


def feature_maps(
    model: UNetSegmenter, image: np.ndarray, max_side: int = 1024
) -> dict[str, np.ndarray]:
    """Feature maps of ``image`` at each encoder/decoder level.

    Parameters
    ----------
    model : UNetSegmenter
        Trained model (its normalisation is applied to ``image``).
    image : ndarray
        ``(Y, X)`` or ``(C, Y, X)`` image; larger images are cropped at the centre to
        ``max_side`` and sides are cropped to a multiple of the pooling factor.

    Returns
    -------
    dict of str to ndarray
        ``{"enc0": (C, h, w), ..., "dec0": (C, h, w)}`` float32, input side first.
    """
    net = model.net.eval()
    x = model.prepare(image)
    m = net.config.multiple
    h, w = x.shape[-2:]
    hh, ww = min(h, max_side), min(w, max_side)
    y0, x0 = (h - hh) // 2, (w - ww) // 2
    hh, ww = max(m, hh // m * m), max(m, ww // m * m)
    if h < m or w < m:
        raise InputError(f"The image must be at least {m}x{m} pixels to show feature maps.")
    x = x[:, y0 : y0 + hh, x0 : x0 + ww]
    maps: dict[str, np.ndarray] = {}
    hooks = []
    for name, mod in net.level_modules().items():

        def hook(_m, _i, out, name=name):  # noqa: ANN001, ANN202
            maps[name] = out[0].detach().cpu().float().numpy()

        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            net(torch.from_numpy(np.ascontiguousarray(x))[None].to(next(net.parameters()).device))
    finally:
        for hk in hooks:
            hk.remove()
    return {n: maps[n] for n in net.level_names()}


def strongest_channels(
    maps: np.ndarray | dict[str, np.ndarray], n: int = 8, level: str | None = None
):
    """Indices of the ``n`` channels with the largest mean absolute activation.

    ``maps`` is one level's ``(C, h, w)`` array, or the dict of :func:`feature_maps`
    (then every level gets its list, or only ``level``).
    """
    if isinstance(maps, dict):
        if level is not None:
            return strongest_channels(maps[level], n)
        return {k: strongest_channels(v, n) for k, v in maps.items()}
    a = np.asarray(maps)
    score = np.abs(a).reshape(a.shape[0], -1).mean(axis=1)
    return [int(i) for i in np.argsort(-score, kind="stable")[:n]]
