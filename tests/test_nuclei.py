"""The nuclei pipeline (:mod:`microseg.nuclei`): frames -> instances -> measurements -> tracks."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.nuclei import (
    FIRST_COLUMNS,
    FrameMeasurer,
    FrameSegmenter,
    empty_objects,
    frame_table,
    order_columns,
    run_nuclei,
    segment_image,
)
from microseg.segmenter import load_segmenter
from tests.nuclei_fixtures import PIXEL_SIZE, pooled_ap, small_series, train_rf_model

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A 6-frame series, its ground truth and a random forest trained on two frames."""
    series = small_series()
    model = load_segmenter(train_rf_model(tmp_path_factory.mktemp("nuclei_pipeline"), series))
    image = MicroImage.from_array(series.frames, "TYX", pixel_size_um=PIXEL_SIZE)
    return {"series": series, "model": model, "image": image}


@pytest.fixture(scope="module")
def tracked(work):
    """The whole pipeline with tracking on the series (run once for several tests)."""
    return run_nuclei(
        work["image"], FrameSegmenter(work["model"]), FrameMeasurer(PIXEL_SIZE), track=True
    )


def test_series_labels_find_the_nuclei(work, tracked):
    truth = work["series"].labels
    assert tracked.labels.shape == (truth.shape[0], 1, *truth.shape[1:])
    labels = tracked.labels[:, 0]
    # the model separates the synthetic nuclei: pooled AP@0.5 over all frames
    assert pooled_ap(labels, truth) > 0.8
    counts = np.array([len(np.unique(f[f > 0])) for f in labels])
    assert np.all(np.abs(counts - work["series"].counts) <= 2)
    assert not tracked.stopped


def test_object_and_frame_tables(tracked):
    objects, frames = tracked.objects, tracked.frames
    assert list(objects.columns[: len(FIRST_COLUMNS)]) == FIRST_COLUMNS
    np.testing.assert_allclose(objects["area_um2"], objects["area_px"] * PIXEL_SIZE**2, rtol=1e-4)
    assert list(frames["frame"]) == list(range(tracked.labels.shape[0]))
    np.testing.assert_array_equal(frames["count"], objects.groupby("frame").size())
    for t, frame in enumerate(tracked.labels[:, 0]):
        rows = objects[objects["frame"] == t]
        area = np.bincount(frame.ravel())
        np.testing.assert_array_equal(rows["area_px"].to_numpy(), area[rows["label"].to_numpy()])


def test_tracks_keep_a_nucleus_id_over_frames(tracked):
    labels = tracked.labels[:, 0]
    tracks = tracked.tracks
    assert list(tracks.columns[:4]) == ["track_id", "frame", "label", "parent_track_id"]
    assert (tracks["label"] == tracks["track_id"]).all()
    assert (tracked.objects["label"] == tracked.objects["track_id"]).all()
    # label = track id: a nucleus keeps its id from one frame to the next
    kept = total = 0
    for t in range(labels.shape[0] - 1):
        a, b = labels[t].astype(np.int64), labels[t + 1].astype(np.int64)
        for lab in np.unique(a[a > 0]):
            overlap = np.bincount(b[a == lab], minlength=2)
            overlap[0] = 0
            if overlap.max() > 0.5 * (a == lab).sum():
                total += 1
                kept += int(np.argmax(overlap) == lab)
    assert total > 10 and kept / total > 0.9
    parents = set(tracks.loc[tracks["parent_track_id"] > 0, "parent_track_id"])
    assert parents <= set(tracks["track_id"])
    assert sorted(tracked.track_summary["track_id"]) == sorted(tracks["track_id"].unique())
    assert tracked.track_params and tracked.track_params["max_distance_px"] > 0


def test_z_stack_is_segmented_slice_by_slice(work):
    frames = work["series"].frames[:2]
    image = MicroImage.from_array(frames, "ZYX")
    run = run_nuclei(image, FrameSegmenter(work["model"]), FrameMeasurer(), track=True)
    assert run.labels.shape == (1, 2, *frames.shape[1:])
    assert list(run.objects.columns[:3]) == ["frame", "z", "label"]
    assert run.objects["area_um2"].isna().all()  # no pixel size
    for z in range(2):
        lab = run.labels[0, z]
        rows = run.objects[run.objects["z"] == z]
        assert sorted(rows["label"]) == sorted(np.unique(lab[lab > 0]).tolist())
    # one frame per slice: every nucleus its own track, ids unique over both slices
    assert run.tracks["track_id"].is_unique
    assert list(run.tracks.columns[:3]) == ["track_id", "frame", "z"]
    assert list(run.frames["z"]) == [0, 1]


