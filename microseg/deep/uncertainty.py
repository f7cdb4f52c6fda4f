"""How unsure a U-Net is, per pixel: the disagreement of test-time augmentation.

A network's softmax is confident where it should not be, most of all on a kind of
image it never saw, so its margin says little about where it is wrong. The eight
flips and quarter turns of the image are eight views the network must agree on:
where their probabilities differ, the prediction rests on the orientation of the
texture rather than on what the image shows. :func:`augmentation_uncertainty`
averages that disagreement and the margin of the averaged probabilities (the
margin alone misses the disagreement, the disagreement alone misses pixels that all
eight passes find equally unsure); the "where to paint next" boxes of the app come
from it (:func:`microseg.classical.suggest_regions`). ``benchmarks/bench_uncertainty.py``
measures how well each of these points at the network's errors.
"""

from __future__ import annotations

import threading

import numpy as np

from microseg.classical import uncertainty as margin_uncertainty
from microseg.deep.tiling import ProgressFn, augmented_passes


def augmentation_uncertainty(
    model,  # noqa: ANN001 - a UNetSegmenter (not imported: no cycle with segmenter)
    image: np.ndarray,
    tile: int = 1024,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities averaged over the eight flips and quarter turns, and uncertainty.

    Parameters
    ----------
    model : UNetSegmenter
        The network (its own input preparation is used).
    image : ndarray
        ``(Y, X)``, ``(C, Y, X)`` or ``(Y, X, 3)``, any dtype.
    tile : int
        Tile side of the tiled inference.
    progress, stop
        Fraction-done callback over the eight passes, and a stop event.

    Returns
    -------
    proba : ndarray
        ``(K, Y, X)`` float32 mean class probabilities (as ``predict_proba(augment=True)``).
    uncertainty : ndarray
        ``(Y, X)`` float32 in [0, 1]: the mean of the margin uncertainty of ``proba``
        (:func:`microseg.classical.uncertainty`) and the disagreement of the passes (the
        mean absolute deviation of a pass from ``proba``, summed over classes: 1 when
        the passes split evenly between two classes with certainty).
    """
    x = model.prepare(image)
    net = model.inference_net()
    passes = list(
        augmented_passes(net, x, tile=tile, device=model.device, progress=progress, stop=stop)
    )
    stack = np.stack(passes).astype(np.float32)
    proba = stack.mean(axis=0)
    disagreement = np.abs(stack - proba[None]).sum(axis=1).mean(axis=0)  # in [0, 1]
    unc = 0.5 * (margin_uncertainty(proba) + np.clip(disagreement, 0.0, 1.0))
    return np.ascontiguousarray(proba), unc.astype(np.float32)
