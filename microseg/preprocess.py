"""Per-image intensity normalisation shared by both kinds of model."""

from __future__ import annotations

import numpy as np

from microseg.errors import InputError


def as_channels(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as ``(C, Y, X)``: a 2-D image gets one channel."""
    if image.ndim == 2:
        return image[None]
    if image.ndim == 3:
        return image
    raise InputError(f"Expected a 2-D image or (C, Y, X) channels, got shape {image.shape}.")


def normalize_percentile(
    image: np.ndarray,
    low: float = 1.0,
    high: float = 99.8,
    sample: int = 1 << 20,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Scale each channel so its ``low``/``high`` percentiles map to 0 and 1.

    Robust to brightness drift between frames (each frame is scaled on its own).
    Non-finite values become 0. Returns float32 ``(C, Y, X)``.

    Parameters
    ----------
    image : ndarray
        ``(Y, X)`` or ``(C, Y, X)``, any real dtype.
    low, high : float
        Percentiles mapped to 0 and 1.
    sample : int
        At most this many pixels (a regular subsample) are used for the percentiles.
    reference : ndarray, optional
        ``(C, N)`` values to take the percentiles from instead of the image's own: the
        whole image's sample (:meth:`microseg.regions.RegionImage.percentile_sample`)
        when ``image`` is one tile of it.
    """
    chans = as_channels(image)
    if reference is not None and np.asarray(reference).shape[0] != chans.shape[0]:
        raise InputError(
            f"The percentile reference has {np.asarray(reference).shape[0]} channel(s) "
            f"for an image of {chans.shape[0]}."
        )
    out = np.empty(chans.shape, np.float32)
    for c, ch in enumerate(chans):
        f = ch.astype(np.float32, copy=False)
        if reference is None:
            flat = f.ravel()
            ref = flat[:: max(1, flat.size // sample)]
        else:
            ref = np.asarray(reference[c], np.float32)
        finite = ref[np.isfinite(ref)]
        if finite.size == 0:
            out[c] = 0
            continue
        lo, hi = np.percentile(finite, [low, high])
        scale = 1.0 / (hi - lo) if hi > lo else 1.0
        np.subtract(f, lo, out=out[c])
        out[c] *= scale
    np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return out
