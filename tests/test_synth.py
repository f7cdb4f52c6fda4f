"""Synthetic samples: ground truth is self-consistent, images look like micrographs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.measure import label as cc_label
from skimage.measure import regionprops

from microseg import __version__
from microseg.errors import InputError
from microseg.synth import (
    SAMPLE_FILES,
    GrainSample,
    NucleiSeries,
    synth_grains,
    synth_nuclei_series,
    write_sample,
)

BIG = 1 << 30


@pytest.fixture(scope="module")
def grains() -> GrainSample:
    return synth_grains((192, 192), 25, seed=3)


@pytest.fixture(scope="module")
def series() -> NucleiSeries:
    return synth_nuclei_series(n_frames=50, shape=(192, 192), seed=2)


def _pairs(labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest nonzero label in each pixel's ``size`` neighbourhood (Y, X axes)."""
    fp = np.ones((1,) * (labels.ndim - 2) + (size, size), bool)
    lab = labels.astype(np.int64)
    lo = ndi.minimum_filter(np.where(lab > 0, lab, BIG), footprint=fp)
    hi = ndi.maximum_filter(lab, footprint=fp)
    return lo, hi


def _touching(labels: np.ndarray) -> np.ndarray:
    """Per frame (or image): number of 4-neighbour pixel pairs with different nonzero labels."""
    counts = 0
    for axis in (-1, -2):
        a = np.moveaxis(labels, axis, 0)
        diff = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        counts = counts + np.moveaxis(diff, 0, axis).sum(axis=(-1, -2))
    return counts


def _presence(labels: np.ndarray, n_ids: int) -> np.ndarray:
    """(T, n_ids + 1) pixel count of each label in each frame."""
    return np.stack([np.bincount(f.ravel(), minlength=n_ids + 1) for f in labels])


# ----------------------------------------------------------------------------- grains


def test_grain_labels_cover_everything_but_boundaries(grains: GrainSample) -> None:
    assert grains.image.shape == grains.labels.shape == (192, 192)
    assert grains.image.dtype == np.uint8 and grains.labels.dtype == np.uint16
    np.testing.assert_array_equal(grains.labels > 0, ~grains.boundaries)
    assert 0.05 < grains.boundaries.mean() < 0.25


def test_grains_numbered_connected_and_separated(grains: GrainSample) -> None:
    n = grains.n_grains
    np.testing.assert_array_equal(np.unique(grains.labels), np.arange(n + 1))
    assert 15 <= n <= 45
    comps = cc_label(grains.labels > 0, connectivity=2)
    # one 8-connected component per grain, and each component holds one grain id
    assert comps.max() == n
    pairs = np.unique(np.stack([comps.ravel(), grains.labels.ravel()]), axis=1)
    assert pairs.shape[1] == n + 1
    assert _touching(grains.labels) == 0


def test_grain_boundaries_lie_between_two_grains_and_are_thin(grains: GrainSample) -> None:
    lo, hi = _pairs(grains.labels, 5)
    between = (lo < BIG) & (hi > lo)
    assert between[grains.boundaries].mean() > 0.97
    core = ndi.binary_erosion(grains.boundaries, np.ones((3, 3), bool))
    assert core.sum() < 0.05 * grains.boundaries.sum()


