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
