"""bioimage.io model packages: what microseg writes validates with the official spec
library and reproduces its own test output in bioimageio.core; the command line."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from microseg.cli import main
from microseg.deep.bioimageio import export_bioimageio
from microseg.deep.segmenter import UNetSegmenter
from microseg.deep.unet import UNet, UNetConfig

pytestmark = pytest.mark.timeout(300)


def _grey_model() -> UNetSegmenter:
    """A small untrained one-channel nuclei U-Net with its normalisation recorded."""
    import torch

    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=1, n_classes=3, depth=3, base=4)).eval()
    meta = {"name": "tiny:nuclei", "normalisation": {"method": "percentile", "low": 1.0,
                                                      "high": 99.8, "per": "image"}}  # fmt: skip
    return UNetSegmenter(net, ["background", "nucleus", "border"], "nuclei", meta)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    rng = np.random.default_rng(0)
    image = (rng.random((100, 90)) * 4000).astype(np.uint16)
    return export_bioimageio(_grey_model(), tmp_path_factory.mktemp("bio") / "tiny.zip",
                             authors=["A. Person"], test_image=image)  # fmt: skip


def test_the_package_holds_what_the_spec_names(package):
    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
        rdf = json.loads(zf.read("rdf.yaml"))
        test_in = np.load(zf.open("test_input.npy"), allow_pickle=False)
    assert {"rdf.yaml", "weights.onnx", "test_input.npy", "test_output.npy", "cover.png",
            "README.md"} <= names  # fmt: skip
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5")
    assert rdf["name"] == "tiny nuclei"  # only the characters bioimage.io allows
    assert rdf["inputs"][0]["preprocessing"][0]["kwargs"]["max_percentile"] == 99.8
    assert rdf["outputs"][0]["postprocessing"][0]["id"] == "softmax"
    assert list(rdf["weights"]) == ["onnx"]  # no pickled weights
    assert test_in.shape == (1, 1, 100, 88)  # cut to the network's multiple of 4
    assert rdf["config"]["microseg"]["classes"] == ["background", "nucleus", "border"]


def test_the_official_validator_accepts_it(package):
    from bioimageio.spec import load_description

    descr = load_description(package)
    assert descr.validation_summary.status in ("valid-format", "passed"), (
        descr.validation_summary.format()
    )


def test_bioimageio_core_reproduces_the_test_output(package):
    from bioimageio.core import test_model

    summary = test_model(package)
    assert summary.status == "passed", summary.format()


def test_export_model_command(tmp_path, capsys):
    out = tmp_path / "pkg" / "grains.zip"
    assert main(["export-model", "--format", "bioimageio", "--name", "Steel boundaries",
                 "builtin:grains", str(out)]) == 0  # fmt: skip
    with zipfile.ZipFile(out) as zf:
        rdf = json.loads(zf.read("rdf.yaml"))
    assert rdf["name"] == "Steel boundaries"
    assert [a["channel_names"] for a in rdf["inputs"][0]["axes"] if a["type"] == "channel"] == [
        ["channel0", "channel1", "channel2"]
    ]
    assert (
        main(["export-model", "--format", "onnx", "builtin:grains", str(tmp_path / "g.onnx")]) == 0
    )
    assert (tmp_path / "g.onnx").stat().st_size > 10_000
    capsys.readouterr()
    assert (
        main(["export-model", "--format", "onnx", "builtin:grains", str(tmp_path / "g.zip")]) == 2
    )
    assert "writes a .onnx file" in capsys.readouterr().err


def test_a_microseg_package_opens_again_as_the_same_model(package):
    from microseg.segmenter import load_segmenter

    again = load_segmenter(package)
    original = _grey_model()
    x = np.random.default_rng(1).random((40, 40)).astype(np.float32)
    np.testing.assert_allclose(again.predict_proba(x), original.predict_proba(x), atol=1e-6)
    assert again.classes == original.classes and again.task == "nuclei"


def _rewrite(package, tmp_path, name, change=None, drop=(), extra=None):  # noqa: ANN001, ANN202
    """A copy of ``package`` with its rdf changed by ``change`` and members dropped/added."""
    out = tmp_path / name
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            if item in drop:
                continue
            data = src.read(item)
            if item == "rdf.yaml" and change is not None:
                data = change(json.loads(data))
                data = data if isinstance(data, bytes) else json.dumps(data).encode()
            dst.writestr(item, data)
        for item, data in (extra or {}).items():
            dst.writestr(item, data)
    return out


def _text_file(path):  # noqa: ANN001, ANN202
    path.write_bytes(b"hello")
    return path


def _foreign(weights: dict):  # noqa: ANN202
    def change(rdf: dict) -> dict:
        rdf["config"] = {}
        rdf["weights"] = weights
        return rdf

    return change


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p, t: _rewrite(p, t, "ts.zip", _foreign({"torchscript": {"source": "w.pt"}})),
         "torchscript weights, which can run code"),
        (lambda p, t: _rewrite(p, t, "sd.zip", _foreign({"pytorch_state_dict": {"source": "w.pt"},
                                                        "onnx": {"source": "weights.onnx"}})),
         "pytorch_state_dict weights"),
        (lambda p, t: _rewrite(p, t, "onnx.zip", _foreign({"onnx": {"source": "weights.onnx"}})),
         "not written by microseg"),
        (lambda p, t: _rewrite(p, t, "tampered.zip", drop=("microseg.safetensors",),
                               extra={"microseg.safetensors": b"\\0" * 64}),
         "changed since it was written"),
        (lambda p, t: _rewrite(p, t, "no_weights.zip", drop=("microseg.safetensors",)),
         "lacks its model file"),
        (lambda p, t: _rewrite(p, t, "norrdf.zip", drop=("rdf.yaml",)), "without rdf.yaml"),
        (lambda p, t: _rewrite(p, t, "bad_yaml.zip", lambda rdf: b"a: [unclosed"), "not valid YAML"),
        (lambda p, t: _rewrite(p, t, "dataset.zip", lambda rdf: {**rdf, "type": "dataset"}),
         "not a model"),
        (lambda p, t: _text_file(t / "text.zip"), "not a ZIP"),
    ],
)  # fmt: skip
def test_packages_microseg_will_not_open(package, tmp_path, make, says):
    from microseg.errors import ModelFileError
    from microseg.segmenter import load_segmenter

    bad = make(package, tmp_path)
    with pytest.raises(ModelFileError) as err:
        load_segmenter(bad)
    assert says in str(err.value) and bad.name in str(err.value)
