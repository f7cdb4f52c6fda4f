"""``microseg batch``: files, folders and globs; failures reported; a Dask scheduler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from microseg.cli import main
from microseg.commands.batch import expand_inputs
from microseg.errors import InputError
from tests.nuclei_fixtures import small_series, train_rf_model

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Three single frames in a folder, one more beside it, a broken file and a model."""
    root = tmp_path_factory.mktemp("batch")
    series = small_series(n_frames=5, shape=(80, 80), seed=11)
    folder = root / "frames"
    folder.mkdir()
    for t in range(3):
        tifffile.imwrite(folder / f"f{t}.tif", series.frames[t])
    (folder / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    tifffile.imwrite(root / "g3.tif", series.frames[3])
    tifffile.imwrite(root / "g4.tif", series.frames[4])
    (root / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 12)
    sub = folder / "sub"
    sub.mkdir()
    tifffile.imwrite(sub / "deep.tif", series.frames[0])  # not visited: no recursion
    return {
        "root": root,
        "folder": folder,
        "series": series,
        "model": train_rf_model(root, series, frames=(0,)),
    }


def test_expand_inputs(work):
    root, folder = work["root"], work["folder"]
    paths = expand_inputs([str(folder), str(root / "g*.tif"), str(root / "g3.tif")])
    assert [p.name for p in paths] == ["f0.tif", "f1.tif", "f2.tif", "g3.tif", "g4.tif"]
    with pytest.raises(InputError, match="does not exist"):
        expand_inputs([str(root / "missing.tif")])
    with pytest.raises(InputError, match="matches no image"):
        expand_inputs([str(root / "*.czi")])


def test_nuclei_batch_goes_on_after_a_failure(work, capsys):
    root, out = work["root"], work["root"] / "out_nuclei"
    rc = main(
        [
            "batch",
            "--task",
            "nuclei",
            "--model",
            str(work["model"]),
            "--out",
            str(out),
            "--pixel-size",
            "0.5",
            str(work["folder"]),
            str(root / "broken.tif"),
            str(root / "g*.tif"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0
    errors = [line for line in captured.err.splitlines() if line.startswith("microseg: error")]
    assert len(errors) == 1 and "broken.tif" in errors[0]
    summary = json.loads(captured.out)
    assert summary["n_inputs"] == 6 and summary["n_failed"] == 1
    for stem in ("f0", "f1", "f2", "g3", "g4"):
        labels = tifffile.imread(out / f"{stem}_labels.tif")
        assert labels.shape == (80, 80)
        objects = pd.read_csv(out / f"{stem}_objects.csv")
        assert len(objects) == len(np.unique(labels[labels > 0])) > 0
        np.testing.assert_allclose(objects["area_um2"], objects["area_px"] * 0.25)
        assert (out / f"{stem}_frames.csv").is_file() and (out / f"{stem}_objects.json").is_file()
    assert not (out / "deep_labels.tif").exists()
    # the run summary and qc.csv: every input with its verdict, the failed one first
    run = json.loads((out / "batch_summary.json").read_text())
    assert sum(run["quality"].values()) == 5 and len(run["qc"]) == 6
    qc = pd.read_csv(out / "qc.csv")
    assert list(qc.columns) == [
        "input",
        "ok",
        "verdict",
        "reasons",
        "next_steps",
        "summary",
        "error",
    ]
    assert qc["verdict"].iloc[0] == "failed" and "broken.tif" in qc["input"].iloc[0]
    assert set(qc["verdict"].iloc[1:]) <= {"ok", "check", "do_not_trust"}
    assert all(Path(p).is_file() for p in qc["summary"].iloc[1:])


def test_batch_where_every_input_fails_exits_2(work, capsys):
    rc = main(
        [
            "batch",
            "--task",
            "nuclei",
            "--model",
            str(work["model"]),
            "--out",
            str(work["root"] / "o"),
            str(work["root"] / "broken.tif"),
        ]
    )
    assert rc == 2
    assert "None of the 1 input(s)" in capsys.readouterr().err


def test_semantic_task_writes_predict_outputs(work):
    out = work["root"] / "out_semantic"
    rc = main(
        [
            "batch",
            "--task",
            "semantic",
            "--model",
            str(work["model"]),
            "--out",
            str(out),
            str(work["root"] / "g3.tif"),
        ]
    )
    assert rc == 0
    classes = tifffile.imread(out / "g3_classes.tif")
    assert classes.shape == (80, 80) and set(np.unique(classes)) <= {1, 2, 3}


def test_bad_scheduler_address_exit_2(work, capsys):
    rc = main(
        [
            "batch",
            "--task",
            "nuclei",
            "--model",
            str(work["model"]),
            "--out",
            str(work["root"] / "o"),
            "--scheduler",
            "localhost-8786",
            str(work["root"] / "g3.tif"),
        ]
    )
    assert rc == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err


def test_dask_scheduler_gives_the_same_outputs(work):
    from distributed import LocalCluster

    local = work["root"] / "out_local"
    assert (
        main(
            [
                "batch",
                "--task",
                "nuclei",
                "--model",
                str(work["model"]),
                "--out",
                str(local),
                str(work["root"] / "g*.tif"),
            ]
        )
        == 0
    )
    out = work["root"] / "out_dask"
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        rc = main(
            [
                "batch",
                "--task",
                "nuclei",
                "--model",
                str(work["model"]),
                "--out",
                str(out),
                "--scheduler",
                cluster.scheduler_address,
                str(work["root"] / "g*.tif"),
                str(work["root"] / "broken.tif"),
            ]
        )
    assert rc == 0
    for stem in ("g3", "g4"):
        np.testing.assert_array_equal(
            tifffile.imread(out / f"{stem}_labels.tif"),
            tifffile.imread(local / f"{stem}_labels.tif"),
        )
        pd.testing.assert_frame_equal(
            pd.read_csv(out / f"{stem}_objects.csv"), pd.read_csv(local / f"{stem}_objects.csv")
        )


@pytest.fixture(scope="module")
def same_names(work):
    """Two folders that both hold ``img.tif`` (different frames)."""
    root = work["root"] / "same_names"
    for d, t in (("a", 1), ("b", 4)):
        (root / d).mkdir(parents=True)
        tifffile.imwrite(root / d / "img.tif", work["series"].frames[t])
    return root


def _alone_labels(work, root, d):
    """The labels of ``root/d/img.tif`` processed alone."""
    out = work["root"] / f"out_alone_{d}"
    if not (out / "img_labels.tif").is_file():
        assert main(["nuclei", "--model", str(work["model"]), "--out", str(out),
                     str(root / d / "img.tif")]) == 0  # fmt: skip
    return tifffile.imread(out / "img_labels.tif")


def _same_name_run(work, root, out, extra=()):
    args = ["batch", "--task", "nuclei", "--model", str(work["model"]), "--out", str(out)]
    return main([*args, *extra, str(root / "a"), str(root / "b")])


def test_inputs_with_the_same_name_keep_their_own_outputs(work, same_names, capsys):
    out = work["root"] / "out_same"
    assert _same_name_run(work, same_names, out) == 0
    err = capsys.readouterr().err
    assert "outputs named a_img_* (another input has the same name)" in err
    assert not (out / "img_labels.tif").exists()
    for d in ("a", "b"):  # each input's labels are its own image's, not the other's
        np.testing.assert_array_equal(
            tifffile.imread(out / f"{d}_img_labels.tif"), _alone_labels(work, same_names, d)
        )
    qc = pd.read_csv(out / "qc.csv")
    assert sorted(Path(p).name for p in qc["summary"]) == [
        "a_img_summary.json",
        "b_img_summary.json",
    ]
    # the single command, given both, does the same
    single = work["root"] / "out_same_single"
    assert main(["nuclei", "--model", str(work["model"]), "--out", str(single),
                 str(same_names / "a" / "img.tif"), str(same_names / "b" / "img.tif")]) == 0  # fmt: skip
    assert (single / "a_img_labels.tif").is_file() and (single / "b_img_labels.tif").is_file()


def test_inputs_with_the_same_name_on_a_dask_cluster(work, same_names):
    from distributed import LocalCluster

    out = work["root"] / "out_same_dask"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None) as cluster:  # fmt: skip
        assert (
            _same_name_run(work, same_names, out, ["--scheduler", cluster.scheduler_address]) == 0
        )
    for d in ("a", "b"):
        np.testing.assert_array_equal(
            tifffile.imread(out / f"{d}_img_labels.tif"), _alone_labels(work, same_names, d)
        )


def test_grains_task_runs_the_grains_command_per_input(tmp_path):
    from microseg.synth import synth_grains

    images = []
    for seed in (1, 2):
        g = synth_grains(shape=(128, 128), n_grains=25, seed=seed, n_pores=0)
        images.append(tmp_path / f"grains{seed}.tif")
        tifffile.imwrite(images[-1], g.image)
        if seed == 1:
            tifffile.imwrite(tmp_path / "bounds.tif", g.boundaries.astype(np.uint8))
    model = tmp_path / "grains_rf.safetensors"
    assert (
        main(
            [
                "train",
                "--method",
                "rf",
                "--task",
                "grains",
                "--out",
                str(model),
                "--images",
                str(images[0]),
                "--masks",
                str(tmp_path / "bounds.tif"),
            ]
        )
        == 0
    )
    out = tmp_path / "out"
    rc = main(
        [
            "batch",
            "--task",
            "grains",
            "--model",
            str(model),
            "--out",
            str(out),
            "--pixel-size",
            "0.5",
            str(tmp_path / "grains*.tif"),
        ]
    )
    assert rc == 0
    for stem in ("grains1", "grains2"):
        grains = tifffile.imread(out / f"{stem}_grains.tif")
        assert grains.shape == (128, 128) and grains.max() > 5
        table = pd.read_csv(out / f"{stem}_grains.csv")
        assert len(table) == len(np.unique(grains[grains > 0]))
        summary = json.loads((out / f"{stem}_summary.json").read_text())
        assert summary["n_grains"] == len(table) and summary["unit"] == "um"
