"""Tiled inference: any image size, bounded memory, no seams.

Each tile is run with a context margin of at least the network's receptive
radius (discarded afterwards), so a tile's kept core equals whole-image
inference; neighbouring cores overlap and are blended with raised-cosine
weights. Tile origins lie on the network's pooling grid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch

from microseg.deep.unet import UNet

ProgressFn = Callable[[float], None]


class Stopped(Exception):
    """Raised when a ``stop`` event ends tiled inference early."""


def _ramp(n: int, overlap: int, lo_edge: bool, hi_edge: bool) -> np.ndarray:
    w = np.ones(n, np.float32)
    if overlap <= 0:
        return w
    t = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    r = 0.5 - 0.5 * np.cos(np.pi * t)
    if not lo_edge:
        w[:overlap] = np.minimum(w[:overlap], r)
    if not hi_edge:
        w[n - overlap :] = np.minimum(w[n - overlap :], r[::-1])
    return w


def _starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def predict_proba_tiled(
    net: UNet,
    image: np.ndarray,
    tile: int = 1024,
    overlap: int = 32,
    margin: int | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    channels_last: bool = True,
) -> np.ndarray:
    """Class probabilities ``(K, Y, X)`` float32 of a normalised ``(C, Y, X)`` image.

    Parameters
    ----------
    net : UNet
        Network in eval mode.
    image : ndarray
        Normalised float32 ``(C, Y, X)``.
    tile : int
        Side of a tile's kept core (rounded to the pooling grid).
    overlap : int
        Pixels by which neighbouring cores overlap and are blended.
    margin : int or None
        Context on each side of a tile; default: the receptive radius (16 px of
        mirrored border when the whole image is one tile).
    progress : callable or None
        Called with the fraction done (0..1) after each tile.
    stop : threading.Event or None
        When set, raises :class:`Stopped` before the next tile.
    """
    cfg = net.config
    m = cfg.multiple
    c, h, w = image.shape
    overlap = -(-overlap // m) * m
    tile = max(m, -(-tile // m) * m)
    # pad the whole image once: context margin plus rounding to the grid
    ph = -(-h // m) * m
    pw = -(-w // m) * m
    if margin is None:
        # one tile needs no context beyond a short mirrored border
        margin = cfg.receptive_radius if max(ph, pw) > tile else min(16, cfg.receptive_radius)
    margin = -(-margin // m) * m
    core_h, core_w = min(tile, ph), min(tile, pw)
    pad = ((0, 0), (margin, margin + ph - h), (margin, margin + pw - w))
    mode = "reflect" if min(h, w) > max(margin, m) + 1 else "symmetric"
    padded = np.pad(image.astype(np.float32, copy=False), pad, mode=mode)
    k = cfg.n_classes
    acc = np.zeros((k, ph, pw), np.float32)
    wsum = np.zeros((ph, pw), np.float32)
    ys = _starts(ph, core_h, max(m, core_h - overlap))
    xs = _starts(pw, core_w, max(m, core_w - overlap))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    n_tiles = len(ys) * len(xs)
    done = 0
    with torch.inference_mode():
        for y0 in ys:
            wy = _ramp(core_h, overlap, y0 == 0, y0 + core_h >= ph)
            for x0 in xs:
                if stop is not None and stop.is_set():
                    raise Stopped("Prediction was stopped.")
                wx = _ramp(core_w, overlap, x0 == 0, x0 + core_w >= pw)
                block = padded[:, y0 : y0 + core_h + 2 * margin, x0 : x0 + core_w + 2 * margin]
                t = torch.from_numpy(np.ascontiguousarray(block))[None].to(device)
                t = t.contiguous(memory_format=fmt)
                logits = net(t)[0]
                prob = torch.softmax(logits, dim=0)
                prob = prob[:, margin : margin + core_h, margin : margin + core_w]
                p = prob.float().cpu().numpy()
                wt = wy[:, None] * wx[None, :]
                acc[:, y0 : y0 + core_h, x0 : x0 + core_w] += p * wt
                wsum[y0 : y0 + core_h, x0 : x0 + core_w] += wt
                done += 1
                if progress is not None:
                    progress(done / n_tiles)
    acc /= wsum
    return np.ascontiguousarray(acc[:, :h, :w])


def augmented_passes(
    net: UNet,
    image: np.ndarray,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    **kw: object,
) -> Iterator[np.ndarray]:
    """:func:`predict_proba_tiled` of each of the eight flips and quarter turns of
    ``image``, mapped back to the image's orientation, one at a time.

    Parameters
    ----------
    net, image
        As for :func:`predict_proba_tiled`.
    progress, stop
        Fraction done over all eight passes, and a stop event.
    **kw
        Further arguments of :func:`predict_proba_tiled` (tile, overlap, device ...).
    """
    passes = [(k, flip) for flip in (False, True) for k in range(4)]
    for i, (k, flip) in enumerate(passes):
        x = image[:, :, ::-1] if flip else image
        x = np.ascontiguousarray(np.rot90(x, k, axes=(1, 2)))

        def sub(f: float, i: int = i) -> None:
            if progress is not None:
                progress((i + f) / len(passes))

        p = predict_proba_tiled(net, x, progress=sub, stop=stop, **kw)  # type: ignore[arg-type]
        p = np.rot90(p, -k, axes=(1, 2))
        yield np.ascontiguousarray(p[:, :, ::-1] if flip else p)


def predict_proba_augmented(
    net: UNet,
    image: np.ndarray,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    **kw: object,
) -> np.ndarray:
    """Test-time augmentation: the mean of :func:`augmented_passes` (8x the time).

    Parameters are those of :func:`augmented_passes`.
    """
    acc: np.ndarray | None = None
    for p in augmented_passes(net, image, progress, stop, **kw):
        acc = p.copy() if acc is None else acc + p
    assert acc is not None
    acc /= 8
    return np.ascontiguousarray(acc, dtype=np.float32)
