"""``microseg nuclei``: labels, object/frame tables, tracks and provenance (GUIDE §2)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from microseg.cli import main
from microseg.io import read_provenance
from microseg.modelfile import file_hash
from microseg.nuclei import FIRST_COLUMNS
from tests.nuclei_fixtures import PIXEL_SIZE, pooled_ap, small_series, train_rf_model, write_series

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A 6-frame series, its ground truth and a random forest trained on two frames."""
    folder = tmp_path_factory.mktemp("nuclei_cmd")
    series = small_series()
    return {
        "dir": folder,
        "series": series,
        "image": write_series(folder, series),
        "model": train_rf_model(folder, series),
    }


@pytest.fixture(scope="module")
def tracked(work):
    """Outputs of ``microseg nuclei --track`` on the series (run once for several tests)."""
    out = work["dir"] / "out_tracked"
    rc = main(
        ["nuclei", "--model", str(work["model"]), "--out", str(out), "--track", str(work["image"])]
    )
    assert rc == 0
    return out


def test_series_labels_keep_the_input_shape(work, tracked):
    labels = tifffile.imread(tracked / "series_labels.tif")
    truth = work["series"].labels
    assert labels.shape == truth.shape and labels.dtype == np.uint16
    counts = np.array([len(np.unique(f[f > 0])) for f in labels])
    assert np.all(np.abs(counts - work["series"].counts) <= 2)


def test_objects_table_matches_label_image(tracked):
    labels = tifffile.imread(tracked / "series_labels.tif")
    objects = pd.read_csv(tracked / "series_objects.csv")
    assert list(objects.columns[: len(FIRST_COLUMNS)]) == FIRST_COLUMNS
    assert {"eccentricity", "solidity", "equivalent_diameter_um"} <= set(objects.columns)
    assert not objects.duplicated(["frame", "label"]).any()  # ids unique per frame
    assert sorted(objects["frame"].unique()) == list(range(labels.shape[0]))
    for t, frame in enumerate(labels):
        rows = objects[objects["frame"] == t].set_index("label")
        area = np.bincount(frame.ravel())
        ids = np.flatnonzero(area)[1:] if area[0] else np.flatnonzero(area)
        assert sorted(rows.index) == sorted(ids.tolist())
        np.testing.assert_array_equal(rows.loc[ids, "area_px"].to_numpy(), area[ids])
        yy, xx = np.nonzero(frame == ids[0])
        assert rows.loc[ids[0], "y"] == pytest.approx(yy.mean())
        assert rows.loc[ids[0], "x"] == pytest.approx(xx.mean())
    # pixel size from the TIFF metadata
    np.testing.assert_allclose(objects["area_um2"], objects["area_px"] * PIXEL_SIZE**2, rtol=1e-4)
    edge = objects[objects["touches_border"]]
    for _, row in edge.head(3).iterrows():
        mask = labels[int(row["frame"])] == row["label"]
        assert mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()


def test_frames_table_and_tracks(work, tracked):
    labels = tifffile.imread(tracked / "series_labels.tif")
    objects = pd.read_csv(tracked / "series_objects.csv")
    frames = pd.read_csv(tracked / "series_frames.csv")
    assert list(frames["frame"]) == list(range(labels.shape[0]))
    np.testing.assert_array_equal(frames["count"], objects.groupby("frame").size())
    assert {"mean_area_px", "mean_area_um2", "mean_intensity"} <= set(frames.columns)

    tracks = pd.read_csv(tracked / "series_tracks.csv")
    assert list(tracks.columns[:4]) == ["track_id", "frame", "label", "parent_track_id"]
    assert (tracks["label"] == tracks["track_id"]).all()
    assert len(tracks) == len(objects)
    # the label image holds the track ids of the tracks table
    for t in range(labels.shape[0]):
        ids = np.unique(labels[t][labels[t] > 0]).tolist()
        assert sorted(tracks.loc[tracks["frame"] == t, "track_id"]) == ids
    for name in (
        "series_track_summary.csv",
        "series_tracks_trackmate.csv",
        "series_tracks_napari.csv",
    ):
        assert (tracked / name).is_file()


def test_provenance_sidecars(work, tracked):
    sha = file_hash(work["model"])
    for name in ("series_objects", "series_frames", "series_tracks"):
        side = json.loads((tracked / f"{name}.json").read_text())
        assert side["microseg_version"]
        assert side["model_sha256"] == sha
        assert side["parameters"]["pixel_size_um"] == pytest.approx(PIXEL_SIZE)
        assert side["parameters"]["track"] is True
        assert side["parameters"]["temporal_consistency"] is True
    prov = read_provenance(tracked / "series_labels.tif")
    assert prov["model_sha256"] == sha and prov["parameters"]["split_touching"] is True


