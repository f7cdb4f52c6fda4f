"""One catalogue of bad inputs to the command line: damaged and odd files, hostile model
files, absurd numbers and impossible folders. Each gives exit status 2, one sentence
on stderr (no traceback) and leaves what was already in the output folder untouched."""

from __future__ import annotations

import json
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from microseg.cli import main
from microseg.modelfile import save_model

pytestmark = pytest.mark.timeout(300)


def _png_declaring(path: Path, w: int, h: int) -> Path:
    """A small, well-formed PNG whose header declares ``w`` x ``h`` pixels (a bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    png = chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Every bad (and a few good) input file, made once."""
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    f: dict[str, Path] = {}

    def tif(name: str, array, **kw) -> None:
        f[name] = d / f"{name}.tif"
        tifffile.imwrite(f[name], array, **kw)

    def raw(name: str, suffix: str, data: bytes) -> None:
        f[name] = d / f"{name}{suffix}"
        f[name].write_bytes(data)

    good = (rng.random((64, 64)) * 255).astype(np.uint8)
    tif("good", good)
    tif("good2", good[::-1].copy())
    raw("empty_tif", ".tif", b"")
    raw("empty_png", ".png", b"")
    raw("text_as_tif", ".tif", b"just some text, not an image\n" * 20)
    raw("html_as_jpg", ".jpg", b"<html><body>404 not found</body></html>")
    raw("random_png", ".png", rng.bytes(4096))
    raw("garbage_czi", ".czi", b"ZISRAWFILE" + rng.bytes(512))
    raw("no_suffix", "", good.tobytes())
    raw("unknown_suffix", ".xyz", good.tobytes())
    truncated = d / "full.tif"
    tifffile.imwrite(truncated, (rng.random((512, 512)) * 255).astype(np.uint8))
    raw("truncated_tif", ".tif", truncated.read_bytes()[:2000])
    _png_declaring(d / "bomb.png", 200_000, 200_000)
    f["bomb_png"] = d / "bomb.png"
    tif("all_nan", np.full((64, 64), np.nan, np.float32))
    tif("inf_values", np.where(rng.random((64, 64)) > 0.5, np.inf, 1.0).astype(np.float32))
    tif("one_pixel", np.zeros((1, 1), np.uint8))
    tif("one_row", np.zeros((1, 64), np.uint8))
    tif("complex", (rng.random((32, 32)) + 1j).astype(np.complex64))
    tif("six_d", np.zeros((2, 2, 2, 2, 16, 16), np.uint8))
    f["folder"] = d / "a_folder.tif"
    f["folder"].mkdir()
    f["missing"] = d / "not_there.tif"
    # strokes
    strokes = np.zeros((64, 64), np.uint8)
    strokes[5:10, 5:30], strokes[40:45, 5:30] = 1, 2
    tif("strokes", strokes)
    tif("strokes_wrong_shape", strokes[:32])
    one_class = np.zeros_like(strokes)
    one_class[5:10] = 1
    tif("strokes_one_class", one_class)
    tif("strokes_none", np.zeros_like(strokes))
    tif("strokes_float", strokes.astype(np.float32) + 0.5)
    tif("strokes_negative", strokes.astype(np.int16) - 1)
    too_many = strokes.copy()
    too_many[20:25] = 9
    tif("strokes_class_9", too_many)
    # model files
    raw("model_pickle", ".safetensors", pickle.dumps({"weights": [1, 2, 3]}))
    raw("model_empty", ".safetensors", b"")
    raw("model_text", ".safetensors", b'{"kind": "rf"}')
    header = json.dumps({"__metadata__": {"kind": "unet"}}).encode()
    raw("model_header_only", ".safetensors", struct.pack("<Q", len(header)) + header)
    raw("model_huge_header", ".safetensors", struct.pack("<Q", 10**15) + b"{}")
    raw("model_onnx", ".onnx", b"\x08\x07\x12\x04onnx" + rng.bytes(64))
    raw("model_torch", ".pt", b"PK\x03\x04" + rng.bytes(64))
    # masks drawn in other tools
    raw("geojson_empty", ".geojson", b"")
    raw("geojson_not_json", ".geojson", b"{'type': 'FeatureCollection', ")
    raw("geojson_deep", ".geojson", b"[" * 100_000 + b"]" * 100_000)
    raw("geojson_no_features", ".geojson", b'{"type": "Topology"}')
    raw(
        "geojson_points",
        ".geojson",
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 4]}}
                ],
            }
        ).encode(),
    )
    raw(
        "geojson_nan",
        ".geojson",
        b'{"type": "Polygon", "coordinates": [[[0, 0], [NaN, 5], [5, 5], [0, 0]]]}',
    )
    raw(
        "geojson_text_coords",
        ".geojson",
        b'{"type": "Polygon", "coordinates": [[["a", 0], [1, 5], [5, 5], [0, 0]]]}',
    )
    raw(
        "geojson_outside",
        ".geojson",
        b'{"type": "Polygon", "coordinates": '
        b"[[[1000, 1000], [1010, 1000], [1010, 1010], [1000, 1000]]]}",
    )
    raw("geojson_latin1", ".geojson", '{"name": "caf\u00e9"}'.encode("latin-1"))
    raw("cellpose_seg", "_seg.npy", pickle.dumps({"masks": np.zeros((64, 64))}))
    pickled_npy = d / "pickled.npy"
    np.save(pickled_npy, np.array({"masks": 1}, dtype=object), allow_pickle=True)
    f["pickled_npy"] = pickled_npy
    raw("roiset_broken", ".zip", b"PK\x03\x04" + rng.bytes(200))
    np.save(d / "labels_wrong_shape.npy", np.zeros((10, 10), np.uint16))
    f["npy_wrong_shape"] = d / "labels_wrong_shape.npy"
    import zipfile

    ts = d / "torchscript_package.zip"
    with zipfile.ZipFile(ts, "w") as zf:
        zf.writestr("rdf.yaml", "type: model\nweights:\n  torchscript: {source: w.pt}\n")
        zf.writestr("w.pt", b"PK\x03\x04" + rng.bytes(64))
    f["model_torchscript_zip"] = ts
    raw("model_zip_not_zip", ".zip", b"not a zip at all")
    from microseg.classical import RandomForestSegmenter

    rf = RandomForestSegmenter().fit([good], [strokes], task="grains", seed=0)
    f["rf_model"] = rf.save(d / "rf.safetensors")
    nan_w = {"w": np.full((4, 3), np.nan, np.float32)}
    f["model_unknown_kind"] = save_model(d / "unknown_kind.safetensors", nan_w,
                                         {"kind": "svm", "task": "grains"})  # fmt: skip
    plain_zarr = d / "plain.zarr"
    plain_zarr.mkdir()
    (plain_zarr / ".zgroup").write_text('{"zarr_format": 2}')
    (plain_zarr / ".zattrs").write_text('{"hello": 1}')
    f["zarr_without_ome"] = plain_zarr
    broken_zarr = d / "broken.ome.zarr"
    broken_zarr.mkdir()
    (broken_zarr / ".zattrs").write_text('{"multiscales": [{"datasets": [{"path": "0"}]')
    f["zarr_broken"] = broken_zarr
    tif(
        "stack", np.zeros((3, 32, 32), np.uint8), photometric="minisblack", metadata={"axes": "TYX"}
    )
    return f


