"""microseg.omezarr: the OME-Zarr a tiled prediction writes is valid NGFF 0.4 (checked with
ome-zarr-models), opens in ome-zarr-py's reader with its labels, and its pyramids are the
2x2 means (image, probabilities) and nearest-neighbour subsamples (labels) of level 0."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from microseg.errors import InputError
from microseg.omezarr import OmeZarrWriter, level_shapes
from microseg.regions import RegionImage, open_regions


def in_memory(data: np.ndarray) -> RegionImage:
    return RegionImage(
        "x",
        data.shape[1:],
        data.shape[0],
        data.dtype,
        0.5,
        "in memory",
        lambda ys, xs: data[:, ys, xs],
    )


@pytest.fixture
def written(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (2, 1100, 700), dtype=np.uint16)
    classes = rng.integers(1, 3, (1100, 700), dtype=np.uint8)
    probs = rng.random((2, 1100, 700)).astype(np.float32)
    w = OmeZarrWriter(tmp_path / "r.ome.zarr", (1100, 700), 2, data.dtype, n_classes=2)
    w.copy_image(in_memory(data))
    w.classes[:] = classes
    w.probabilities[:] = probs
    w.finish(
        ["grain interior", "grain boundary"], ["#1f77b4", "#d62728"], 0.5, "r", {"model": "test"}
    )
    return tmp_path / "r.ome.zarr", data, classes, probs


def test_levels_halve_until_one_chunk():
    assert level_shapes((1100, 700)) == [(1100, 700), (550, 350), (275, 175)]
    assert level_shapes((300, 200)) == [(300, 200)]


def test_the_output_is_valid_ngff_04(written):
    from ome_zarr_models.v04 import Image, ImageLabel

    path, *_ = written
    g = zarr.open_group(path, mode="r")
    image = Image.from_zarr(g)
    ms = image.attributes.multiscales[0]
    assert [d.path for d in ms.datasets] == ["0", "1", "2"]
    assert [a.name for a in ms.axes] == ["c", "y", "x"]
    scale = ms.datasets[1].coordinateTransformations[0].scale
    assert list(scale) == [1.0, 1.0, 1.0]  # 0.5 µm doubled at level 1
    label = ImageLabel.from_zarr(g["labels/classes"])
    colors = {c.label_value: tuple(c.rgba) for c in label.attributes.image_label.colors}
    assert colors == {1: (31, 119, 180, 255), 2: (214, 39, 40, 255)}
    Image.from_zarr(g["probabilities"])
    assert g.attrs["multiscales"][0]["metadata"]["microseg"]["model"] == "test"


def test_ome_zarr_py_reads_the_image_and_its_labels(written):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    path, data, classes, _ = written
    nodes = list(Reader(parse_url(str(path)))())
    image = next(
        n
        for n in nodes
        if any(isinstance(s, Multiscales) for s in n.specs)
        and not any(isinstance(s, Label) for s in n.specs)
    )
    np.testing.assert_array_equal(np.asarray(image.data[0]), data)
    label = next(n for n in nodes if any(isinstance(s, Label) for s in n.specs))
    np.testing.assert_array_equal(np.asarray(label.data[0]), classes)
    assert label.metadata["properties"][2]["class"] == "grain boundary"


def test_pyramid_levels_are_means_and_subsamples(written):
    path, data, classes, probs = written
    g = zarr.open_group(path, mode="r")
    lab1 = np.asarray(g["labels/classes/1"])
    np.testing.assert_array_equal(lab1, classes[::2, ::2])
    img1 = np.asarray(g["1"])
    ref = data.astype(np.float64).reshape(2, 550, 2, 350, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(img1, np.rint(ref).astype(np.uint16))
    p1 = np.asarray(g["probabilities/1"])
    np.testing.assert_allclose(p1, probs.reshape(2, 550, 2, 350, 2).mean(axis=(2, 4)), atol=1e-6)


def test_written_output_reads_back_as_an_image(written):
    path, data, *_ = written
    img = open_regions(path)
    assert img.pixel_size_um == 0.5 and img.n_channels == 2
    np.testing.assert_array_equal(img.read(slice(0, 1100), slice(0, 700)), data)


def test_an_existing_file_is_not_replaced(tmp_path):
    target = tmp_path / "keep.ome.zarr"
    target.write_text("precious")
    with pytest.raises(InputError, match="not a Zarr folder"):
        OmeZarrWriter(target, (64, 64), 1, np.uint8)
    assert target.read_text() == "precious"
