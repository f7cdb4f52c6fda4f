"""The U-Net's uncertainty: the eight flips and turns, their mean and their disagreement."""

from __future__ import annotations

import numpy as np

from microseg.classical import uncertainty as margin_uncertainty
from microseg.deep import UNetSegmenter
from microseg.deep.uncertainty import augmentation_uncertainty
from microseg.synth import synth_grains


def test_augmentation_uncertainty_is_the_mean_of_margin_and_disagreement():
    m = UNetSegmenter.new("grains", ["grain interior", "grain boundary"], base=4, depth=3)
    img = synth_grains((96, 112), 20, seed=1).image
    proba, unc = augmentation_uncertainty(m, img)
    assert proba.shape == (2, 96, 112) and unc.shape == (96, 112)
    np.testing.assert_allclose(proba, m.predict_proba(img, augment=True), atol=1e-5)
    assert 0.0 <= unc.min() and unc.max() <= 1.0
    # an untrained network is not equivariant: its passes disagree somewhere, so the map
    # is not the margin alone
    assert not np.allclose(unc, 0.5 * margin_uncertainty(proba), atol=1e-4)
    assert (unc >= 0.5 * margin_uncertainty(proba) - 1e-6).all()