def test_2d_image_without_and_with_pixel_size(work):
    frame = work["series"].frames[2]
    img8 = (255 * (frame - frame.min()) / np.ptp(frame)).astype(np.uint8)
    png = work["dir"] / "single.frame.png"
    Image.fromarray(img8).save(png)
    out = work["dir"] / "out_2d"
    assert main(["nuclei", "--model", str(work["model"]), "--out", str(out), str(png)]) == 0
    labels = tifffile.imread(out / "single.frame_labels.tif")
    assert labels.shape == frame.shape
    objects = pd.read_csv(out / "single.frame_objects.csv")
    assert (objects["frame"] == 0).all() and len(objects) >= 4
    assert objects["area_um2"].isna().all()  # empty without a pixel size
    assert not (out / "single.frame_tracks.csv").exists()
    assert len(pd.read_csv(out / "single.frame_frames.csv")) == 1

    assert (
        main(
            [
                "nuclei",
                "--model",
                str(work["model"]),
                "--out",
                str(out),
                "--pixel-size",
                "0.5",
                str(png),
            ]
        )
        == 0
    )
    objects = pd.read_csv(out / "single.frame_objects.csv")
    np.testing.assert_allclose(objects["area_um2"], objects["area_px"] * 0.25)


def test_channel_option(work, capsys):
    frame = work["series"].frames[0]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 4000, frame.shape).astype(np.uint16)
    two = work["dir"] / "two_channels.tif"
    tifffile.imwrite(two, np.stack([noise, frame]), imagej=True, metadata={"axes": "CYX"})
    out = work["dir"] / "out_channel"
    assert (
        main(
            ["nuclei", "--model", str(work["model"]), "--out", str(out), "--channel", "1", str(two)]
        )
        == 0
    )
    labels = tifffile.imread(out / "two_channels_labels.tif")
    assert labels.shape == frame.shape
    assert pooled_ap(labels[None], work["series"].labels[:1]) > 0.6
    objects = pd.read_csv(out / "two_channels_objects.csv")
    assert "mean_intensity_c1" in objects.columns  # intensities of every channel
    capsys.readouterr()
    rc = main(
        ["nuclei", "--model", str(work["model"]), "--out", str(out), "--channel", "5", str(two)]
    )
    assert rc == 2
    assert "--channel 5 does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"this is not a microscope image\n" * 20, b""])
def test_bad_file_exit_2_with_one_sentence(work, capsys, content):
    bad = work["dir"] / "broken.tif"
    bad.write_bytes(content)
    rc = main(["nuclei", "--model", str(work["model"]), "--out", str(work["dir"] / "o"), str(bad)])
    assert rc == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith("microseg: error: ") and err[0].endswith(".")
    assert "broken.tif" in err[0] and "Traceback" not in err[0]


def test_missing_model_and_builtin_exit_2(work, capsys):
    rc = main(
        [
            "nuclei",
            "--model",
            str(work["dir"] / "nope.safetensors"),
            "--out",
            str(work["dir"] / "o"),
            str(work["image"]),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.safetensors" in err[0] and err[0].endswith(".")


def test_python_m_microseg_subprocess(work):
    out = work["dir"] / "out_sub"
    frame = work["dir"] / "frame4.tif"
    tifffile.imwrite(frame, work["series"].frames[4])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "microseg",
            "nuclei",
            "--model",
            str(work["model"]),
            "--out",
            str(out),
            "--track",
            str(frame),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["outputs"][0]["nuclei"] == len(pd.read_csv(out / "frame4_objects.csv")) > 0
    assert "frame4" in proc.stderr  # progress on stderr
    tracks = pd.read_csv(out / "frame4_tracks.csv")
    assert tracks["track_id"].is_unique and (tracks["frame"] == 0).all()


def test_z_stack_is_segmented_slice_by_slice(work):
    frames = work["series"].frames
    zstack = work["dir"] / "zstack.tif"
    tifffile.imwrite(zstack, frames[:2], imagej=True, metadata={"axes": "ZYX"})
    out = work["dir"] / "out_z"
    rc = main(["nuclei", "--model", str(work["model"]), "--out", str(out), "--track", str(zstack)])
    assert rc == 0
    labels = tifffile.imread(out / "zstack_labels.tif")
    assert labels.shape == frames[:2].shape
    objects = pd.read_csv(out / "zstack_objects.csv")
    assert list(objects.columns[:3]) == ["frame", "z", "label"]
    for z in range(2):
        rows = objects[objects["z"] == z]
        assert sorted(rows["label"]) == sorted(np.unique(labels[z][labels[z] > 0]).tolist())
    tracks = pd.read_csv(out / "zstack_tracks.csv")
    assert list(tracks.columns[:3]) == ["track_id", "frame", "z"]
    frames_csv = pd.read_csv(out / "zstack_frames.csv")
    assert list(frames_csv["z"]) == [0, 1]


def test_independent_frames_option(work):
    out = work["dir"] / "out_independent"
    rc = main(
        ["nuclei", "--model", str(work["model"]), "--out", str(out), "--independent-frames"]
        + [str(work["image"])]
    )
    assert rc == 0
    side = json.loads((out / "series_objects.json").read_text())
    assert side["parameters"]["temporal_consistency"] is False


def test_split_depth_option(work, capsys):
    out = work["dir"] / "out_depth"
    rc = main(
        ["nuclei", "--model", str(work["model"]), "--out", str(out), "--split-depth", "0.4"]
        + [str(work["image"])]
    )
    assert rc == 0
    side = json.loads((out / "series_objects.json").read_text())
    assert side["parameters"]["instance_settings"]["h_fraction"] == 0.4
    rc = main(
        ["nuclei", "--model", str(work["model"]), "--out", str(out), "--split-depth", "2"]
        + [str(work["image"])]
    )
    assert rc == 2
    assert "split depth must lie between 0 and 1" in capsys.readouterr().err


def test_augment_needs_a_deep_model(work, capsys):
    out = work["dir"] / "out_augment"
    rc = main(
        ["nuclei", "--model", str(work["model"]), "--out", str(out), "--augment"]
        + [str(work["image"])]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].endswith("Test-time augmentation needs a deep-learning (U-Net) model.")
    assert not (out / "series_labels.tif").exists()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("abc", "--diameter must be a positive number"),
        ("-2", "--diameter must be a positive number"),
        ("30", "records no training object size"),
    ],
)
def test_diameter_option_errors(work, capsys, value, says):
    out = work["dir"] / "out_diameter"
    rc = main(
        ["nuclei", "--model", str(work["model"]), "--out", str(out), "--diameter", value]
        + [str(work["image"])]
    )
    assert rc == 2
    assert says in capsys.readouterr().err


