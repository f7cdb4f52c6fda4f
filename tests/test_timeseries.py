"""Time-series engine: frame streaming, stopping, threads and a Dask cluster on loopback."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.timeseries import (
    iter_frames,
    normalize_frame,
    process_frame,
    process_series,
    process_series_dask,
    replace_frames,
)

T, H, W = 5, 48, 64


def make_stack() -> np.ndarray:
    """uint16 (T, Y, X): t + 1 discs on a dim background, brightness rising with t."""
    stack = np.full((T, H, W), 10, np.uint16)
    for t in range(T):
        for k in range(t + 1):
            rr, cc = disk((10 + 8 * k, 8 + 4 * t + 4 * k), 3.5, shape=(H, W))
            stack[t, rr, cc] = 200 + 50 * t
    return stack


def threshold_segment(frame: np.ndarray) -> np.ndarray:
    """Normalised frame above 0.5, connected components (a module-level callable)."""
    norm = normalize_frame(frame, 0.0, 100.0)[0]
    return ndi.label(norm > 0.5)[0].astype(np.uint16)


@pytest.fixture(scope="module")
def series() -> MicroImage:
    return MicroImage.from_array(make_stack(), axes="TYX", name="discs")


def test_iter_frames_streams_views(series):
    frames = list(iter_frames(series))
    assert [t for t, _ in frames] == list(range(T))
    t, f = frames[2]
    assert f.dtype == np.uint16 and f.shape == (H, W)
    assert np.shares_memory(f, series.data)  # no copy of the stack
    two = MicroImage.from_array(np.stack([make_stack(), 2 * make_stack()], 1), axes="TCYX")
    assert next(iter_frames(two))[1].shape == (2, H, W)
    assert np.array_equal(next(iter_frames(two, channel=1))[1], 2 * make_stack()[0])
    zs = MicroImage.from_array(np.stack([make_stack(), make_stack() + 5], 1), axes="TZYX")
    assert np.array_equal(dict(iter_frames(zs, z="max"))[3], make_stack()[3] + 5)
    with pytest.raises(InputError):
        next(iter_frames(two, channel=2))


def test_process_series_labels_tables_summary(series):
    calls = []
    res = process_series(series, threshold_segment, progress=lambda d, n: calls.append((d, n)))
    assert not res.stopped and res.n_done == T
    assert res.labels.shape == (T, H, W) and res.labels.dtype == np.uint16
    for t in range(T):
        assert np.array_equal(res.labels[t], threshold_segment(make_stack()[t]))
    assert calls == [(i + 1, T) for i in range(T)]
    assert list(res.tables.columns[:2]) == ["frame", "label"]
    assert res.tables.groupby("frame").size().tolist() == [t + 1 for t in range(T)]
    assert res.frames["count"].tolist() == [t + 1 for t in range(T)]
    assert np.allclose(res.frames["mean_intensity"], [200 + 50 * t for t in range(T)])
    one = res.tables[res.tables["frame"] == 0].iloc[0]
    mask = res.labels[0] == one["label"]
    assert one["area_px"] == mask.sum()
    assert one["y"] == pytest.approx(np.nonzero(mask)[0].mean())
    assert res.frames["mean_area_px"].iloc[0] == mask.sum()


def test_stop_keeps_finished_frames(series):
    stop = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 2:
            stop.set()

    res = process_series(series, threshold_segment, progress=progress, stop=stop)
    assert res.stopped and res.n_done == 2 and res.n_total == T
    assert res.labels.shape == (2, H, W)
    assert set(res.tables["frame"]) == {0, 1}
    assert res.frames["frame"].tolist() == [0, 1]
    assert np.array_equal(res.labels[1], threshold_segment(make_stack()[1]))
    # stopped with threads: frames already started finish, the rest never start
    stop.clear()
    longer = MicroImage.from_array(np.tile(make_stack(), (4, 1, 1)), axes="TYX")
    res2 = process_series(longer, threshold_segment, progress=progress, stop=stop, workers=2)
    assert res2.stopped and 2 <= res2.n_done <= 2 + 2 * 2 and res2.n_total == 4 * T
    assert res2.frames["frame"].tolist() == list(range(res2.n_done))


def test_threads_match_sequential_and_custom_measure(series):
    def measure(labels, frame):
        import pandas as pd

        ids = np.unique(labels[labels > 0])
        return pd.DataFrame({"label": ids, "max": ndi.maximum(frame, labels, ids)})

    a = process_series(series, threshold_segment, measure)
    b = process_series(series, threshold_segment, measure, workers=2)
    assert np.array_equal(a.labels, b.labels)
    assert a.tables.equals(b.tables)
    assert a.tables["max"].tolist()[-1] == 200 + 50 * (T - 1)


def test_wide_labels_and_bad_output(series):
    def many(frame):
        out = np.zeros(frame.shape, np.uint32)
        out[0, 0] = 70000
        return out

    res = process_series(series, many)
    assert res.labels.dtype == np.uint32 and res.labels[3, 0, 0] == 70000
    with pytest.raises(ValueError):
        process_frame(make_stack()[0], lambda f: np.zeros((3, 3), np.uint16))


def test_dask_local_cluster_matches_sequential(series, tmp_path):
    import tifffile

    seq = process_series(series, threshold_segment)
    dsk = process_series_dask(series, threshold_segment, n_workers=2)
    assert dsk.n_done == T and not dsk.stopped
    assert np.array_equal(seq.labels, dsk.labels)
    assert seq.tables.equals(dsk.tables)
    # per-frame files read on the workers give the same labels
    paths = []
    for t, frame in enumerate(make_stack()):
        paths.append(tmp_path / f"t{t:03d}.tif")
        tifffile.imwrite(paths[-1], frame)
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        from_files = process_series_dask(
            paths, threshold_segment, scheduler_address=cluster.scheduler_address
        )
    assert np.array_equal(seq.labels, from_files.labels)


def test_replace_frames_measures_only_the_changed_frames(series):
    res = process_series(series, threshold_segment)
    labels = res.labels.copy()
    labels[2][labels[2] == 3] = 0  # drop one object of frame 2
    out = replace_frames(res, labels, [2], series)
    assert out.n_done == res.n_done and out.labels is labels
    assert out.frames["count"].tolist() == [1, 2, 2, 4, 5]
    assert out.tables.groupby("frame").size().tolist() == [1, 2, 2, 4, 5]
    assert list(out.tables["frame"]) == sorted(out.tables["frame"])
    kept = res.tables[res.tables["frame"] != 2].reset_index(drop=True)
    again = out.tables[out.tables["frame"] != 2].reset_index(drop=True)
    assert kept.equals(again)
    assert res.frames["count"].tolist()[2] == 3  # the original result is untouched
    with pytest.raises(InputError):
        replace_frames(res, labels[:2], [1], series)
