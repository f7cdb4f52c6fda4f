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


def test_an_image_is_measured_at_the_zoom_the_network_saw_it(model):
    from skimage.transform import rescale

    img = synth_grains((256, 256), 60, seed=40).image.astype(np.float32)
    big = rescale(img, 2.0, order=1, preserve_range=True)  # grains 2x larger than trained
    as_is = unfamiliarity(model, big)
    zoomed = unfamiliarity(model, big, zoom=0.5)
    assert zoomed == pytest.approx(unfamiliarity(model, img), rel=0.2)
    assert as_is > 1.5 * zoomed


def test_the_nuclei_network_zoom_follows_the_segmenters_rescaling():
    from microseg.nuclei import FrameSegmenter

    m = UNetSegmenter.new("nuclei", ["background", "nucleus"], base=4, depth=3)
    m.metadata["object_diameter_px"] = 20.0
    labels = np.zeros((256, 256), np.int32)
    yy, xx = np.mgrid[:256, :256]
    for k, (cy, cx) in enumerate([(40, 40), (40, 200), (200, 40), (200, 200), (128, 128)], 1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 5**2] = k  # 10 px nuclei
    assert FrameSegmenter(m, object_diameter_px=None).network_zoom(labels) == 1.0
    assert FrameSegmenter(m, object_diameter_px=5.0).network_zoom(labels) == pytest.approx(4.0)
    auto = FrameSegmenter(m).network_zoom(labels)  # "auto": measured, rescaled beyond 1.5x
    assert 1.6 < auto < 2.4
    big = np.zeros((256, 256), np.int32)
    big[(yy - 128) ** 2 + (xx - 128) ** 2 <= 10**2] = 1  # 20 px: as trained
    assert FrameSegmenter(m).network_zoom(big) == 1.0
