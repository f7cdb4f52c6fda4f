"""Quality verdicts on constructed grain maps and nuclei results."""

from __future__ import annotations

import numpy as np
import pytest

from microseg.astm import grain_summary
from microseg.errors import InputError
from microseg.quality import (
    CHECK,
    DO_NOT_TRUST,
    OK,
    combine,
    grain_neighbours,
    grain_quality,
    nuclei_quality,
    nucleus_edge_width,
)
from microseg.synth import synth_grains


@pytest.fixture(scope="module")
def good_map():
    g = synth_grains((512, 512), 150, seed=2)
    return g.labels, g.boundaries.astype(np.float32)


def _checks(q):
    return {f.check for f in q.findings if f.level in (CHECK, DO_NOT_TRUST)}


def test_a_sound_grain_map_looks_fine(good_map):
    labels, proba = good_map
    q = grain_quality(labels, grain_summary(labels, 0.5), proba, 0.5, unfamiliarity=0.8)
    assert q.verdict == OK, q.reasons
    assert q.reasons == [] and q.label == "looks fine"
    assert 4 <= q.checks["median_neighbours"] <= 7
    assert q.checks["g_spread"] < 1.0
    j = q.to_json()
    assert set(j) >= {"verdict", "reasons", "checks"} and j["verdict"] == "ok"


def test_isolated_blobs_in_one_region_are_not_a_grain_structure():
    # what a grain model does on an image it never saw: pores as "grains" in a matrix
    labels = np.ones((300, 300), np.uint16)
    rng = np.random.default_rng(0)
    k = 2
    for _ in range(40):
        y, x = rng.integers(10, 290, 2)
        labels[y - 3 : y + 4, x - 3 : x + 4] = 0
        labels[y - 2 : y + 3, x - 2 : x + 3] = k
        k += 1
    q = grain_quality(labels, grain_summary(labels, 0.5), None, 0.5)
    assert q.verdict == DO_NOT_TRUST
    assert {"median_neighbours", "largest_grain_fraction"} <= _checks(q)
    assert any("isolated blobs" in r for r in q.reasons)
    assert q.next_steps  # says what to do


def test_g_estimates_that_disagree_are_flagged(good_map):
    labels, _ = good_map
    s = dict(grain_summary(labels, 0.5))
    g = s["astm_g_planimetric"]
    s.update(astm_g_intercept=g + 1.6, astm_g_mean_area=g - 0.2)
    q = grain_quality(labels, s, None, 0.5)
    assert q.verdict == CHECK and _checks(q) == {"g_spread"}
    s.update(astm_g_intercept=g + 4.0)
    assert grain_quality(labels, s, None, 0.5).verdict == DO_NOT_TRUST


def test_g_spread_without_a_pixel_size_uses_a_nominal_one(good_map):
    labels, _ = good_map
    with_ps = grain_quality(labels, grain_summary(labels, 0.5), None, 0.5)
    without = grain_quality(labels, grain_summary(labels, None), None, None)
    assert without.checks["g_spread"] == pytest.approx(with_ps.checks["g_spread"], abs=1e-6)
    assert without.verdict == OK  # no pixel size is a note, not a reason
    assert any("No pixel size" in n for n in without.notes)


def test_few_grains_and_odd_pixel_sizes_are_weak_measurements():
    labels = synth_grains((160, 160), 20, seed=1).labels
    q = grain_quality(labels, grain_summary(labels, 0.5), None, 0.5)
    assert "n_grains" in _checks(q)
    labels = synth_grains((512, 512), 150, seed=2).labels
    q = grain_quality(labels, grain_summary(labels, 500.0), None, 500.0)
    assert _checks(q) == {"pixel_size_um"} and q.verdict == CHECK


def test_boundaries_over_most_of_the_image_and_no_grains(good_map):
    labels, proba = good_map
    q = grain_quality(labels, grain_summary(labels, 0.5), np.full(labels.shape, 0.9), 0.5)
    assert "boundary_fraction" in _checks(q)
    empty = np.ones((64, 64), np.uint16)
    q = grain_quality(empty, grain_summary(empty, 0.5), None, 0.5)
    assert q.verdict == DO_NOT_TRUST and "no boundaries" in q.reasons[0]


@pytest.mark.parametrize(("u", "verdict"), [(0.9, OK), (1.7, CHECK), (2.6, DO_NOT_TRUST)])
def test_an_unfamiliar_image_is_flagged(good_map, u, verdict):
    labels, proba = good_map
    q = grain_quality(labels, grain_summary(labels, 0.5), proba, 0.5, unfamiliarity=u)
    assert q.verdict == verdict
    assert q.checks["unfamiliarity"] == u


