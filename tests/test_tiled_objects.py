"""microseg.tiled_objects: objects found window by window are the whole-image objects
(one id and one table row each, also where a tile border cuts them), and objects bigger
than the margin are counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from microseg.errors import InputError
from microseg.measure import object_table
from microseg.regions import RegionImage
from microseg.tiled_objects import objects_tiled


def disks(shape=(300, 340), radius=9, n=60, seed=0) -> np.ndarray:
    """A grey image of bright, separate disks."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    for _ in range(n):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        rr, cc = disk((y, x), radius, shape=shape)
        if not img[
            max(0, y - 2 * radius) : y + 2 * radius, max(0, x - 2 * radius) : x + 2 * radius
        ].any():
            img[rr, cc] = 1.0
    return img


def as_regions(img: np.ndarray) -> RegionImage:
    data = img[None]
    return RegionImage(
        "disks", img.shape, 1, img.dtype, None, "in memory", lambda ys, xs: data[:, ys, xs]
    )


def find(window: np.ndarray, origin) -> np.ndarray:
    return ndi.label(window[0] > 0.5)[0]


def measure(labels: np.ndarray, window: np.ndarray) -> pd.DataFrame:
    return object_table(labels, window[0])


def test_windows_give_the_whole_image_objects():
    img = disks()
    whole = ndi.label(img > 0.5)[0]
    out = np.zeros(img.shape, np.uint32)
    found = objects_tiled(as_regions(img), find, out, tile=64, margin=24, measure=measure)
    assert found.n_objects == whole.max() and found.cut == 0 and found.windows == 30
    # the same objects, one id each, whatever tile borders cut them
    pairs = {(int(a), int(b)) for a, b in zip(whole.ravel(), out.ravel(), strict=True) if a or b}
    assert len(pairs) == whole.max() and all(a and b for a, b in pairs)
    table = found.table
    assert sorted(table["label"]) == list(range(1, found.n_objects + 1))
    ref = object_table(whole, img).set_index("label")
    mapped = dict((b, a) for a, b in pairs)
    for row in table.itertuples():
        r = ref.loc[mapped[row.label]]
        assert row.area_px == r.area_px
        assert row.y == pytest.approx(r.y) and row.x == pytest.approx(r.x)
        assert bool(row.touches_border) == bool(r.touches_border)


def test_objects_bigger_than_the_margin_are_counted_as_cut():
    img = disks(radius=20, n=25, seed=1)
    out = np.zeros(img.shape, np.uint32)
    found = objects_tiled(as_regions(img), find, out, tile=64, margin=4)
    assert found.cut > 0


def test_too_small_tiles_are_refused():
    with pytest.raises(InputError, match="at least 64 px"):
        objects_tiled(as_regions(disks()), find, np.zeros((300, 340), np.uint32), tile=8)
