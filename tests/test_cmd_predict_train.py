"""``microseg train`` and ``microseg predict`` on a synthetic grain sample (in-process, once
as ``python -m microseg``): model files, class maps, probabilities, provenance, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from microseg.cli import main
from microseg.io import read_provenance
from microseg.modelfile import file_hash, read_metadata
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(300)


def grain_strokes(boundaries: np.ndarray, seed: int = 0) -> np.ndarray:
    """Strokes from a ground-truth boundary mask: boundary pixels and grain interiors
    (at least 4 px from a boundary) inside a random fifth of 32x32 blocks."""
    from scipy import ndimage as ndi

    bnd = boundaries != 0
    rng = np.random.default_rng(seed)
    h, w = bnd.shape
    blocks = rng.random((h // 32 + 1, w // 32 + 1)) < 0.2
    where = np.kron(blocks, np.ones((32, 32), bool))[:h, :w]
    dist = ndi.distance_transform_edt(~bnd)
    strokes = np.zeros(bnd.shape, np.uint8)
    strokes[where & (dist >= 4) & (rng.random(bnd.shape) < 0.3)] = 1
    strokes[where & bnd] = 2
    return strokes


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The synthetic grain sample, its strokes, and an rf model trained on them."""
    d = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--kind", "grains", "--out", str(d), "--seed", "0"]) == 0
    bnd = tifffile.imread(d / "boundaries.tif")
    strokes = grain_strokes(bnd)
    tifffile.imwrite(d / "strokes.tif", strokes)
    model = d / "rf.safetensors"
    rc = main(["train", "--method", "rf", "--task", "grains", "--out", str(model),
               "--images", str(d / "image.tif"), "--labels", str(d / "strokes.tif")])  # fmt: skip
    assert rc == 0
    return d, model, bnd != 0


def test_train_rf_writes_a_grains_model(sample):
    _, model, _ = sample
    meta = read_metadata(model)
    assert meta["kind"] == "rf"
    assert meta["task"] == "grains"
    assert meta["classes"] == ["grain interior", "grain boundary"]
    prov = meta["provenance"]
    assert prov["microseg_version"] and prov["parameters"]["method"] == "rf"


def test_predict_class_map_and_probabilities(sample, tmp_path, capsys):
    d, model, bnd = sample
    out = tmp_path / "pred"
    rc = main(["predict", "--model", str(model), "--out", str(out), "--probabilities",
               str(d / "image.tif")])  # fmt: skip
    assert rc == 0
    classes = tifffile.imread(out / "image_classes.tif")
    probs = tifffile.imread(out / "image_probs.tif")
    assert classes.shape == bnd.shape and classes.dtype == np.uint8
    assert set(np.unique(classes)) <= {1, 2}
    assert probs.dtype == np.float32 and probs.shape == (2, *bnd.shape)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(classes, np.argmax(probs, axis=0) + 1)
    # the boundary class is found where the ground truth has boundaries
    from microseg.metrics import boundary_f1

    f1 = boundary_f1(bnd, classes == 2, tolerance=2).f1
    assert f1 > 0.6, f1
    prov = read_provenance(out / "image_classes.tif")
    assert prov["model_sha256"] == file_hash(model)
    assert prov["values"] == {"1": "grain interior", "2": "grain boundary"}
    summary = json.loads(capsys.readouterr().out)
    assert 0.0 < summary["outputs"][0]["area_fractions"]["grain boundary"] < 0.5


def test_predict_stack_per_frame(sample, tmp_path):
    d, model, _ = sample
    img = tifffile.imread(d / "image.tif")
    stack = np.stack([img[:96, :128], img[96:192, :128], img[200:296, 100:228]])
    tifffile.imwrite(tmp_path / "series.ome.tif", stack, metadata={"axes": "TYX"})
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--out", str(out),
                 str(tmp_path / "series.ome.tif")]) == 0  # fmt: skip
    classes = tifffile.imread(out / "series_classes.tif")
    assert classes.shape == (3, 96, 128)
    assert all(set(np.unique(c)) == {1, 2} for c in classes)


def test_train_rf_from_dense_masks(sample, tmp_path):
    d, _, _ = sample
    model = tmp_path / "rf_masks.safetensors"
    rc = main(["train", "--method", "rf", "--task", "grains", "--out", str(model),
               "--images", str(d / "image.tif"), "--masks", str(d / "boundaries.tif")])  # fmt: skip
    assert rc == 0
    assert read_metadata(model)["classes"] == ["grain interior", "grain boundary"]


