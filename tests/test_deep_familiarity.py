"""A U-Net's feature statistics tell images like its training images from others."""

from __future__ import annotations

import numpy as np
import pytest

from microseg.deep import UNetSegmenter
from microseg.deep.familiarity import feature_signature, record_feature_stats, unfamiliarity
from microseg.synth import synth_grains


@pytest.fixture(scope="module")
def model() -> UNetSegmenter:
    m = UNetSegmenter.new("grains", ["grain interior", "grain boundary"], base=4, depth=3)
    train = [synth_grains((256, 256), 60, seed=s).image for s in range(6)]
    record_feature_stats(m, train, crops_per_image=4)
    return m


def test_signatures_have_one_mean_and_std_per_encoder_channel(model):
    sig = feature_signature(model, synth_grains((256, 256), 60, seed=9).image, n_crops=4)
    assert sig.shape == (4, 2 * (4 + 8 + 16))
    assert np.isfinite(sig).all()


def test_images_of_the_training_kind_are_familiar_and_others_are_not(model):
    alike = [unfamiliarity(model, synth_grains((256, 256), 60, seed=s).image) for s in (20, 21)]
    rng = np.random.default_rng(0)
    noise = rng.normal(128, 60, (256, 256)).clip(0, 255)
    inverted = 255 - synth_grains((256, 256), 60, seed=22).image.astype(float)
    assert max(alike) < 1.5
    assert unfamiliarity(model, noise) > 2 * max(alike)
    assert unfamiliarity(model, inverted) > max(alike)


def test_stats_travel_in_the_model_file_and_are_absent_from_others(model, tmp_path):
    path = model.save(tmp_path / "m.safetensors")
    back = UNetSegmenter.load(path)
    img = synth_grains((200, 232), 50, seed=30).image  # sides not multiples of the crop
    assert unfamiliarity(back, img) == pytest.approx(unfamiliarity(model, img), rel=1e-4)
    plain = UNetSegmenter.new("grains", ["grain interior", "grain boundary"], base=4, depth=3)
    assert unfamiliarity(plain, img) is None
    plain.metadata["feature_stats"] = {"mean": [0.0], "std": [1.0], "scale": 1.0}  # wrong size
    assert unfamiliarity(plain, img) is None
