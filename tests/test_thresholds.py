"""Choosing a nuclei model's instance settings on validation images."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from microseg.errors import InputError
from microseg.instances import H_FRACTION
from microseg.thresholds import choose_instance_settings, instance_settings

CLASSES = ["background", "nucleus", "border"]


def _over_confident(n: int = 3, seed: int = 0):
    """Discs whose nucleus probability runs ~6 px beyond the true outline (as a
    class-weighted network does), with only a faint dip between touching pairs."""
    rng = np.random.default_rng(seed)
    probas, truths = [], []
    for _ in range(n):
        gt = np.zeros((96, 96), np.uint16)
        nuc = np.zeros((96, 96), np.float32)
        k = 0
        for cy in (20, 70):
            for cx in (16, 44, 76):
                k += 1
                cx2 = cx + int(rng.integers(-2, 3))
                rr, cc = disk((cy, cx2), 9, shape=gt.shape)
                gt[rr, cc] = k
                yy, xx = np.mgrid[:96, :96]
                d = np.hypot(yy - cy, xx - cx2)
                nuc = np.maximum(nuc, np.clip(1.0 - (d - 9) / 12.0, 0, 1) * 0.95)
        nuc = np.clip(nuc, 0, 0.95)
        p = np.stack([1 - nuc, nuc, np.zeros_like(nuc)])
        probas.append(p)
        truths.append(gt)
    return probas, truths


def test_the_chosen_threshold_fixes_an_over_confident_outline():
    probas, truths = _over_confident()
    chosen = choose_instance_settings(probas, truths, CLASSES)
    assert chosen["threshold"] > 0.5
    assert chosen["ap"] > chosen["ap_default"]
    assert chosen["n_images"] == 3 and chosen["n_nuclei"] == 18
    assert len(chosen["grid"]) == 5 * 4
    assert max(g[2] for g in chosen["grid"]) == chosen["ap_best"]
    assert chosen["ap"] >= chosen["ap_best"] - chosen["standard_error"]


def test_when_settings_tie_the_defaults_are_kept():
    gt = np.zeros((64, 64), np.uint16)
    for k, (cy, cx) in enumerate([(16, 16), (16, 48), (48, 32)], start=1):
        rr, cc = disk((cy, cx), 8, shape=gt.shape)
        gt[rr, cc] = k
    nuc = (gt > 0).astype(np.float32) * 0.98
    p = np.stack([1 - nuc, nuc, np.zeros_like(nuc)])
    chosen = choose_instance_settings([p], [gt], CLASSES)
    assert chosen["ap_best"] == 1.0 and chosen["ap"] == 1.0
    assert (chosen["threshold"], chosen["h_fraction"]) == (0.5, H_FRACTION)


def test_instance_settings_defaults_and_recorded_values():
    assert instance_settings({}) == {"threshold": 0.5, "h_fraction": H_FRACTION}
    meta = {"instances": {"threshold": 0.8, "h_fraction": 0.05, "ap": 0.9}}
    assert instance_settings(meta) == {"threshold": 0.8, "h_fraction": 0.05}


def test_bad_input():
    with pytest.raises(InputError):
        choose_instance_settings([], [], CLASSES)
    probas, truths = _over_confident(1)
    with pytest.raises(InputError):
        choose_instance_settings(probas, truths + truths, CLASSES)
