"""microseg.tiled: tile-by-tile prediction equals whole-image prediction (exactly for
the random forest, to float rounding for the U-Net), on images read by region."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile

from microseg.classical import RandomForestSegmenter
from microseg.errors import InputError
from microseg.regions import open_regions
from microseg.synth import synth_grains
from microseg.tiled import Cancelled, _mirror, predict_tiled, read_block, tile_plan


@pytest.fixture(scope="module")
def grains(tmp_path_factory):
    """A 300x420 synthetic micrograph as a tiled TIFF and an RF trained on sparse truth."""
    g = synth_grains((300, 420), 60, seed=2)
    d = tmp_path_factory.mktemp("tiled")
    tifffile.imwrite(d / "g.tif", g.image, tile=(64, 64))
    rng = np.random.default_rng(0)
    strokes = np.zeros(g.image.shape, np.uint8)
    idx = rng.choice(g.image.size, 3000, replace=False)
    strokes.flat[idx] = np.where(g.boundaries.flat[idx], 2, 1)
    rf = RandomForestSegmenter(workers=1).fit(g.image, strokes, task="grains", seed=0)
    return g.image, open_regions(d / "g.tif"), rf


def tiny_unet(in_channels: int = 1):
    import torch

    from microseg.deep import UNet, UNetConfig, UNetSegmenter

    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=in_channels, n_classes=2, depth=3, base=4)).eval()
    return UNetSegmenter(net, ["grain interior", "grain boundary"], task="grains")


def test_mirror_folds_indices_as_numpy_pad():
    a = np.arange(7)
    for mode in ("reflect", "symmetric"):
        idx = _mirror(np.arange(-5, 12), 7, mode)
        np.testing.assert_array_equal(a[idx], np.pad(a, (5, 5), mode=mode))


def test_random_forest_tiles_equal_the_whole_image_exactly(grains):
    image, regions, rf = grains
    whole = rf.predict_proba(image)
    classes = np.zeros(image.shape, np.uint8)
    probs = np.zeros(whole.shape, np.float32)
    counts = predict_tiled(rf, regions, classes, probs, tile=128)
    np.testing.assert_array_equal(probs, whole)
    np.testing.assert_array_equal(classes, np.argmax(whole, 0) + 1)
    assert counts.tolist() == np.bincount(classes.ravel(), minlength=3)[1:].tolist()


def test_unet_tiles_match_the_whole_image(grains):
    image, regions, _ = grains
    model = tiny_unet()
    whole = model.predict_proba(image)
    classes = np.zeros(image.shape, np.uint8)
    probs = np.zeros(whole.shape, np.float32)
    predict_tiled(model, regions, classes, probs, tile=96)
    plan = tile_plan(model, image.shape, 96)
    assert plan.tile % plan.multiple == 0 and plan.context >= model.config.receptive_radius
    assert np.abs(probs - whole).max() < 1e-4
    assert (classes == np.argmax(whole, 0) + 1).mean() > 0.999


def test_unet_blocks_carry_mirrored_context_at_the_image_edge(grains):
    image, regions, _ = grains
    plan = tile_plan(tiny_unet(), image.shape, 128)
    block, (ys, xs) = read_block(regions, plan, 0, 0)
    r = plan.context
    padded = np.pad(image, r, mode=plan.mirror)
    np.testing.assert_array_equal(block[0], padded[: block.shape[1], : block.shape[2]])
    np.testing.assert_array_equal(block[0][ys, xs], image[:128, :128])


def test_a_stop_event_cancels_before_the_next_tile(grains):
    image, regions, rf = grains
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        stop.set()

    with pytest.raises(Cancelled):
        predict_tiled(
            rf, regions, np.zeros(image.shape, np.uint8), tile=128, progress=progress, stop=stop
        )
    assert seen == [1]


def test_tiles_smaller_than_64_px_are_refused(grains):
    _, regions, rf = grains
    with pytest.raises(InputError, match="at least 64 pixels"):
        predict_tiled(rf, regions, np.zeros(regions.shape_yx, np.uint8), tile=16)