def _grains(*images, extra=()):  # noqa: ANN001, ANN202
    return lambda f, out: ["grains", "--model", "builtin:grains", "--out", str(out), *extra,
                           *[str(f[i]) for i in images]]  # fmt: skip


def _predict_with(model: str):  # noqa: ANN202
    return lambda f, out: ["predict", "--model", str(f[model]), "--out", str(out), str(f["good"])]


def _train(images="good", labels="strokes", method="rf", extra=()):  # noqa: ANN001, ANN202
    return lambda f, out: ["train", "--method", method, "--task", "grains", "--out",
                           str(out / "m.safetensors"), "--images", str(f[images]), "--labels",
                           str(f[labels]), *extra]  # fmt: skip


def _train_masks(masks: str, task: str = "nuclei"):  # noqa: ANN202
    return lambda f, out: ["train", "--method", "rf", "--task", task, "--out",
                           str(out / "m.safetensors"), "--images", str(f["good"]), "--masks",
                           str(f[masks])]  # fmt: skip


def _nuclei(extra=()):  # noqa: ANN001, ANN202
    return lambda f, out: ["nuclei", "--model", "builtin:nuclei", "--out", str(out), *extra,
                           str(f["good"])]  # fmt: skip


# id -> (argv builder, words the sentence must hold)
CATALOGUE = {
    # damaged or odd image files
    "empty tif": (_grains("empty_tif"), "empty"),
    "empty png": (_grains("empty_png"), "empty"),
    "text named .tif": (_grains("text_as_tif"), "looks like a text file"),
    "html named .jpg": (_grains("html_as_jpg"), "looks like a text file"),
    "random bytes .png": (_grains("random_png"), "not an image file"),
    "garbage .czi": (_grains("garbage_czi"), "czi"),
    "no suffix": (_grains("no_suffix"), "not an image file"),
    "unknown suffix": (_grains("unknown_suffix"), "not an image file"),
    "truncated tif": (_grains("truncated_tif"), "truncated"),
    "decompression bomb png": (_grains("bomb_png"), "pixels"),
    "all NaN": (_grains("all_nan"), "NaN"),
    "one pixel": (_grains("one_pixel"), "at least 8 x 8"),
    "one row": (_grains("one_row"), "at least 8 x 8"),
    "complex numbers": (_grains("complex"), "complex"),
    "six dimensions": (_grains("six_d"), "more than microseg supports"),
    "a folder named .tif": (_grains("folder"), "folder"),
    "missing file": (_grains("missing"), "not_there.tif"),
    "missing file among good": (_grains("good", "missing"), "not_there.tif"),
    # hostile or foreign model files
    "model is a pickle": (_predict_with("model_pickle"), "pickle"),
    "model is empty": (_predict_with("model_empty"), "empty"),
    "model is text": (_predict_with("model_text"), "model"),
    "model header only": (_predict_with("model_header_only"), "model"),
    "model header 1 PB": (_predict_with("model_huge_header"), "model"),
    "model is ONNX": (_predict_with("model_onnx"), "model"),
    "model is a torch zip": (_predict_with("model_torch"), "model"),
    "model of unknown kind": (_predict_with("model_unknown_kind"), "svm"),
    "model is a TorchScript bioimage.io package": (
        _predict_with("model_torchscript_zip"),
        "torchscript weights",
    ),  # fmt: skip
    "model .zip that is no ZIP": (_predict_with("model_zip_not_zip"), "not a ZIP"),
    "model missing": (
        lambda f, out: ["predict", "--model", str(f["missing"]), "--out", str(out), str(f["good"])],
        "not_there.tif",
    ),  # fmt: skip
    "unknown built-in": (
        lambda f, out: ["predict", "--model", "builtin:cells", "--out", str(out), str(f["good"])],
        "cells",
    ),  # fmt: skip
    # absurd numbers
    "pixel size NaN": (_grains("good", extra=("--pixel-size", "nan")), "pixel-size"),
    "pixel size negative": (_grains("good", extra=("--pixel-size", "-1")), "pixel-size"),
    "pixel size zero": (_grains("good", extra=("--pixel-size", "0")), "pixel-size"),
    "pixel size 1e200": (_grains("good", extra=("--pixel-size", "1e200")), "pixel-size"),
    "pixel size infinite": (_grains("good", extra=("--pixel-size", "inf")), "pixel-size"),
    "threshold above 1": (_grains("good", extra=("--threshold", "1.5")), "threshold"),
    "threshold NaN": (_grains("good", extra=("--threshold", "nan")), "threshold"),
    "min grain area negative": (_grains("good", extra=("--min-grain-area", "-5")), "area"),
    "region outside the image": (_grains("good", extra=("--region", "500:600,0:10")), "region"),
    "region not a region": (_grains("good", extra=("--region", "banana")), "region"),
    "diameter fraction of a pixel": (_nuclei(("--diameter", "0.001")), "diameter"),
    "diameter NaN": (_nuclei(("--diameter", "nan")), "diameter"),
    "diameter negative": (_nuclei(("--diameter", "-8")), "diameter"),
    "channel out of range": (_nuclei(("--channel", "7")), "channel"),
    "training seconds NaN": (
        _train(method="unet", extra=("--seconds", "nan", "--init", "none")),
        "seconds",
    ),  # fmt: skip
    "training seconds infinite": (_train(method="unet", extra=("--seconds", "inf")), "seconds"),
    "training seconds zero": (_train(method="unet", extra=("--seconds", "0")), "seconds"),
    "training seconds negative": (_train(method="unet", extra=("--seconds", "-3")), "seconds"),
    # strokes that cannot train
    "strokes of another size": (_train(labels="strokes_wrong_shape"), "shape"),
    "strokes of one class": (_train(labels="strokes_one_class"), "two classes"),
    "no strokes at all": (_train(labels="strokes_none"), "label no pixel"),
    "strokes as fractions": (_train(labels="strokes_float"), "whole"),
    "negative strokes": (_train(labels="strokes_negative"), "negative"),
    "stroke class beyond the task": (_train(labels="strokes_class_9"), "class"),
    "strokes unreadable": (_train(labels="text_as_tif"), "looks like a text file"),
    "image for strokes unreadable": (_train(images="empty_tif"), "empty"),
    "more labels than images": (
        lambda f, out: [
            "train",
            "--method",
            "rf",
            "--task",
            "grains",
            "--out",
            str(out / "m.safetensors"),
            "--images",
            str(f["good"]),
            "--labels",
            str(f["strokes"]),
            str(f["strokes"]),
        ],
        "one",
    ),  # fmt: skip
    "unet strokes of one class": (
        _train(method="unet", labels="strokes_one_class", extra=("--seconds", "1")),
        "two classes",
    ),  # fmt: skip
    # masks from other tools that cannot train
    "GeoJSON empty": (_train_masks("geojson_empty"), "empty"),
    "GeoJSON not JSON": (_train_masks("geojson_not_json"), "not valid GeoJSON"),
    "GeoJSON nested 100000 deep": (_train_masks("geojson_deep"), "GeoJSON"),
    "GeoJSON without features": (_train_masks("geojson_no_features"), "not GeoJSON"),
    "GeoJSON of points": (_train_masks("geojson_points"), "no polygon"),
    "GeoJSON NaN coordinate": (_train_masks("geojson_nan"), "NaN"),
    "GeoJSON text coordinate": (_train_masks("geojson_text_coords"), "not numbers"),
    "GeoJSON outside the image": (_train_masks("geojson_outside", "grains"), "no object inside"),
    "GeoJSON not UTF-8": (_train_masks("geojson_latin1"), "UTF-8"),
    "Cellpose _seg.npy": (_train_masks("cellpose_seg"), "pickle"),
    "pickled .npy": (_train_masks("pickled_npy"), "pickle"),
    "RoiSet zip damaged": (_train_masks("roiset_broken"), "ROI"),
    "label .npy of another size": (_train_masks("npy_wrong_shape"), "10x10"),
    "GeoJSON for a semantic task": (_train_masks("geojson_points", "semantic"), "nuclei or grains"),
    # model exports that cannot be made
    "export a random forest": (
        lambda f, out: [
            "export-model",
            "--format",
            "bioimageio",
            str(f["rf_model"]),
            str(out / "m.zip"),
        ],
        "not a U-Net",
    ),  # fmt: skip
    "export to the wrong suffix": (
        lambda f, out: [
            "export-model",
            "--format",
            "bioimageio",
            "builtin:grains",
            str(out / "m.onnx"),
        ],
        ".zip",
    ),  # fmt: skip
    "export with a one-pixel test image": (
        lambda f, out: [
            "export-model",
            "--format",
            "bioimageio",
            "--test-image",
            str(f["one_pixel"]),
            "builtin:grains",
            str(out / "m.zip"),
        ],
        "8 x 8",
    ),  # fmt: skip
    "export a pickled model": (
        lambda f, out: [
            "export-model",
            "--format",
            "onnx",
            str(f["model_pickle"]),
            str(out / "m.onnx"),
        ],
        "pickle",
    ),  # fmt: skip
    # impossible outputs and batches
    "output is a file": (
        lambda f, out: [
            "grains",
            "--model",
            "builtin:grains",
            "--out",
            str(f["good2"]),
            str(f["good"]),
        ],
        "folder",
    ),  # fmt: skip
    "model output in a missing folder's file": (
        lambda f, out: [
            "train",
            "--method",
            "rf",
            "--task",
            "grains",
            "--out",
            str(f["good2"]) + "/m.safetensors",
            "--images",
            str(f["good"]),
            "--labels",
            str(f["strokes"]),
        ],
        "cannot",
    ),  # fmt: skip
    # images read by region, tile by tile
    "a Zarr folder without OME metadata": (
        lambda f, out: [
            "predict",
            "--model",
            str(f["rf_model"]),
            "--out",
            str(out),
            str(f["zarr_without_ome"]),
        ],
        "without OME-Zarr multiscales",
    ),
    "an OME-Zarr folder with broken metadata": (
        lambda f, out: [
            "predict",
            "--model",
            str(f["rf_model"]),
            "--out",
            str(out),
            str(f["zarr_broken"]),
        ],
        "not a readable Zarr group",
    ),
    "tiles of 10 px": (
        lambda f, out: [
            "predict",
            "--model",
            str(f["rf_model"]),
            "--out",
            str(out),
            "--ome-zarr",
            "--tile",
            "10",
            str(f["good"]),
        ],
        "at least 64 pixels",
    ),
    "a stack tile by tile": (
        lambda f, out: [
            "predict",
            "--model",
            str(f["rf_model"]),
            "--out",
            str(out),
            "--ome-zarr",
            str(f["stack"]),
        ],
        "is a stack",
    ),
    "a region on a tiled grains run": (
        _grains("good", extra=("--ome-zarr", "--region", "0:10,0:10")),
        "not available there",
    ),
    "tracking a tiled nuclei run": (
        lambda f, out: [
            "nuclei",
            "--model",
            "builtin:nuclei",
            "--out",
            str(out),
            "--ome-zarr",
            "--track",
            str(f["good"]),
        ],
        "no frames to track",
    ),
    "a Dask scheduler nobody runs": (
        lambda f, out: [
            "predict",
            "--model",
            str(f["rf_model"]),
            "--out",
            str(out),
            "--scheduler",
            "tcp://127.0.0.1:9",
            str(f["good"]),
        ],
        "no dask scheduler answers",
    ),
    "batch of nothing": (
        lambda f, out: [
            "batch",
            "--model",
            "builtin:grains",
            "--task",
            "grains",
            "--out",
            str(out),
            str(f["missing"]),
        ],
        "no",
    ),  # fmt: skip
    "batch where every input fails": (
        lambda f, out: [
            "batch",
            "--model",
            "builtin:grains",
            "--task",
            "grains",
            "--out",
            str(out),
            str(f["empty_tif"]),
            str(f["text_as_tif"]),
        ],
        "none of the 2",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_input_is_one_sentence_exit_2_and_nothing_lost(files, tmp_path, capsys, case):
    build, words = CATALOGUE[case]
    out = tmp_path / "out"
    out.mkdir()
    kept = out / "earlier_result.csv"
    kept.write_text("grain,area\n1,42\n")
    code = main(build(files, out))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("microseg: error:")]
    assert code == 2, err
    batch = case.startswith("batch")  # a batch says what failed for each input, then sums up
    assert (len(lines) >= 1 if batch else len(lines) == 1) and "Traceback" not in err, err
    assert words.lower() in lines[-1].lower(), lines[-1]
    assert kept.read_text() == "grain,area\n1,42\n"
    assert files["good"].is_file() and files["good2"].is_file()