def test_grain_neighbours_of_four_quadrants():
    labels = np.zeros((20, 20), np.uint16)
    labels[:9, :9], labels[:9, 11:], labels[11:, :9], labels[11:, 11:] = 1, 2, 3, 4
    counts, on_edge = grain_neighbours(labels)
    # after boundaries are shared out each quadrant meets its two side neighbours
    # (and, through the centre, possibly the diagonal one)
    assert all(2 <= c <= 3 for c in counts[1:])
    assert on_edge[1:].all()


def test_grain_quality_refuses_mismatched_inputs(good_map):
    labels, _ = good_map
    with pytest.raises(InputError, match="does not match"):
        grain_quality(labels, grain_summary(labels, 0.5), np.zeros((3, 3)), 0.5)
    with pytest.raises(InputError, match="2-D"):
        grain_quality(labels[None], {}, None)


def _disc_labels(n: int, r: int, shape=(256, 256)) -> np.ndarray:
    lab = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    rng = np.random.default_rng(1)
    for k in range(1, n + 1):
        cy, cx = rng.integers(r, shape[0] - r, 2)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return lab


def test_nuclei_verdicts():
    lab = _disc_labels(12, 8)
    proba = np.stack([(lab == 0), (lab > 0)]).astype(np.float32)
    q = nuclei_quality(lab, proba, ["background", "nucleus"], None, 0.3)
    assert q.verdict == OK, q.reasons
    # a "nucleus" over the whole image: the background was not found
    full = np.ones((256, 256), np.int32)
    assert nuclei_quality(full).verdict == DO_NOT_TRUST
    # nothing found
    q = nuclei_quality(np.zeros((64, 64), np.int32))
    assert "n_nuclei" in _checks(q)
    # ragged objects
    ragged = np.zeros((256, 256), np.int32)
    for k in range(1, 9):  # thin crosses: far from convex
        cy, cx = 20 + 28 * k, 20 + 25 * k
        ragged[cy - 9 : cy + 10, cx - 1 : cx + 2] = k
        ragged[cy - 1 : cy + 2, cx - 9 : cx + 10] = k
    assert "median_solidity" in _checks(nuclei_quality(ragged))
    # an unsure model
    flat = np.full((2, 256, 256), 0.5, np.float32)
    assert "unsure_fraction" in _checks(nuclei_quality(lab, flat))
    # nuclei far from the model's training size
    assert "diameter_ratio" in _checks(nuclei_quality(lab, model_diameter_px=60))


@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0])
def test_the_edge_width_of_blurred_discs_follows_the_blur(sigma):
    from scipy import ndimage as ndi

    lab = _disc_labels(12, 10)
    image = ndi.gaussian_filter(100.0 * (lab > 0) + 20.0, sigma)
    width = nucleus_edge_width(image, lab)
    # a step blurred by sigma: contrast / steepest slope = sqrt(2 pi) * sqrt(sigma² + 1)
    expected = np.sqrt(2 * np.pi) * np.sqrt(sigma**2 + 1.0)
    assert width == pytest.approx(expected, rel=0.25)
    # channels are averaged; no nuclei or a constant image give no width
    assert nucleus_edge_width(np.stack([image, image]), lab) == pytest.approx(width)
    assert nucleus_edge_width(image, np.zeros_like(lab)) is None
    assert nucleus_edge_width(np.full(lab.shape, 5.0), lab) is None


def test_an_out_of_focus_image_is_flagged():
    from scipy import ndimage as ndi

    lab = _disc_labels(12, 10)
    sharp = ndi.gaussian_filter(100.0 * (lab > 0), 0.8)
    q = nuclei_quality(lab, image=sharp)
    assert "edge_width_px" not in _checks(q) and q.checks["edge_width_px"] < 4
    blurred = ndi.gaussian_filter(100.0 * (lab > 0), 4.0)
    q = nuclei_quality(lab, image=blurred)
    assert q.verdict == CHECK and "edge_width_px" in _checks(q)
    assert any("out of focus" in r for r in q.reasons)
    # wide edges on nuclei far larger than them are not blur that merges nuclei
    big = _disc_labels(6, 60, shape=(512, 512))
    q = nuclei_quality(big, image=ndi.gaussian_filter(100.0 * (big > 0), 3.0))
    assert q.checks["edge_width_px"] > 5 and "edge_width_px" not in _checks(q)


def test_combine_keeps_the_worst_verdict_and_every_reason(good_map):
    labels, proba = good_map
    ok = grain_quality(labels, grain_summary(labels, 0.5), proba, 0.5)
    bad = grain_quality(labels, grain_summary(labels, 0.5), proba, 0.5, unfamiliarity=3.0)
    both = combine([ok, bad])
    assert both.verdict == DO_NOT_TRUST and both.reasons == bad.reasons
    with pytest.raises(InputError):
        combine([])
