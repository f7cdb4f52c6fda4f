"""Project files: a workspace exported to one zip and imported into a fresh one, and
tampered, truncated, foreign or hostile files refused with one sentence."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from microseg.archive import FORMAT_VERSION, export_project, import_project, read_manifest
from microseg.errors import InputError
from microseg.modelfile import save_model
from microseg.store import Workspace


def _model_file(path, seed: int = 0, kind: str = "rf"):
    w = np.random.default_rng(seed).random((4, 3)).astype(np.float32)
    return save_model(path, {"w": w}, {"kind": kind, "task": "grains", "classes": ["g", "b"]})


@pytest.fixture
def project(tmp_path):
    """A workspace with two images (strokes on two frames of one), a pixel size, classes,
    a model linked to an image, a free model and two specimen fields."""
    ws = Workspace.open(tmp_path / "src")
    a = ws.add_image(
        b"image-a" * 100, "a.tif", info={"shape": [2, 8, 8]}, source={"kind": "upload"}
    )
    b = ws.add_image(b"sample", "Synthetic", source={"kind": "sample", "key": "synthetic-grains"})
    strokes = {t: np.random.default_rng(t).integers(0, 3, (8, 8)).astype(np.uint8) for t in (0, 1)}
    classes = [{"name": "grain", "colour": "#00ff00"}, {"name": "boundary", "colour": "#ff0000"}]
    for t, labels in strokes.items():
        ws.save_strokes(a.id, t, labels, classes=classes, task="grains")
    ws.set_pixel_size(a.id, 0.25)
    ws.add_model(_model_file(tmp_path / "m.safetensors"), "forest", image_id=a.id, role="trained")
    ws.add_model(_model_file(tmp_path / "u.safetensors", 1, "unet"), "net", note="uploaded")
    ws.save_specimen_fields([{"image_id": a.id, "G": 7.5}, {"image_id": None, "G": 8.0}])
    return ws, a, b, strokes, classes


def test_export_then_import_gives_the_same_project(project, tmp_path):
    ws, a, b, strokes, classes = project
    path = export_project(ws, tmp_path / "study.zip", name="Alumina study")
    assert read_manifest(path)["name"] == "Alumina study"
    dest = Workspace.open(tmp_path / "dest")
    summary = import_project(path.read_bytes(), dest)
    assert (summary.images, summary.frames, summary.models, summary.fields) == (2, 2, 2, 2)

    by_name = {r.name: r for r in dest.images()}
    assert [r.name for r in dest.images()] == [r.name for r in ws.images()]  # order kept
    new_a = by_name["a.tif"]
    assert dest.image_bytes(new_a.id) == b"image-a" * 100 and new_a.pixel_size_um == 0.25
    assert new_a.info == {"shape": [2, 8, 8]}
    assert by_name["Synthetic"].source == {"kind": "sample", "key": "synthetic-grains"}
    saved = dest.load_strokes(new_a.id)
    assert saved.task == "grains" and saved.classes == classes
    assert set(saved.frames) == {0, 1}
    for t in (0, 1):
        assert np.array_equal(saved.frames[t], strokes[t])
    (linked,) = dest.models(new_a.id)
    assert (linked.name, linked.role) == ("forest", "trained")
    assert {m.sha256 for m in dest.models()} == {m.sha256 for m in ws.models()}
    assert [m.note for m in dest.models() if m.name == "net"] == ["uploaded"]
    fields = dest.specimen_fields()
    assert [f["G"] for f in fields] == [7.5, 8.0]
    assert fields[0]["image_id"] == new_a.id and fields[1]["image_id"] is None


def test_an_empty_workspace_round_trips(tmp_path):
    path = export_project(Workspace.open(tmp_path / "empty"), tmp_path / "e.zip")
    summary = import_project(path, Workspace.open(tmp_path / "dest"))
    assert summary.images == summary.models == summary.frames == 0


def _rewrite(src, dest, change=None, add=None, fix_manifest=False):
    """Copy a project zip, changing members (name -> bytes or None to drop)."""
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    for name, data in (change or {}).items():
        if data is None:
            members.pop(name)
        else:
            members[name] = data
    members.update(add or {})
    if fix_manifest:
        import hashlib

        manifest = json.loads(members["manifest.json"])
        manifest["files"] = {
            n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
            for n, d in members.items()
            if n != "manifest.json"
        }
        members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return dest


def _image_member(path) -> str:
    return next(n for n in zipfile.ZipFile(path).namelist() if n.startswith("images/"))


def _stroke_member(path) -> str:
    return next(n for n in zipfile.ZipFile(path).namelist() if n.startswith("strokes/"))


def _project_json(path, edit) -> bytes:
    project = json.loads(zipfile.ZipFile(path).read("project.json"))
    edit(project)
    return json.dumps(project).encode()


def _pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _bomb(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("images/" + "0" * 64 + ".tif", b"\0" * (50 << 20))
    return path


BAD = {
    "not a zip": (lambda p, d: _write(d, b"hello, not a zip"), "not a zip archive"),
    "empty file": (lambda p, d: _write(d, b""), "not a zip archive"),
    "cut short": (
        lambda p, d: _write(d, p.read_bytes()[: len(p.read_bytes()) // 2]),
        "not a zip archive",
    ),  # fmt: skip
    "foreign zip": (
        lambda p, d: _rewrite(p, d, change={"manifest.json": b'{"format": "x"}'}),
        "not a microseg project manifest",
    ),  # fmt: skip
    "no manifest": (
        lambda p, d: _rewrite(p, d, change={"manifest.json": None}),
        "has no manifest.json",
    ),  # fmt: skip
    "changed image": (
        lambda p, d: _rewrite(p, d, change={_image_member(p): b"evil"}),
        "does not match its checksum",
    ),  # fmt: skip
    "dropped member": (
        lambda p, d: _rewrite(p, d, change={_stroke_member(p): None}),
        "do not match its manifest",
    ),  # fmt: skip
    "path traversal": (
        lambda p, d: _rewrite(p, d, add={"../../evil.py": b"x"}, fix_manifest=True),
        "unexpected file",
    ),  # fmt: skip
    "python file": (
        lambda p, d: _rewrite(p, d, add={"models/run.py": b"x"}, fix_manifest=True),
        "unexpected file",
    ),  # fmt: skip
    "pickled strokes": (
        lambda p, d: _rewrite(p, d, change={_stroke_member(p): _pickled_npy()}, fix_manifest=True),
        "not a plain array",
    ),  # fmt: skip
    "newer format": (
        lambda p, d: _rewrite(
            p,
            d,
            change={
                "manifest.json": json.dumps(
                    {
                        **json.loads(zipfile.ZipFile(p).read("manifest.json")),
                        "format_version": FORMAT_VERSION + 1,
                    }
                ).encode()
            },
        ),
        "made by a newer microseg",
    ),  # fmt: skip
    "project not json": (
        lambda p, d: _rewrite(p, d, change={"project.json": b"{"}, fix_manifest=True),
        "not valid JSON",
    ),  # fmt: skip
    "dangling link": (
        lambda p, d: _rewrite(
            p,
            d,
            change={
                "project.json": _project_json(
                    p, lambda j: j["models"][0]["links"].append({"image": 999, "role": "x"})
                )
            },
            fix_manifest=True,
        ),
        "does not list",
    ),  # fmt: skip
    "wrong types": (
        lambda p, d: _rewrite(
            p,
            d,
            change={
                "project.json": _project_json(
                    p, lambda j: j["images"][0].update(pixel_size_um="big")
                )
            },
            fix_manifest=True,
        ),
        "pixel size is not a number",
    ),  # fmt: skip
    "zip bomb": (lambda p, d: _bomb(d.parent), "zip bomb"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_project_file_is_refused_with_one_sentence_and_nothing_written(
    project, tmp_path, case
):
    ws = project[0]
    good = export_project(ws, tmp_path / "good.zip")
    make, words = BAD[case]
    bad = make(good, tmp_path / "bad.zip")
    dest = Workspace.open(tmp_path / "dest")
    with pytest.raises(InputError) as err:
        import_project(bad, dest)
    message = str(err.value)
    assert words in message and "\n" not in message and "Traceback" not in message
    assert dest.images() == [] and dest.models() == []


def test_a_model_file_that_is_a_pickle_is_refused(project, tmp_path):
    good = export_project(project[0], tmp_path / "good.zip")
    model = next(n for n in zipfile.ZipFile(good).namelist() if n.startswith("models/"))
    bad = _rewrite(good, tmp_path / "bad.zip", change={model: pickle.dumps({"w": 1})},
                   fix_manifest=True)  # fmt: skip
    with pytest.raises(InputError) as err:
        import_project(bad, Workspace.open(tmp_path / "dest"))
    assert "pickle" in str(err.value) and "\n" not in str(err.value)