def test_grain_boundary_contrast_varies_and_some_are_faint() -> None:
    g = synth_grains((256, 256), 40, seed=5)
    lo, hi = _pairs(g.labels, 5)
    on = g.boundaries & (lo < BIG) & (hi > lo)
    n = int(g.labels.max()) + 1
    img = g.image.astype(float)
    lab = g.labels.astype(np.int64)
    grain_mean = np.bincount(lab.ravel(), img.ravel(), n) / np.maximum(np.bincount(lab.ravel()), 1)
    keys, inv, cnt = np.unique(lo[on] * n + hi[on], return_inverse=True, return_counts=True)
    line_mean = np.bincount(inv, img[on]) / cnt
    ref = np.minimum(grain_mean[keys // n], grain_mean[keys % n])
    contrast = (1 - line_mean / ref)[cnt >= 10]
    assert len(contrast) > 30
    assert (contrast < 0.06).mean() > 0.08  # nearly invisible boundaries
    assert (contrast > 0.2).mean() > 0.3  # clearly dark ones
    assert img[g.boundaries].mean() < img[~g.boundaries].mean() - 10


def test_grain_image_has_uneven_illumination_and_noise(grains: GrainSample) -> None:
    img = grains.image.astype(float)
    smooth = ndi.median_filter(img, 9)
    quarters = [smooth[:96, :96], smooth[:96, 96:], smooth[96:, :96], smooth[96:, 96:]]
    means = [np.median(q) for q in quarters]
    assert max(means) - min(means) > 4
    assert np.std(img - ndi.gaussian_filter(img, 2)) > 2


def test_grains_deterministic_and_seeded() -> None:
    a = synth_grains((96, 96), 10, seed=7)
    b = synth_grains((96, 96), 10, seed=7)
    c = synth_grains((96, 96), 10, seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_grains_elongation_stretches_along_x() -> None:
    g = synth_grains((192, 192), 30, seed=1, elongation=2.5)
    props = [p for p in regionprops(g.labels) if p.area > 100]
    widths = np.array([p.bbox[3] - p.bbox[1] for p in props])
    heights = np.array([p.bbox[2] - p.bbox[0] for p in props])
    assert np.median(widths / heights) > 1.4


def test_grains_reject_bad_arguments() -> None:
    with pytest.raises(InputError):
        synth_grains((8, 8))
    with pytest.raises(InputError):
        synth_grains((64, 64), n_grains=1)


# ----------------------------------------------------------------------------- nuclei


def test_series_shapes_and_types(series: NucleiSeries) -> None:
    assert series.frames.shape == series.labels.shape == (50, 192, 192)
    assert series.frames.dtype == np.uint16 and series.labels.dtype == np.uint16
    assert series.tracks.dtype.names == (
        "track_id",
        "start_frame",
        "end_frame",
        "parent_track_id",
    )
    np.testing.assert_array_equal(series.tracks["track_id"], np.arange(1, len(series.tracks) + 1))


def test_series_labels_match_track_table(series: NucleiSeries) -> None:
    tr = series.tracks
    present = _presence(series.labels, len(tr)) > 0
    frames = np.arange(series.labels.shape[0])[:, None]
    expected = (frames >= tr["start_frame"]) & (frames <= tr["end_frame"])
    np.testing.assert_array_equal(present[:, 1:], expected)
    assert int(series.labels.max()) <= len(tr)


def test_series_divisions_are_consistent(series: NucleiSeries) -> None:
    tr = series.tracks
    kids = tr[tr["parent_track_id"] > 0]
    assert len(kids) >= 2
    by_id = {int(r["track_id"]): r for r in tr}
    parents, n_kids = np.unique(kids["parent_track_id"], return_counts=True)
    assert (n_kids <= 2).all()
    for kid in kids:
        parent = by_id[int(kid["parent_track_id"])]
        assert parent["end_frame"] == kid["start_frame"] - 1
    for p in parents:
        pair = kids[kids["parent_track_id"] == p]
        if len(pair) < 2:
            continue
        t = int(pair["start_frame"][0])
        c = [np.argwhere(series.labels[t] == k).mean(0) for k in pair["track_id"]]
        assert np.linalg.norm(c[0] - c[1]) < 30  # daughters appear side by side


def test_series_has_touching_nuclei_and_stable_count(series: NucleiSeries) -> None:
    touching = _touching(series.labels)
    assert (touching > 0).mean() > 0.5
    counts = series.counts
    assert counts.min() >= 0.7 * counts.max()
    areas = np.bincount(series.labels[0].ravel())[1:]
    areas = areas[areas > 0]
    assert 100 < np.median(areas) < 600


def test_series_brightness_drifts_and_nuclei_are_brighter(series: NucleiSeries) -> None:
    means = series.frames.reshape(len(series.frames), -1).mean(1)
    first, middle = means[:3].mean(), means[24:27].mean()
    assert abs(first - middle) / min(first, middle) > 0.2
    for t in (0, 25, 49):
        f, lab = series.frames[t].astype(float), series.labels[t]
        assert f[lab > 0].mean() > f[lab == 0].mean() * 1.2


def test_series_deterministic() -> None:
    a = synth_nuclei_series(n_frames=6, shape=(64, 64), seed=4)
    b = synth_nuclei_series(n_frames=6, shape=(64, 64), seed=4)
    c = synth_nuclei_series(n_frames=6, shape=(64, 64), seed=5)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.tracks, b.tracks)
    assert not np.array_equal(a.frames, c.frames)


def test_series_rejects_bad_arguments() -> None:
    with pytest.raises(InputError):
        synth_nuclei_series(n_frames=0)
    with pytest.raises(InputError):
        synth_nuclei_series(n_frames=2, shape=(16, 16))


# ----------------------------------------------------------------------------- files


def _pixel_size(path) -> float:
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["unit"] == "um"
        return 1.0 / tif.pages[0].get_resolution()[0]


def test_write_grains_round_trip(tmp_path) -> None:
    paths = write_sample("grains", tmp_path / "g", seed=1)
    assert sorted(p.name for p in paths.values()) == sorted(SAMPLE_FILES["grains"])
    image = tifffile.imread(paths["image"])
    labels = tifffile.imread(paths["grain_labels"])
    bound = tifffile.imread(paths["boundaries"])
    truth = json.loads(paths["truth"].read_text())
    assert image.shape == labels.shape == bound.shape == (512, 512)
    assert image.dtype == np.uint8 and labels.dtype == np.uint16 and bound.dtype == np.uint8
    assert set(np.unique(bound)) == {0, 255}
    np.testing.assert_array_equal(bound == 255, labels == 0)
    assert truth["n_grains"] == labels.max() == len(np.unique(labels)) - 1
    assert 120 <= truth["n_grains"] <= 200
    assert truth["seed"] == 1 and truth["microseg_version"] == __version__
    assert _pixel_size(paths["image"]) == pytest.approx(truth["pixel_size_um"], rel=1e-4)
    np.testing.assert_array_equal(image, synth_grains(seed=1).image)


def test_write_nuclei_series_round_trip_full_size(tmp_path) -> None:
    paths = write_sample("nuclei-series", tmp_path / "n", seed=0)
    assert sorted(p.name for p in paths.values()) == sorted(SAMPLE_FILES["nuclei-series"])
    with tifffile.TiffFile(paths["image"]) as tif:
        assert tif.series[0].axes == "TYX"
        frames = tif.asarray()
    labels = tifffile.imread(paths["labels"])
    truth = json.loads(paths["truth"].read_text())
    tracks = np.loadtxt(paths["man_track"], dtype=np.int64, ndmin=2)
    assert frames.shape == labels.shape == (170, 256, 256)
    assert frames.dtype == np.uint16 and labels.dtype == np.uint16
    assert _pixel_size(paths["image"]) == pytest.approx(truth["pixel_size_um"], rel=1e-4)
    assert _pixel_size(paths["labels"]) == pytest.approx(truth["pixel_size_um"], rel=1e-4)
    assert truth["n_tracks"] == len(tracks) and truth["n_frames"] == 170

    present = _presence(labels, len(tracks)) > 0
    t = np.arange(170)[:, None]
    np.testing.assert_array_equal(present[:, 1:], (t >= tracks[:, 1]) & (t <= tracks[:, 2]))
    counts = present[:, 1:].sum(1)
    np.testing.assert_array_equal(counts, truth["nuclei_per_frame"])
    assert 30 <= counts.min() and counts.max() <= 50

    parents = set(tracks[tracks[:, 3] > 0, 3])
    assert len(parents) >= 3  # several divisions
    exits = [r for r in tracks if r[2] < 169 and r[0] not in parents]
    assert exits  # nuclei leave the field
    # the excitation drift spans a wide range (camera offset removed)
    signal = frames.reshape(170, -1).mean(1) - np.percentile(frames[:, :8, :8], 1)
    assert signal.max() / signal.min() > 2.0
    assert (_touching(labels) > 0).all()


def test_write_sample_rejects_unknown_kind(tmp_path) -> None:
    with pytest.raises(InputError, match="grains"):
        write_sample("cells", tmp_path)
