"""Corrections as training labels: what a user fixed on a result becomes dense targets.

A user who paints a missing grain boundary, erases a false one, or splits, merges,
deletes or adds a nucleus has told the model the truth over the region the edit
covers. :func:`correction_targets` turns the result before and after the corrections
into training targets on that region (0 = unlabelled elsewhere), in the classes of
the task's models (grains: 1 interior, 2 boundary; nuclei: 1 background, 2 nucleus,
3 border), so that fine-tuning can learn from them beside the strokes
(:func:`merge_targets`): the predict -> correct -> retrain cycle of Cellpose 2.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import ndimage as ndi

from microseg.errors import InputError

if TYPE_CHECKING:
    from microseg.segmenter import Segmenter

#: pixels around a corrected place that are labelled from the corrected result
DEFAULT_MARGIN_PX = 8


class CorrectionLabels(NamedTuple):
    """Dense targets over the corrected region and what they hold."""

    targets: np.ndarray
    """``(Y, X)`` uint8: task classes 1..K in the corrected region, 0 elsewhere."""
    changed_px: int
    """Pixels whose class the corrections changed."""
    labelled_px: int
    """Pixels labelled (the changed ones and their surroundings)."""
    regions: int
    """Separate corrected places."""


def _grain_targets(after: np.ndarray) -> np.ndarray:
    """A grain map (0 = boundary) as targets: 2 on the boundary lines, 1 inside grains
    at least 2 px from them, 0 on the pixel beside a line (a model's boundary may be a
    little wider than the one-pixel line; that pixel is not held against it)."""
    line = after == 0
    out = np.zeros(after.shape, np.uint8)
    out[line] = 2
    out[~ndi.binary_dilation(line, iterations=1) & ~line] = 1
    return out


def correction_targets(
    before: np.ndarray,
    after: np.ndarray,
    task: str,
    margin_px: int = DEFAULT_MARGIN_PX,
) -> CorrectionLabels:
    """Training targets from a result and its corrected version.

    Parameters
    ----------
    before, after : ndarray
        ``(Y, X)`` label images of one plane: grain maps (0 = boundary, 1..N grains)
        for ``task="grains"``, nucleus instance labels (0 = background) for
        ``task="nuclei"``. ``after`` is ``before`` with the user's corrections.
    task : str
        ``"grains"`` or ``"nuclei"``.
    margin_px : int
        The corrected region: the pixels whose class changed, widened by this many
        pixels (the context that tells a boundary from what is beside it).

    Returns
    -------
    CorrectionLabels
        Targets 1..K on the corrected region, 0 elsewhere; all 0 when nothing changed.
    """
    from microseg.deep.train import targets_from_masks

    b, a = np.asarray(before), np.asarray(after)
    if b.ndim != 2 or b.shape != a.shape:
        raise InputError(
            f"The result and its corrected version must be 2-D images of one shape, got "
            f"{b.shape} and {a.shape}."
        )
    if margin_px < 0:
        raise InputError(f"The margin must be >= 0 pixels, got {margin_px}.")
    if task == "grains":
        ta = _grain_targets(a)
        changed = (b == 0) != (a == 0)
    elif task == "nuclei":
        tb, ta = targets_from_masks(b, "nuclei"), targets_from_masks(a, "nuclei")
        changed = tb != ta
    else:
        raise InputError(f"Corrections train grains or nuclei models, not '{task}'.")
    if not changed.any():
        return CorrectionLabels(np.zeros(a.shape, np.uint8), 0, 0, 0)
    region = ndi.distance_transform_edt(~changed) <= margin_px
    out = np.where(region, ta, 0).astype(np.uint8)
    n_regions = int(ndi.label(region, structure=np.ones((3, 3)))[1])
    return CorrectionLabels(out, int(changed.sum()), int((out > 0).sum()), n_regions)


def merge_targets(
    strokes: np.ndarray | None, corrections: Sequence[np.ndarray], shape: tuple[int, int]
) -> np.ndarray:
    """Strokes and correction targets of one plane in one target image (uint8).

    Corrections are the newer word: where one labels a pixel it overrides the strokes.
    """
    out = np.zeros(shape, np.uint8) if strokes is None else np.asarray(strokes, np.uint8).copy()
    if out.shape != tuple(shape):
        raise InputError(f"Strokes of shape {out.shape} do not match the plane {tuple(shape)}.")
    for c in corrections:
        c = np.asarray(c)
        if c.shape != out.shape:
            raise InputError(f"Corrections of shape {c.shape} do not match the plane {out.shape}.")
        out[c > 0] = c[c > 0]
    return out


def changed_elsewhere(
    initial: Segmenter, trained: Segmenter, image: np.ndarray, targets: np.ndarray
) -> float:
    """Share of the pixels the user did not label on which a retrained model's class
    differs from the starting model's.

    The score on held-out corrections covers only the corrected places; a model can
    rise there and still redraw the rest of the image, for better (it learned the
    kind of error the user fixed) or worse. This says how much it redrew.

    Parameters
    ----------
    initial, trained : Segmenter
        The model before and after training on the corrections.
    image : ndarray
        The plane both were trained and are compared on.
    targets : ndarray
        ``(Y, X)`` training targets of that plane (0 = unlabelled).

    Returns
    -------
    float
        Fraction in [0, 1] of the unlabelled pixels whose class changed (0 when every
        pixel is labelled).
    """
    from microseg.segmenter import predict_classes

    free = np.asarray(targets) == 0
    if free.ndim != 2 or not free.any():
        return 0.0
    before, after = predict_classes(initial, image), predict_classes(trained, image)
    if before.shape != free.shape or after.shape != free.shape:
        raise InputError(
            f"The targets {free.shape} do not match the predictions {before.shape} of the plane."
        )
    return float(np.count_nonzero((before != after) & free) / np.count_nonzero(free))