def test_train_unet_from_scratch_short_budget(sample, tmp_path, capsys):
    d, _, bnd = sample
    model = tmp_path / "unet.safetensors"
    rc = main(["train", "--method", "unet", "--task", "grains", "--out", str(model),
               "--images", str(d / "image.tif"), "--labels", str(d / "strokes.tif"),
               "--init", "none", "--seconds", "3"])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    assert "from scratch" in err
    meta = read_metadata(model)
    assert meta["kind"] == "unet" and meta["task"] == "grains"
    assert meta["provenance"]["parameters"]["seconds"] == 3.0
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--out", str(out), str(d / "image.tif")]) == 0
    classes = tifffile.imread(out / "image_classes.tif")
    assert classes.shape == bnd.shape and set(np.unique(classes)) <= {1, 2}


def test_train_unet_starts_from_the_builtin_when_installed(sample, tmp_path, capsys):
    d, _, _ = sample
    model = tmp_path / "unet.safetensors"
    rc = main(["train", "--method", "unet", "--task", "grains", "--out", str(model),
               "--images", str(d / "image.tif"), "--labels", str(d / "strokes.tif"),
               "--seconds", "2"])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    from microseg.errors import ModelFileError
    from microseg.zoo import builtin_path

    try:
        builtin_path("grains")
    except ModelFileError:
        assert "not installed: training from scratch" in err
    else:
        assert "fine-tuning builtin:grains" in err
    assert read_metadata(model)["kind"] == "unet"


def test_semantic_classes_are_named(sample, tmp_path):
    d, _, _ = sample
    model = tmp_path / "phases.safetensors"
    rc = main(["train", "--method", "rf", "--task", "semantic", "--classes", "matrix,boundary",
               "--out", str(model), "--images", str(d / "image.tif"),
               "--labels", str(d / "strokes.tif")])  # fmt: skip
    assert rc == 0
    assert read_metadata(model)["classes"] == ["matrix", "boundary"]


def _one_sentence(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("microseg: error:")]
    assert lines, err
    assert "Traceback" not in err
    return lines[-1]


@pytest.mark.parametrize(
    "case",
    ["missing_labels", "shape_mismatch", "one_class", "too_many_classes", "bad_init", "seconds"],
)
def test_train_bad_input_exit_2(sample, tmp_path, capsys, case):
    d, model, _ = sample
    img, strokes = str(d / "image.tif"), str(d / "strokes.tif")
    args = ["train", "--method", "rf", "--task", "grains", "--out", str(tmp_path / "m.st"),
            "--images", img, "--labels", strokes]  # fmt: skip
    if case == "missing_labels":
        args[-1] = str(tmp_path / "nope.tif")
    elif case == "shape_mismatch":
        tifffile.imwrite(tmp_path / "small.tif", np.ones((64, 64), np.uint8))
        args[-1] = str(tmp_path / "small.tif")
    elif case == "one_class":
        tifffile.imwrite(tmp_path / "one.tif", (tifffile.imread(strokes) == 2).astype(np.uint8))
        args[-1] = str(tmp_path / "one.tif")
    elif case == "too_many_classes":
        s = tifffile.imread(strokes)
        s[:5, :5] = 3
        tifffile.imwrite(tmp_path / "three.tif", s)
        args[-1] = str(tmp_path / "three.tif")
        args += ["--classes", "grain interior,grain boundary"]
    elif case == "bad_init":
        args[2] = "unet"
        args += ["--init", str(model), "--seconds", "1"]
    elif case == "seconds":
        args[2] = "unet"
        args += ["--init", "none", "--seconds", "0"]
    assert main(args) == 2
    msg = _one_sentence(capsys.readouterr().err)
    assert msg.rstrip().endswith(".")


def test_predict_bad_model_and_image_exit_2(sample, tmp_path, capsys):
    d, model, _ = sample
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a pickle
    assert (
        main(["predict", "--model", str(fake), "--out", str(tmp_path), str(d / "image.tif")]) == 2
    )
    _one_sentence(capsys.readouterr().err)
    assert main(["predict", "--model", str(model), "--out", str(tmp_path),
                 str(tmp_path / "missing.tif")]) == 2  # fmt: skip
    assert "does not exist" in _one_sentence(capsys.readouterr().err)
    (tmp_path / "text.tif").write_text("not an image")
    assert main(["predict", "--model", str(model), "--out", str(tmp_path),
                 str(tmp_path / "text.tif")]) == 2  # fmt: skip
    _one_sentence(capsys.readouterr().err)


def test_python_m_microseg_predict(sample, tmp_path):
    d, model, _ = sample
    out = tmp_path / "sub"
    proc = subprocess.run(
        [sys.executable, "-m", "microseg", "predict", "--model", str(model), "--out", str(out),
         str(d / "image.tif")],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "image_classes.tif").is_file()
    assert json.loads(proc.stdout)["outputs"][0]["classes"].endswith("image_classes.tif")
