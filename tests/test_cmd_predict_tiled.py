"""``microseg predict`` tile by tile: ``--ome-zarr``, big single-plane images streamed
automatically, OME-Zarr inputs; the class maps equal the whole-image ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from microseg.cli import main
from microseg.commands import predict as predict_cmd
from microseg.io import read_provenance
from tests.test_cmd_predict_train import sample  # noqa: F401  (module fixture)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def whole(sample, tmp_path_factory):  # noqa: F811
    """The whole-image predict outputs of the synthetic sample (the reference)."""
    d, model, _ = sample
    out = tmp_path_factory.mktemp("whole")
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                "--out",
                str(out),
                "--probabilities",
                str(d / "image.tif"),
            ]
        )
        == 0
    )
    return tifffile.imread(out / "image_classes.tif"), tifffile.imread(out / "image_probs.tif")


def test_ome_zarr_output_beside_tiffs_equal_to_whole_image(sample, whole, tmp_path, capsys):  # noqa: F811
    d, model, _ = sample
    out = tmp_path / "pred"
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            "--out",
            str(out),
            "--probabilities",
            "--ome-zarr",
            "--tile",
            "128",
            str(d / "image.tif"),
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)["outputs"][0]
    assert summary["tiled"] == {"tile": 128, "read_by": "TIFF tiles"}
    classes, probs = whole
    np.testing.assert_array_equal(tifffile.imread(out / "image_classes.tif"), classes)
    np.testing.assert_array_equal(tifffile.imread(out / "image_probs.tif"), probs)
    g = zarr.open_group(out / "image.ome.zarr", mode="r")
    np.testing.assert_array_equal(np.asarray(g["labels/classes/0"]), classes)
    np.testing.assert_array_equal(np.asarray(g["probabilities/0"]), probs)
    np.testing.assert_array_equal(np.asarray(g["0"])[0], tifffile.imread(d / "image.tif"))
    assert g["labels/classes"].attrs["image-label"]["properties"][1]["class"] == "grain boundary"
    prov = read_provenance(out / "image_classes.tif")
    assert prov["parameters"]["streamed"] is True and prov["values"]["2"] == "grain boundary"
    with tifffile.TiffFile(out / "image_classes.tif") as tif:
        assert tif.is_bigtiff and tif.pages[0].is_tiled


def test_big_images_stream_without_leaving_scratch_files(sample, whole, tmp_path, monkeypatch):  # noqa: F811
    d, model, _ = sample
    monkeypatch.setattr(predict_cmd, "STREAM_ABOVE_PX", 1000)
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--out", str(out), str(d / "image.tif")]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["image_classes.tif"]
    np.testing.assert_array_equal(tifffile.imread(out / "image_classes.tif"), whole[0])


def test_an_ome_zarr_folder_is_an_input(sample, whole, tmp_path):  # noqa: F811
    d, model, _ = sample
    first = tmp_path / "first"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                "--out",
                str(first),
                "--ome-zarr",
                str(d / "image.tif"),
            ]
        )
        == 0
    )
    again = tmp_path / "again"
    assert (
        main(["predict", "--model", str(model), "--out", str(again), str(first / "image.ome.zarr")])
        == 0
    )
    np.testing.assert_array_equal(tifffile.imread(again / "image_classes.tif"), whole[0])


def test_a_stack_with_ome_zarr_gets_one_sentence(sample, tmp_path, capsys):  # noqa: F811
    d, model, _ = sample
    stack = np.zeros((3, 64, 64), np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack", metadata={"axes": "TYX"})
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            "--out",
            str(tmp_path / "o"),
            "--ome-zarr",
            str(tmp_path / "s.tif"),
        ]
    )
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "is a stack (3 time points)" in err[-1] and "Traceback" not in "\n".join(err)


def test_tiles_on_a_two_worker_dask_cluster_equal_the_whole_image(sample, tmp_path):  # noqa: F811
    from distributed import Client, LocalCluster

    from microseg import tiled

    d, model, _ = sample
    img = tifffile.imread(d / "image.tif")
    big = np.block([[img, img[:, ::-1]], [img[::-1], img[::-1, ::-1]]])[:1000, :1100]
    tifffile.imwrite(tmp_path / "big.tif", big, tile=(128, 128))
    ref = tmp_path / "ref"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                "--out",
                str(ref),
                "--probabilities",
                str(tmp_path / "big.tif"),
            ]
        )
        == 0
    )
    out = tmp_path / "pred"
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        rc = main(
            [
                "predict",
                "--model",
                str(model),
                "--out",
                str(out),
                "--probabilities",
                "--scheduler",
                cluster.scheduler_address,
                "--tile",
                "256",
                str(tmp_path / "big.tif"),
            ]
        )
        assert rc == 0
        with Client(cluster.scheduler_address) as client:  # each worker loaded the model once
            loaded = client.run(lambda: tiled._worker_model.cache_info().misses)
        assert sorted(loaded.values()) == [1, 1]
    for name in ("big_classes.tif", "big_probs.tif"):
        np.testing.assert_array_equal(tifffile.imread(out / name), tifffile.imread(ref / name))
    assert not any(p.name.startswith(".") for p in out.iterdir())


def test_no_scheduler_at_the_address_gets_one_sentence(sample, tmp_path, capsys):  # noqa: F811
    d, model, _ = sample
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            "--out",
            str(tmp_path / "o"),
            "--scheduler",
            "tcp://127.0.0.1:9",
            str(d / "image.tif"),
        ]
    )
    assert rc != 0
    assert "No Dask scheduler answers at tcp://127.0.0.1:9" in capsys.readouterr().err
