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


# ---------------------------------------------------------------- property-based
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
#: what a model's metadata holds, with every value free to be anything
METADATA = st.fixed_dictionaries(
    {"kind": st.sampled_from(["unet", "rf", "other"]) | JSON},
    optional={
        "task": st.sampled_from(["grains", "nuclei"]) | JSON,
        "classes": st.lists(st.text(max_size=6), min_size=1, max_size=4) | JSON,
        "architecture": st.fixed_dictionaries(
            {},
            optional={
                "depth": st.integers(-2, 9) | JSON,
                "base": st.integers(-2, 64) | JSON,
                "in_channels": st.integers(-1, 4) | JSON,
            },  # fmt: skip
        )
        | JSON,
        "format_version": st.integers(-1, 3) | JSON,
    },
)
PROPERTY = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@PROPERTY
@given(data=st.binary(max_size=256))
def test_any_bytes_load_or_are_a_model_file_error(tmp_path, data):
    path = tmp_path / "any.safetensors"
    path.write_bytes(data)
    try:
        load_model(path)
    except ModelFileError:
        pass


@PROPERTY
@given(meta=METADATA)
def test_any_metadata_loads_or_is_one_sentence(tmp_path, meta):
    from microseg.errors import InputError
    from microseg.segmenter import load_segmenter

    path = _file(tmp_path, json.dumps(meta), "any.safetensors")
    try:
        load_segmenter(path)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
