"""microseg.tiled_grains: test lines read band by band count what the whole-image Heyn count
does, and the window settings follow the central grain map."""

from __future__ import annotations

import numpy as np
import pytest

from microseg.astm import heyn_intercept
from microseg.regions import central_window
from microseg.synth import synth_grains
from microseg.tiled_grains import heyn_line_counts, window_settings


@pytest.fixture(scope="module")
def grains():
    return synth_grains((400, 520), 120, seed=4)


def test_banded_test_lines_count_as_the_whole_image_heyn_count(grains):
    counts, lengths = heyn_line_counts(grains.labels.astype(np.uint32))
    whole = heyn_intercept(grains.labels, n_lines=10)
    assert sum(counts) == pytest.approx(whole.n_intercepts)
    assert sum(lengths) == pytest.approx(whole.total_length)


def test_window_settings_follow_the_central_grain_map(grains):
    proba = grains.boundaries.astype(np.float32)
    opts, margin, labels = window_settings(proba, {"threshold": 0.5, "min_grain_area_px": None})
    assert 64 <= margin <= 1024
    assert opts["min_grain_area_px"] >= 9 and opts["threshold"] == 0.5
    assert labels.shape == proba.shape and labels.max() > 50
    fixed, _, _ = window_settings(proba, {"min_grain_area_px": 30})
    assert fixed["min_grain_area_px"] == 30


def test_the_central_window_is_the_whole_of_a_small_image():
    assert central_window((300, 500), 2048) == (slice(0, 300), slice(0, 500))
    ys, xs = central_window((5000, 3000), 2048)
    assert (ys.start, ys.stop, xs.start, xs.stop) == (1476, 3524, 476, 2524)