def test_stop_keeps_the_finished_frames(work):
    stop = threading.Event()
    run = run_nuclei(
        work["image"],
        FrameSegmenter(work["model"]),
        FrameMeasurer(PIXEL_SIZE),
        progress=lambda msg: stop.set(),
        stop=stop,
    )
    done = len(run.frames)
    assert run.stopped and 1 <= done < work["image"].n_frames
    assert run.labels[:done].any() and not run.labels[done:].any()
    assert set(run.objects["frame"]) == set(range(done))


def test_segmenter_and_measurer_survive_pickling(work):
    """Dask sends them to its workers."""
    seg = FrameSegmenter(work["model"], min_area_px=20, split_touching=False)
    meas = FrameMeasurer(PIXEL_SIZE)
    frame = work["series"].frames[1]
    seg2, meas2 = pickle.loads(pickle.dumps((seg, meas)))
    labels = seg(frame)
    np.testing.assert_array_equal(seg2(frame), labels)
    pd.testing.assert_frame_equal(meas2(labels, frame), meas(labels, frame))
    assert seg2.settings() == {
        "channel": None,
        "min_area_px": 20,
        "split_touching": False,
        "test_time_augmentation": False,
        "object_diameter_px": None,  # "auto" without a training size to rescale to
        "model_object_diameter_px": None,
        "instance_settings": {"threshold": 0.5, "h_fraction": 0.15},
    }


def test_without_splitting_one_object_per_foreground_region(work):
    frame = work["series"].frames[2]
    split = FrameSegmenter(work["model"])(frame)
    whole = FrameSegmenter(work["model"], split_touching=False)(frame)
    n_whole = len(np.unique(whole[whole > 0]))
    _, n_regions = ndi.label(whole > 0, structure=np.ones((3, 3)))
    assert n_whole == n_regions
    assert n_whole <= len(np.unique(split[split > 0]))


def test_channel_picks_the_model_input(work):
    frame = work["series"].frames[0]
    two = np.stack([np.zeros_like(frame), frame])
    np.testing.assert_array_equal(FrameSegmenter(work["model"], channel=1).model_input(two), frame)
    assert FrameSegmenter(work["model"]).model_input(two).shape == two.shape
    with pytest.raises(InputError, match="Channel 5 does not exist"):
        FrameSegmenter(work["model"], channel=5).model_input(two)


def test_tables_without_objects_and_frame_summary():
    empty = empty_objects()
    assert list(empty.columns) == FIRST_COLUMNS and len(empty) == 0
    table = pd.DataFrame(
        {
            "label": [1, 2, 1],
            "extra": [0.1, 0.2, 0.3],
            "area_px": [10.0, 30.0, 50.0],
            "frame": [0, 0, 2],
            "mean_intensity": [1.0, 3.0, 5.0],
        }
    )
    ordered = order_columns(table)
    first = ["frame", "label", "area_px", "area_um2", "mean_intensity"]
    assert list(ordered.columns) == [*first, "extra"]
    assert ordered["area_um2"].isna().all()
    frames = frame_table(ordered, range(4))
    assert frames["frame"].tolist() == [0, 1, 2, 3]
    assert frames["count"].tolist() == [2, 0, 1, 0]
    assert frames["total_area_px"].tolist() == [40.0, 0.0, 50.0, 0.0]
    np.testing.assert_allclose(frames["mean_area_px"], [20.0, np.nan, 50.0, np.nan])
    np.testing.assert_allclose(frames["mean_intensity"], [2.0, np.nan, 5.0, np.nan])


def _cut_in_frame_one(frame: np.ndarray) -> np.ndarray:
    """Labels the bright disc; cuts it in halves when the frame is marked (value 201)."""
    lab = ndi.label(frame > 100)[0].astype(np.uint16)
    if frame.max() == 201:
        lab[(lab == 1) & (np.arange(frame.shape[1])[None, :] >= 32)] = 2
    return lab


