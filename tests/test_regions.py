"""microseg.regions: TIFF, OME-Zarr and in-memory images read by region, the percentile
sample of the whole image, and one sentence for stacks and broken folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from microseg.errors import InputError
from microseg.preprocess import normalize_percentile
from microseg.regions import is_ome_zarr, open_regions


def test_tiled_rgb_tiff_is_read_by_tile_as_channels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (700, 500, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, tile=(128, 128), photometric="rgb")
    img = open_regions(tmp_path / "rgb.tif")
    assert img.access == "TIFF tiles"
    assert img.shape_yx == (700, 500) and img.n_channels == 3 and img.dtype == np.uint8
    block = img.read(slice(130, 420), slice(7, 300))
    np.testing.assert_array_equal(block, np.moveaxis(rgb[130:420, 7:300], -1, 0))


def test_alpha_is_left_out_and_channel_first_tiffs_keep_their_channels(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 255, (64, 80, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=[2])
    img = open_regions(tmp_path / "rgba.tif")
    assert img.n_channels == 3
    np.testing.assert_array_equal(
        img.read(slice(0, 64), slice(0, 80)), np.moveaxis(rgba[..., :3], -1, 0)
    )
    cyx = np.random.default_rng(2).random((2, 90, 70)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cyx.tif", cyx, metadata={"axes": "CYX"})
    img = open_regions(tmp_path / "cyx.tif")
    assert img.n_channels == 2
    np.testing.assert_array_equal(img.read(slice(5, 50), slice(10, 20)), cyx[:, 5:50, 10:20])


def test_a_png_is_read_in_memory(tmp_path):
    grey = np.random.default_rng(3).integers(0, 255, (40, 60), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    img = open_regions(tmp_path / "g.png")
    assert img.access == "in memory" and img.n_channels == 1
    np.testing.assert_array_equal(img.read(slice(0, 40), slice(0, 60))[0], grey)


def test_the_percentile_sample_is_the_one_of_the_whole_image(tmp_path):
    img16 = np.random.default_rng(4).integers(0, 60000, (1100, 1300), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", img16, tile=(256, 256))
    img = open_regions(tmp_path / "a.tif")
    ref = img.percentile_sample()
    step = img16.size // (1 << 20)
    np.testing.assert_array_equal(ref[0], img16.ravel()[::step].astype(np.float32))
    whole = normalize_percentile(img16)
    tile = normalize_percentile(img16[200:500, 300:700], reference=ref)
    np.testing.assert_array_equal(tile, whole[:, 200:500, 300:700])


def test_stacks_are_refused_with_one_sentence(tmp_path):
    stack = np.zeros((3, 32, 32), np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", stack, photometric="minisblack", metadata={"axes": "TYX"})
    with pytest.raises(InputError, match=r"is a stack \(3 time points\)"):
        open_regions(tmp_path / "t.tif")


def test_ome_zarr_folders_are_read_with_their_pixel_size(tmp_path):
    import zarr

    data = np.random.default_rng(5).integers(0, 255, (1, 2, 1, 120, 90), dtype=np.uint8)
    g = zarr.open_group(tmp_path / "im.ome.zarr", mode="w", zarr_format=2)
    g.create_array("0", shape=data.shape, chunks=(1, 1, 1, 64, 64), dtype=data.dtype)[:] = data
    axes = [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "x", "type": "space", "unit": "nanometer"},
    ]
    g.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 250, 250]}],
                }
            ],
        }
    ]
    assert is_ome_zarr(tmp_path / "im.ome.zarr")
    img = open_regions(tmp_path / "im.ome.zarr")
    assert img.access == "OME-Zarr chunks" and img.shape_yx == (120, 90) and img.n_channels == 2
    assert img.pixel_size_um == pytest.approx(0.25)
    np.testing.assert_array_equal(
        img.read(slice(10, 100), slice(3, 80)), data[0, :, 0, 10:100, 3:80]
    )


def test_a_zarr_folder_without_ome_metadata_gets_one_sentence(tmp_path):
    folder = tmp_path / "plain.zarr"
    folder.mkdir()
    (folder / ".zattrs").write_text(json.dumps({"hello": 1}))
    (folder / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    with pytest.raises(InputError, match="without OME-Zarr multiscales metadata"):
        open_regions(folder)
    (folder / ".zattrs").write_text("{not json")
    with pytest.raises(InputError, match="not a readable Zarr group"):
        open_regions(folder)
