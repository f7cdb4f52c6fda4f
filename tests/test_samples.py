"""The sample gallery: synthetic samples without data, public datasets when present."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.samples import find_data_dir, list_samples, load_sample

SYNTHETIC = ["synthetic-grains", "synthetic-nuclei-series"]
PUBLIC = [
    "nist-steel",
    "tbm-18",
    "tbm-tile-18-256-256",
    "dsb-sample",
    "bbbc007",
    "gowt1-series",
    "sim-plus-series",
    "cancer-cell-migration",
]


def test_without_data_only_synthetic_samples(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MICROSEG_DATA", str(tmp_path / "missing"))
    assert find_data_dir(tmp_path / "missing") is None
    samples = list_samples(tmp_path / "missing")
    assert [s.key for s in samples] == SYNTHETIC
    for s in samples:
        assert s.synthetic and s.path is None
        assert s.task in ("grains", "nuclei")
        assert s.title and s.description and s.source and s.licence


def test_synthetic_grains_load_with_ground_truth(tmp_path) -> None:
    loaded = load_sample("synthetic-grains", data_dir=tmp_path)
    img = loaded.image
    assert isinstance(img, MicroImage)
    assert img.data.shape == (1, 1, 1, 512, 512) and img.dtype == np.uint8
    assert img.pixel_size_um == 0.5
    labels, bound = loaded.ground_truth["labels"], loaded.ground_truth["boundaries"]
    assert labels.shape == bound.shape == (512, 512) and bound.dtype == bool
    np.testing.assert_array_equal(labels == 0, bound)
    assert labels.max() > 100
    assert loaded.strokes is None and loaded.sample.task == "grains"
    # cached and protected: the second load is the same arrays, read-only
    again = load_sample("synthetic-grains", data_dir=tmp_path)
    assert np.shares_memory(again.image.data, img.data)
    with pytest.raises(ValueError):
        labels[0, 0] = 7


def test_synthetic_nuclei_series_load(tmp_path) -> None:
    loaded = load_sample("synthetic-nuclei-series", data_dir=tmp_path)
    img = loaded.image
    assert img.n_frames == 170 and img.shape_yx == (256, 256) and img.dtype == np.uint16
    assert img.pixel_size_um == pytest.approx(0.65)
    gt = loaded.ground_truth
    assert gt["labels"].shape == (170, 256, 256)
    np.testing.assert_array_equal(gt["labels_frames"], np.arange(170))
    tracks = gt["tracks"]
    assert tracks.shape[1] == 4 and tracks.dtype == np.int64
    # every label in a frame is a track alive in that frame
    t = 100
    alive = tracks[(tracks[:, 1] <= t) & (tracks[:, 2] >= t), 0]
    ids = np.unique(gt["labels"][t])
    np.testing.assert_array_equal(ids[ids > 0], np.sort(alive))
    assert loaded.sample.task == "nuclei"


def test_unknown_sample_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(InputError, match="synthetic-grains"):
        load_sample("no-such-sample", data_dir=tmp_path)


def test_data_folder_from_environment(tmp_path, monkeypatch) -> None:
    dsb = tmp_path / "nuclei" / "dsb_sample"
    dsb.mkdir(parents=True)
    image = (np.arange(64 * 64, dtype=np.uint16) % 251).reshape(64, 64)
    labels = np.zeros((64, 64), np.uint16)
    labels[10:20, 10:20] = 3
    tifffile.imwrite(dsb / "image.tif", image)
    tifffile.imwrite(dsb / "labels.tif", labels)
    monkeypatch.setenv("MICROSEG_DATA", str(tmp_path))
    assert find_data_dir() == tmp_path
    keys = [s.key for s in list_samples()]
    assert keys == SYNTHETIC + ["dsb-sample"]
    loaded = load_sample("dsb-sample")
    np.testing.assert_array_equal(loaded.image.frame(), image)
    np.testing.assert_array_equal(loaded.ground_truth["labels"], labels)
    assert loaded.strokes is None
    assert "Caicedo" in loaded.sample.citation


@pytest.mark.data
def test_public_samples_listed_with_source_and_licence(shared_data) -> None:
    samples = {s.key: s for s in list_samples(shared_data)}
    assert list(samples) == SYNTHETIC + PUBLIC
    for key in PUBLIC:
        s = samples[key]
        assert not s.synthetic and s.path is not None and s.path.is_dir()
        assert s.source and s.licence and s.citation


@pytest.mark.data
def test_nist_steel_has_pixel_size_boundaries_and_strokes(shared_data) -> None:
    loaded = load_sample("nist-steel", shared_data)
    assert loaded.image.pixel_size_um == pytest.approx(0.2252)
    assert loaded.image.shape_yx == (600, 800)
    bound = loaded.ground_truth["boundaries"]
    assert bound.dtype == bool and bound.shape == (600, 800) and 0.01 < bound.mean() < 0.3
    assert loaded.ground_truth["labels"].max() == 239
    assert loaded.strokes.shape == (600, 800) and set(np.unique(loaded.strokes)) == {0, 1, 2}


@pytest.mark.data
def test_tbm_samples(shared_data) -> None:
    full = load_sample("tbm-18", shared_data)
    assert full.image.n_channels == 3 and full.ground_truth == {}
    tile = load_sample("tbm-tile-18-256-256", shared_data)
    assert tile.image.shape_yx == (256, 256) and tile.image.n_channels == 3
    assert tile.ground_truth["boundaries"].dtype == bool
    assert 0 < tile.ground_truth["boundaries"].mean() < 0.5
    assert tile.strokes.shape == (256, 256) and tile.strokes.max() == 2
    # the tile is a crop of the full image (re-encoded, about one grey level off)
    crop = full.image.data[0, 0, :, 256:512, 256:512].astype(int)
    assert np.abs(crop - tile.image.data[0, 0].astype(int)).mean() < 3


@pytest.mark.data
def test_nuclei_stills(shared_data) -> None:
    dsb = load_sample("dsb-sample", shared_data)
    assert dsb.image.shape_yx == (512, 512)
    assert len(np.unique(dsb.ground_truth["labels"])) - 1 == 125
    assert dsb.strokes.shape == (512, 512)
    bbbc = load_sample("bbbc007", shared_data)
    assert bbbc.image.shape_yx == (340, 340)
    assert 1 <= bbbc.ground_truth["sparse_labels"].max() <= 12


@pytest.mark.data
def test_ctc_series(shared_data) -> None:
    gowt1 = load_sample("gowt1-series", shared_data)
    assert gowt1.image.n_frames == 92 and gowt1.image.shape_yx == (1024, 1024)
    assert gowt1.image.pixel_size_um == pytest.approx(0.24, abs=0.002)
    np.testing.assert_array_equal(gowt1.ground_truth["labels_frames"], [21, 31, 33, 39])
    assert gowt1.ground_truth["labels"].shape == (4, 1024, 1024)
    assert gowt1.ground_truth["tracks"].shape[1] == 4
    painted = np.flatnonzero(gowt1.strokes.any(axis=(1, 2)))
    np.testing.assert_array_equal(painted, [21, 31, 33, 39])

    sim = load_sample("sim-plus-series", shared_data)
    assert sim.image.n_frames == 65 and sim.image.shape_yx == (690, 628)
    assert sim.ground_truth["labels"].shape == (65, 690, 628)
    tracks = sim.ground_truth["tracks"]
    assert (tracks[:, 3] > 0).any()  # divisions
    assert tracks[:, 2].max() == 64
    assert np.flatnonzero(sim.strokes.any(axis=(1, 2))).tolist() == [0]


@pytest.mark.data
def test_cancer_cell_migration_is_a_time_series(shared_data) -> None:
    loaded = load_sample("cancer-cell-migration", shared_data)
    assert loaded.image.n_frames == 48 and loaded.image.shape_yx == (130, 130)
    assert loaded.ground_truth == {} and loaded.strokes is None
