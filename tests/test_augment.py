"""Batch augmentation: geometry shared by image and target, intensity on the image only."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from microseg.deep.augment import AugmentConfig, augment_batch  # noqa: E402

OFF = dict(scale=(1.0, 1.0), offset=0.0, gamma=(1.0, 1.0), noise=0.0, blur_p=0.0, grey_p=0.0)


def _batch(b: int = 16, c: int = 3, side: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.integers(1, 4, (b, side, side)))
    x = torch.stack([y.float() * (k + 1) for k in range(c)], dim=1)  # image encodes target
    return x, y


def test_geometry_moves_image_and_target_together():
    x, y = _batch()
    xa, ya = augment_batch(x, y, AugmentConfig(**OFF), torch.Generator().manual_seed(1))
    assert torch.equal(xa[:, 0], ya.float())
    assert torch.equal(xa[:, 2], 3 * ya.float())
    assert not torch.equal(ya, y)  # some crops were flipped or rotated
    # every augmented target is one of the 8 symmetries of its input
    for i in range(len(y)):
        views = [torch.rot90(v, k, (-2, -1)) for v in (y[i], y[i].flip(-1)) for k in range(4)]
        assert any(torch.equal(ya[i], v) for v in views)


def test_intensity_changes_leave_the_target_alone():
    x, y = _batch()
    cfg = AugmentConfig(flips=False, noise=0.1, blur_p=1.0)
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(ya, y)
    assert not torch.allclose(xa, x)


def test_grey_makes_channels_equal():
    x, y = _batch()
    cfg = AugmentConfig(flips=False, **{**OFF, "grey_p": 1.0})
    xa, _ = augment_batch(x, y, cfg, torch.Generator().manual_seed(3))
    assert torch.allclose(xa[:, 0], xa[:, 1]) and torch.allclose(xa[:, 1], xa[:, 2])


def test_channel_jitter_scales_each_channel_within_its_range():
    x = torch.ones(64, 3, 8, 8)
    y = torch.ones(64, 8, 8, dtype=torch.long)
    cfg = AugmentConfig(flips=False, **OFF, channel_jitter=0.2)
    xa, _ = augment_batch(x, y, cfg, torch.Generator().manual_seed(4))
    gains = xa[:, :, 0, 0]
    assert torch.allclose(xa, gains[:, :, None, None].expand_as(xa))  # one gain per channel
    assert float(gains.min()) >= 0.8 - 1e-6 and float(gains.max()) <= 1.2 + 1e-6
    assert float((gains[:, 0] - gains[:, 1]).abs().max()) > 0.1  # channels differ: a tint
    off = augment_batch(x, y, AugmentConfig(flips=False, **OFF), torch.Generator())[0]
    assert torch.equal(off, x)


def test_same_generator_seed_gives_the_same_batch():
    x, y = _batch()
    a = augment_batch(x, y, AugmentConfig(), torch.Generator().manual_seed(5))
    b = augment_batch(x, y, AugmentConfig(), torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_texture_is_a_smooth_multiplicative_field_inside_objects():
    x = torch.zeros(8, 1, 64, 64)
    x[:, :, 16:48, 16:48] = 0.5  # a flat object on a dark background
    y = torch.ones(8, 64, 64, dtype=torch.long)
    cfg = AugmentConfig(flips=False, **OFF, texture=0.6, texture_p=1.0, texture_sigma=(3.0, 3.0))
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(6))
    assert torch.equal(ya, y)
    assert torch.equal(xa[:, :, :16], x[:, :, :16])  # the background stays dark
    inside = xa[:, 0, 16:48, 16:48] / 0.5
    assert float(inside.std()) > 0.1  # uneven staining
    assert float(inside.min()) > 0  # a gain, never a sign change
    # smooth: neighbouring gains agree far better than gains 20 px apart
    near = (inside[:, :, 1:] - inside[:, :, :-1]).abs().mean()
    far = (inside[:, :, 20:] - inside[:, :, :-20]).abs().mean()
    assert float(near) < 0.5 * float(far)
