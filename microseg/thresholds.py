"""Choosing a nuclei model's instance settings on validation images.

A network trained with class weights is not calibrated: its nucleus probability
runs above 0.5 beyond the true outline, so a 0.5 threshold makes nuclei too large
and joins touching ones. As StarDist does with its probability threshold, the
foreground threshold (and the h-maxima height that splits touching nuclei) is
chosen once, on validation images the network was not trained on, by AP@0.5, and
stored with the model (``metadata["instances"]``). Among the settings within one
standard error of the best AP, the one closest to the defaults is taken (the
one-standard-error rule), so that noise in a few validation images does not move
the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from microseg.errors import InputError
from microseg.instances import H_FRACTION, nuclei_instances
from microseg.metrics import combine_matches, match_instances

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
H_FRACTIONS = (0.05, 0.1, 0.15, 0.2)


def instance_settings(metadata: dict[str, Any]) -> dict[str, float]:
    """The ``threshold`` and ``h_fraction`` a model's file records (defaults 0.5 and
    :data:`~microseg.instances.H_FRACTION`)."""
    chosen = metadata.get("instances") or {}
    return {
        "threshold": float(chosen.get("threshold", 0.5)),
        "h_fraction": float(chosen.get("h_fraction", H_FRACTION)),
    }


def choose_instance_settings(
    probas: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    classes: Sequence[str],
    thresholds: Sequence[float] = THRESHOLDS,
    h_fractions: Sequence[float] = H_FRACTIONS,
) -> dict[str, Any]:
    """The foreground threshold and h fraction by pooled AP@0.5 (one-standard-error rule).

    Parameters
    ----------
    probas : sequence of ndarray
        ``(K, Y, X)`` class probabilities of validation images.
    truths : sequence of ndarray
        Their ground-truth instance labels.
    classes : sequence of str
        Class names (with "nucleus", optionally "border").
    thresholds, h_fractions : sequence of float
        The grid searched.

    Returns
    -------
    dict
        ``threshold``, ``h_fraction``, ``ap`` (pooled AP@0.5 at that setting),
        ``ap_best`` and ``standard_error`` (the best AP of the grid and its binomial
        standard error), ``ap_default`` (at 0.5 and the default h fraction),
        ``n_images``, ``n_nuclei`` and ``grid`` (every setting's AP).
    """
    if len(probas) != len(truths) or not probas:
        raise InputError("Give as many validation probability maps as label images (at least one).")
    grid: list[tuple[float, float, float, int]] = []
    for t in thresholds:
        for hf in h_fractions:
            res = combine_matches(
                [
                    match_instances(
                        gt, nuclei_instances(p, classes, threshold=t, h_fraction=hf), 0.5
                    )
                    for p, gt in zip(probas, truths, strict=True)
                ]
            )
            grid.append((float(t), float(hf), float(res.ap), res.tp + res.fp + res.fn))
    top = max(grid, key=lambda g: g[2])
    se = float(np.sqrt(top[2] * (1.0 - top[2]) / max(1, top[3])))
    near = [g for g in grid if g[2] >= top[2] - se]
    steps = (0.1, 0.05)  # grid spacing of the threshold and the h fraction

    def distance(g: tuple[float, float, float, int]) -> tuple[float, float]:
        return (abs(g[0] - 0.5) / steps[0] + abs(g[1] - H_FRACTION) / steps[1], -g[2])

    best = min(near, key=distance)
    default = [
        match_instances(gt, nuclei_instances(p, classes), 0.5)
        for p, gt in zip(probas, truths, strict=True)
    ]
    return {
        "threshold": best[0],
        "h_fraction": best[1],
        "ap": round(best[2], 4),
        "ap_best": round(top[2], 4),
        "standard_error": round(se, 4),
        "ap_default": round(float(combine_matches(default).ap), 4),
        "n_images": len(probas),
        "n_nuclei": int(sum(np.unique(t[t > 0]).size for t in truths)),
        "grid": [[t, hf, round(ap, 4)] for t, hf, ap, _ in grid],
    }
