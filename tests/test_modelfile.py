"""Model files: hostile or malformed metadata is one sentence, never a raw exception."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from microseg.errors import ModelFileError
from microseg.modelfile import load_model, read_metadata, save_model
from tests.conftest import ROOT


def _file(tmp_path, microseg_meta: str, name: str = "m.safetensors"):
    path = tmp_path / name
    save_file({"w": np.zeros(3, np.float32)}, str(path), metadata={"microseg": microseg_meta})
    return path


def test_round_trip(tmp_path):
    path = save_model(tmp_path / "ok.safetensors", {"w": np.ones(2, np.float32)}, {"kind": "rf"})
    tensors, meta = load_model(path)
    assert meta["kind"] == "rf" and isinstance(meta["format_version"], int)
    assert np.array_equal(tensors["w"], np.ones(2, np.float32))


@pytest.mark.parametrize(
    ("meta", "says"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (json.dumps(["kind", "unet"]), "not a mapping"),
        (json.dumps("unet"), "not a mapping"),
        (json.dumps({"kind": "rf", "format_version": "1; DROP"}), "format version is '1; DROP'"),
        (json.dumps({"kind": "rf", "format_version": [1]}), "format version is [1]"),
        (json.dumps({"kind": "rf", "format_version": True}), "format version is True"),
    ],
)
def test_hostile_metadata_is_a_model_file_error(tmp_path, meta, says):
    path = _file(tmp_path, meta)
    with pytest.raises(ModelFileError, match=re.escape(says)):
        load_model(path)
    if "format version" not in says:
        with pytest.raises(ModelFileError, match=re.escape(says)):
            read_metadata(path)


def test_the_command_line_says_one_sentence_for_nested_metadata(tmp_path):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    model = _file(tmp_path, "[" * 100_000 + "]" * 100_000)
    r = subprocess.run(
        [sys.executable, "-m", "microseg", "predict", str(image), "--model", str(model),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "nested too deeply" in r.stderr and "Traceback" not in r.stderr
