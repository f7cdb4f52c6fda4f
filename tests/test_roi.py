"""Measurement regions and data-bar detection (microseg.roi)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from microseg.errors import InputError
from microseg.roi import (
    MIN_SIDE,
    Region,
    find_data_bar,
    margins_region,
    parse_region,
    without_data_bar,
)


def _texture(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A noisy grey micrograph stand-in (8-bit, no value repeated over a row)."""
    rng = np.random.default_rng(seed)
    from scipy import ndimage as ndi

    smooth = ndi.gaussian_filter(rng.normal(size=shape), 6)
    img = 128 + 60 * smooth / smooth.std() + rng.normal(0, 6, shape)
    return np.clip(img, 1, 254).astype(np.uint8)


def with_bar(img: np.ndarray, height: int, bg: int, fg: int, side: str = "bottom",
             jpeg: int | None = None) -> np.ndarray:  # fmt: skip
    """``img`` with a data bar of ``height`` rows: two lines of text and a scale bar."""
    h, w = img.shape
    out = Image.new("L", (w, h + height), bg)
    out.paste(Image.fromarray(img), (0, 0 if side == "bottom" else height))
    d = ImageDraw.Draw(out)
    y = h if side == "bottom" else 0
    font = ImageFont.load_default(size=max(10, height // 3))
    d.text((10, y + height // 6), "HV 15.00 kV  WD 10.2 mm  mag 5 000 x  HFW 59.7 um", fill=fg,
           font=font)  # fmt: skip
    d.text((10, y + height // 2), "spot 3.0  2024-03-01  Al2O3 1600C", fill=fg, font=font)
    d.rectangle([w - 160, y + height // 2, w - 40, y + height // 2 + 4], fill=fg)
    if jpeg:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=jpeg)
        out = Image.open(buf)
    return np.asarray(out)


def test_region_crop_and_describe():
    r = Region(10, 50, 5, 45)
    a = np.arange(3 * 60 * 60).reshape(3, 60, 60)
    assert r.crop(a).shape == (3, 40, 40)
    assert r.crop(a)[0, 0, 0] == a[0, 10, 5]
    assert r.shape == (40, 40)
    assert r.describe() == "rows 10-49, columns 5-44"
    assert Region.full((3, 60, 70)) == Region(0, 60, 0, 70)
    assert Region.full((60, 70)).is_full((60, 70)) and not r.is_full((60, 60))
    assert r.as_dict() == {"y0": 10, "y1": 50, "x0": 5, "x1": 45}


def test_parse_region_follows_slice_rules():
    assert parse_region(":-64,:", (480, 640)) == Region(0, 416, 0, 640)
    assert parse_region("10:200, 20:-20", (480, 640)) == Region(10, 200, 20, 620)
    assert parse_region(":,:", (480, 640)) == Region.full((480, 640))
    assert parse_region("0:9999,0:9999", (480, 640)) == Region.full((480, 640))


@pytest.mark.parametrize("text", ["", "10:20", "a:b,c:d", "1:2:3,4:5", "100:50,:"])
def test_parse_region_refuses_bad_text_in_one_sentence(text):
    with pytest.raises(InputError) as err:
        parse_region(text, (480, 640))
    assert str(err.value).count(".") >= 1 and "\n" not in str(err.value)


def test_region_too_small_or_empty():
    with pytest.raises(InputError, match="under 16 pixels"):
        parse_region(f"0:{MIN_SIDE - 1},:", (480, 640))
    with pytest.raises(InputError, match="leaves nothing"):
        margins_region((480, 640), top=300, bottom=200)
    with pytest.raises(InputError, match="zero or more"):
        margins_region((480, 640), bottom=-1)
    assert margins_region((480, 640), bottom=64, left=3) == Region(0, 416, 3, 640)


@pytest.mark.parametrize("side", ["bottom", "top"])
@pytest.mark.parametrize("height", [24, 48, 80])
@pytest.mark.parametrize(("bg", "fg"), [(0, 255), (255, 0), (60, 230)])
def test_finds_a_lossless_data_bar(side, height, bg, fg):
    img = _texture((400, 520))
    a = with_bar(img, height, bg, fg, side)
    bar = find_data_bar(a)
    assert bar is not None and bar.side == side
    if side == "bottom":
        # the bar, and a 2-row margin of the image
        assert (bar.start, bar.stop) == (400 - 2, 400 + height)
    else:
        assert (bar.start, bar.stop) == (0, height + 2)
    region, found = without_data_bar(a)
    assert found == bar
    assert region.shape == (400 - 2, 520)
    assert "data bar at the " + side in bar.describe()


@pytest.mark.parametrize("quality", [90, 75])
@pytest.mark.parametrize(("bg", "fg"), [(0, 255), (255, 0)])
def test_finds_a_jpeg_data_bar_with_its_blurred_edge(quality, bg, fg):
    img = _texture((402, 520), seed=1)  # 402: the edge falls inside a JPEG block
    a = with_bar(img, 64, bg, fg, "bottom", jpeg=quality)
    bar = find_data_bar(a)
    assert bar is not None and bar.side == "bottom"
    # every row the compression mixed with the bar goes with it, and at most the
    # 8 rows of one JPEG block and the 2-row margin of the image
    assert 402 - 10 <= bar.start <= 402 - 2 and bar.stop == 402 + 64


def test_rgb_planes_and_other_dtypes():
    img = _texture((300, 400), seed=2)
    a = with_bar(img, 40, 0, 255)
    rgb = np.stack([a, a, a])
    assert find_data_bar(rgb) == find_data_bar(a)
    assert find_data_bar(a.astype(np.uint16) * 257) == find_data_bar(a)
    assert find_data_bar(a.astype(np.float32) / 255) == find_data_bar(a)


def test_no_bar_on_plain_images():
    img = _texture((400, 520), seed=3)
    assert find_data_bar(img) is None
    assert without_data_bar(img) == (Region.full(img.shape), None)
    # a noise-free rendering: every row flat, nothing to tell a bar from
    flat = np.zeros((300, 300), np.uint8)
    flat[:, 150:] = 200
    assert find_data_bar(flat) is None
    # too small to hold a bar
    assert find_data_bar(img[:20]) is None
    # a dark band that fades in (vignetting) is not a bar
    fade = img.astype(float) * np.clip(np.linspace(0, 3, 400), 0, 1)[:, None]
    assert find_data_bar(fade.astype(np.uint8)) is None


def test_no_bar_on_the_sample_micrographs(shared_data):
    from skimage import io as skio

    grains = shared_data / "grains"
    files = sorted((grains / "tbm" / "full").glob("*.png"))
    files += [grains / "nist_steel" / "steel_original.tif"]
    # fluorescence images whose dark backgrounds fade towards an edge
    dsb = shared_data / "nuclei" / "dsb2018_train" / "images"
    files += [dsb / f"{i}.png" for i in ("693bc64581275f04fc456da74f031d583733360a1f6032fa38b3fbf592ff4352",
                                         "53ad09e4348767bece0165884bf40c10b72ae18444e3f414a850442f02385efc")]  # fmt: skip
    for path in files:
        a = skio.imread(path)
        if a.ndim == 3:
            a = np.moveaxis(a[..., :3], -1, 0)
        assert find_data_bar(a) is None, path.name


def test_bar_on_a_sample_micrograph(shared_data):
    from skimage import io as skio

    img = skio.imread(shared_data / "grains" / "nist_steel" / "steel_original.tif")
    a = with_bar(img, 56, 0, 255)
    region, bar = without_data_bar(a)
    assert bar is not None and region == Region(0, 600 - 2, 0, 800)