def test_segment_image_fixes_a_one_frame_split_from_its_neighbours():
    yy, xx = np.mgrid[:64, :64]
    disc = ((yy - 32) ** 2 + (xx - 32) ** 2 < 12**2).astype(np.uint16) * 200
    stack = np.stack([disc, disc, disc, disc])
    stack[1][disc > 0] = 201
    image = MicroImage.from_array(stack, axes="TYX", name="disc")
    fixed = segment_image(image, _cut_in_frame_one, FrameMeasurer())
    assert fixed.frames["count"].tolist() == [1, 1, 1, 1]
    assert fixed.params["temporal"] == {
        "merged_fragments": 1,
        "split_merges": 0,
        "frames_changed": 1,
    }
    row = fixed.tables[fixed.tables["frame"] == 1].iloc[0]
    assert row["area_px"] == (disc > 0).sum()
    raw = segment_image(image, _cut_in_frame_one, FrameMeasurer(), temporal=False)
    assert raw.frames["count"].tolist() == [1, 2, 1, 1]
    assert "temporal" not in raw.params


def test_frame_segmenter_rescales_to_a_given_nucleus_diameter():
    from microseg.zoo import load_builtin

    model = load_builtin("nuclei")
    yy, xx = np.mgrid[:96, :96]
    frame = (((yy - 48) ** 2 + (xx - 48) ** 2 < 20**2) * 900 + 100).astype(np.uint16)
    seg = FrameSegmenter(model, object_diameter_px=40.0)
    want = model.predict_proba(frame, object_diameter_px=40.0)
    np.testing.assert_allclose(seg.probabilities(frame), want, atol=1e-6)
    assert not np.allclose(want, model.predict_proba(frame), atol=1e-3)
    assert seg.settings()["object_diameter_px"] == 40.0
    assert seg.settings()["model_object_diameter_px"] == model.metadata["object_diameter_px"]
    assert FrameSegmenter(model, object_diameter_px="auto").settings()["object_diameter_px"] == (
        "auto"
    )
    for bad in (0, -3, "wide", float("nan")):
        with pytest.raises(InputError, match="positive number of pixels"):
            FrameSegmenter(model, object_diameter_px=bad)


def test_rescaling_needs_a_model_that_records_its_object_size(work):
    with pytest.raises(InputError, match="records no training object size"):
        FrameSegmenter(work["model"], object_diameter_px=30.0)


def test_threshold_defaults_to_the_models_and_can_be_overridden(work):
    from microseg.zoo import load_builtin

    builtin = load_builtin("nuclei")
    recorded = builtin.metadata["instances"]["threshold"]
    assert FrameSegmenter(builtin).settings()["instance_settings"]["threshold"] == recorded
    seg = FrameSegmenter(work["model"], threshold=0.7)
    assert seg.settings()["instance_settings"]["threshold"] == 0.7
    frame = work["series"].frames[0]
    proba = seg.probabilities(frame)
    loose = FrameSegmenter(work["model"], threshold=0.3).instances(proba)
    tight = seg.instances(proba)
    assert (loose > 0).sum() > (tight > 0).sum()  # a higher threshold gives smaller nuclei
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(InputError, match="between 0 and 1"):
            FrameSegmenter(work["model"], threshold=bad)


def test_split_depth_decides_whether_a_shallow_neck_is_cut(work):
    # one nucleus-shaped blob: two lobes of radius 12 joined by a neck 4 px narrower
    y, x = np.mgrid[:60, :90]
    blob = (
        (np.hypot(y - 30, x - 30) <= 12)
        | (np.hypot(y - 30, x - 58) <= 12)
        | ((np.abs(y - 30) <= 8) & (x > 30) & (x < 58))
    )
    k = len(work["model"].classes)
    proba = np.zeros((k, *blob.shape), np.float32)
    proba[1] = blob
    proba[0] = ~blob
    deep = FrameSegmenter(work["model"], h_fraction=0.05)
    shallow = FrameSegmenter(work["model"], h_fraction=0.5)
    assert deep.settings()["instance_settings"]["h_fraction"] == 0.05
    assert deep.instances(proba).max() == 2  # the neck is cut
    assert shallow.instances(proba).max() == 1  # one nucleus
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(InputError, match="split depth must lie between 0 and 1"):
            FrameSegmenter(work["model"], h_fraction=bad)