def test_summary_json_carries_counts_and_a_quality_verdict(work, tracked):
    s = json.loads((tracked / "series_summary.json").read_text())
    assert s["frames"] == work["series"].labels.shape[0] and s["nuclei"] > 0
    q = s["quality"]
    assert q["verdict"] in ("ok", "check", "do_not_trust")
    assert set(q) >= {"reasons", "checks", "next_steps"}
    assert q["checks"]["n_nuclei"] > 0 and 0 < q["checks"]["foreground_fraction"] < 0.7
    assert "provenance" in s


def test_a_single_plane_tile_by_tile_gives_the_whole_image_nuclei(work, tmp_path, capsys):
    import zarr
    from ome_zarr_models.v04 import ImageLabel

    from microseg.metrics import match_instances

    frame = work["series"].frames[2]
    tifffile.imwrite(tmp_path / "plane.tif", frame, tile=(64, 64))
    model = str(work["model"])
    assert main(["nuclei", "--model", model, "--out", str(tmp_path / "whole"),
                 str(tmp_path / "plane.tif")]) == 0  # fmt: skip
    rc = main(["nuclei", "--model", model, "--out", str(tmp_path / "tiled"), "--ome-zarr",
               "--tile", "64", str(tmp_path / "plane.tif")])  # fmt: skip
    assert rc == 0
    whole = tifffile.imread(tmp_path / "whole" / "plane_labels.tif")
    tiled = tifffile.imread(tmp_path / "tiled" / "plane_labels.tif")
    assert tiled.max() == whole.max() > 5
    m = match_instances(whole, tiled, 0.5)
    assert m.fp == 0 and m.fn == 0 and m.mean_matched_iou > 0.99
    objects = pd.read_csv(tmp_path / "tiled" / "plane_objects.csv")
    assert list(objects.columns[: len(FIRST_COLUMNS)]) == FIRST_COLUMNS
    assert len(objects) == tiled.max() and objects["label"].is_unique
    summary = json.loads((tmp_path / "tiled" / "plane_summary.json").read_text())
    assert summary["nuclei"] == tiled.max() and summary["tiled"]["windows"] > 1
    assert summary["quality"]["verdict"] in ("ok", "check", "do_not_trust")
    g = zarr.open_group(tmp_path / "tiled" / "plane.ome.zarr", mode="r")
    ImageLabel.from_zarr(g["labels/nuclei"])
    np.testing.assert_array_equal(np.asarray(g["labels/nuclei/0"]), tiled)


def test_tracking_a_tiled_plane_gets_one_sentence(work, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "plane.tif", work["series"].frames[0])
    rc = main(["nuclei", "--model", str(work["model"]), "--out", str(tmp_path / "o"), "--track",
               "--ome-zarr", str(tmp_path / "plane.tif")])  # fmt: skip
    assert rc != 0
    assert "no frames to track; leave out --track" in capsys.readouterr().err
