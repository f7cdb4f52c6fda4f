"""Grain micrographs in imaging styles: the truth is a tessellation, the looks differ."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from microseg.errors import InputError
from microseg.synth import grain_cells
from microseg.synth_styles import STYLES, synth_grain_style


@pytest.fixture(scope="module")
def samples() -> dict:
    return {s: synth_grain_style((160, 160), seed=7, style=s) for s in STYLES}


@pytest.mark.parametrize("style", STYLES)
def test_each_style_has_a_grain_map_and_an_image_of_its_kind(samples, style):
    s = samples[style]
    assert s.style == style
    assert s.image.dtype == np.uint8
    assert s.image.shape == ((160, 160, 3) if style == "tint" else (160, 160))
    np.testing.assert_array_equal(s.boundaries, s.labels == 0)
    assert s.n_grains >= 4
    assert 0.02 < s.boundaries.mean() < 0.6
    # the image uses its range: not flat, not saturated
    assert np.ptp(s.image) > 60
    assert (s.image == 255).mean() < 0.05 and (s.image == 0).mean() < 0.05


@pytest.mark.parametrize("style", [s for s in STYLES if s != "tint"])
def test_boundaries_differ_from_grain_interiors_in_the_drawn_polarity(style):
    diffs = []
    for seed in range(6):
        s = synth_grain_style((160, 160), seed=seed, style=style)
        img = s.image.astype(float)
        inner = ndi.distance_transform_edt(~s.boundaries) > 4
        d = img[s.boundaries].mean() - img[inner].mean()
        sign = 1 if s.settings["boundary_polarity"] == "bright" else -1
        diffs.append(sign * d)
    assert np.median(diffs) > 0  # the drawn polarity is what the image shows


def test_styles_draw_both_polarities_and_a_range_of_sizes():
    polarities, spacings = set(), []
    for seed in range(30):
        s = synth_grain_style((96, 96), seed=seed)
        polarities.add(s.settings["boundary_polarity"])
        spacings.append(s.settings["grain_spacing_px"])
    assert polarities == {"bright", "dark"}
    assert min(spacings) < 15 and max(spacings) > 35


def test_equal_seeds_give_equal_samples_and_bad_arguments_say_so():
    a = synth_grain_style((96, 96), seed=3)
    b = synth_grain_style((96, 96), seed=3)
    c = synth_grain_style((96, 96), seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.style == b.style
    assert not np.array_equal(a.labels, c.labels)
    with pytest.raises(InputError, match="Unknown grain style"):
        synth_grain_style((96, 96), style="watercolour")
    with pytest.raises(InputError, match="at least 32"):
        synth_grain_style((16, 16))


def test_lamellar_grains_are_elongated():
    from skimage.measure import regionprops

    ratios = []
    for seed in range(3):
        s = synth_grain_style((192, 192), seed=seed, style="lamellar")
        ratios += [
            r.axis_major_length / max(r.axis_minor_length, 1)
            for r in regionprops(s.labels)
            if r.area > 80
        ]
    assert np.median(ratios) > 2.0


def test_rotated_cells_are_elongated_along_the_angle():
    rng = np.random.default_rng(0)
    raw = grain_cells(rng, (200, 200), 60, elongation=4.0, angle=np.pi / 2).raw
    # long along y: a cell's extent in y exceeds its extent in x
    from skimage.measure import regionprops

    props = [r for r in regionprops(raw) if r.area > 100]
    dy = np.median([r.bbox[2] - r.bbox[0] for r in props])
    dx = np.median([r.bbox[3] - r.bbox[1] for r in props])
    assert dy > 1.5 * dx
