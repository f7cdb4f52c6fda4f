"""The workspace store: real SQLite files and stroke/model files in tmp_path."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from microseg.errors import InputError, ModelFileError
from microseg.modelfile import save_model
from microseg.store import DB_NAME, Workspace, default_root


def _labels(seed: int, shape=(32, 40), dtype=np.uint8, k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, k + 1, size=shape).astype(dtype)


def _model_file(path, seed: int = 0):
    w = np.random.default_rng(seed).random((4, 3)).astype(np.float32)
    return save_model(path, {"w": w}, {"kind": "rf", "task": "nuclei", "classes": ["bg", "fg"]})


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MICROSEG_WORKSPACE", str(tmp_path / "ws"))
    assert default_root() == tmp_path / "ws"
    ws = Workspace.open()
    assert ws.root == tmp_path / "ws" and (tmp_path / "ws" / DB_NAME).is_file()


def test_database_is_wal_with_schema_version_and_foreign_keys(tmp_path):
    Workspace.open(tmp_path)
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "annotations", "models", "schema_version"} <= tables
    con.close()


def test_image_round_trip_and_dedupe(tmp_path):
    ws = Workspace.open(tmp_path)
    data = b"\x89PNG fake image bytes" * 10
    info = {"shape": [1, 1, 1, 32, 40], "dtype": "uint8", "pixel_size_um": 0.5}
    rec = ws.add_image(data, "cells.png", info=info, source={"kind": "upload"})
    assert rec.name == "cells.png" and rec.size == len(data) and rec.info == info
    assert rec.path.is_file() and rec.path.suffix == ".png"
    assert ws.image_bytes(rec.id) == data
    again = ws.add_image(data, "renamed.png")
    assert again.id == rec.id and again.name == "cells.png"
    assert len(ws.images()) == 1


def test_images_most_recently_opened_first(tmp_path):
    ws = Workspace.open(tmp_path)
    a = ws.add_image(b"a" * 20, "a.tif")
    b = ws.add_image(b"b" * 20, "b.tif")
    c = ws.add_image(b"c" * 20, "c.tif")
    assert [r.id for r in ws.images()] == [c.id, b.id, a.id]
    ws.touch_image(a.id)
    assert [r.id for r in ws.images()] == [a.id, c.id, b.id]
    assert ws.images()[0].opened > ws.images()[1].opened


def test_strokes_round_trip_several_frames_and_dtypes(tmp_path):
    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"stack" * 10, "stack.tif")
    s0 = _labels(0, dtype=np.uint8)
    s3 = _labels(1, dtype=np.uint16, k=300)
    classes = [
        {"name": "background", "colour": "#1f77b4"},
        {"name": "nucleus", "colour": "#ff7f0e"},
    ]
    ws.save_strokes(rec.id, 0, s0, classes, task="nuclei")
    ws.save_strokes(rec.id, 3, s3)
    got = ws.load_strokes(rec.id)
    assert sorted(got.frames) == [0, 3]
    assert got.frames[0].dtype == np.uint8 and np.array_equal(got.frames[0], s0)
    assert got.frames[3].dtype == np.uint16 and np.array_equal(got.frames[3], s3)
    assert got.classes == classes and got.task == "nuclei"
    assert ws.images()[0].n_labelled == 2


def test_overwrite_and_clear_strokes_keep_one_file_per_frame(tmp_path):
    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"img" * 10, "img.png")
    for seed in range(3):
        ws.save_strokes(rec.id, 0, _labels(seed), ["a", "b"])
    files = list((tmp_path / "strokes").rglob("*.npy"))
    assert len(files) == 1
    assert np.array_equal(ws.load_strokes(rec.id).frames[0], _labels(2))
    ws.save_strokes(rec.id, 0, np.zeros((32, 40), np.uint8), ["a", "b"])
    assert ws.load_strokes(rec.id).frames == {}
    assert not list((tmp_path / "strokes").rglob("*.npy"))
    # the classes stay: the image was annotated, then cleared
    assert ws.load_strokes(rec.id).classes == ["a", "b"]


def test_never_annotated_image_has_no_classes(tmp_path):
    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"new" * 10, "new.png")
    got = ws.load_strokes(rec.id)
    assert got.frames == {} and got.classes is None and got.task is None


def test_bad_strokes_are_refused(tmp_path):
    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"img" * 10, "img.png")
    with pytest.raises(InputError, match="2-D integer"):
        ws.save_strokes(rec.id, 0, np.ones((4, 4), np.float32))
    with pytest.raises(InputError, match="no image"):
        ws.save_strokes(rec.id + 99, 0, _labels(0))
    assert not list((tmp_path / "strokes").rglob("*.npy"))


def test_delete_image_removes_its_files(tmp_path):
    ws = Workspace.open(tmp_path)
    keep = ws.add_image(b"keep" * 10, "keep.png")
    gone = ws.add_image(b"gone" * 10, "gone.png")
    ws.save_strokes(keep.id, 0, _labels(0))
    ws.save_strokes(gone.id, 0, _labels(1))
    ws.save_strokes(gone.id, 5, _labels(2))
    ws.delete_image(gone.id)
    assert [r.id for r in ws.images()] == [keep.id]
    assert not gone.path.exists() and keep.path.is_file()
    assert not (tmp_path / "strokes" / str(gone.id)).exists()
    assert len(list((tmp_path / "strokes").rglob("*.npy"))) == 1
    with pytest.raises(InputError):
        ws.load_strokes(gone.id)
    assert np.array_equal(ws.load_strokes(keep.id).frames[0], _labels(0))
    # ids are never reused: a stale id cannot reach a newer image
    assert ws.add_image(b"newer" * 10, "newer.png").id > gone.id


def test_two_threads_write_strokes_at_once(tmp_path):
    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"img" * 10, "img.png")
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(15):
                ws.save_strokes(rec.id, offset + i % 3, _labels(offset + i), ["a", "b"])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(o,)) for o in (0, 100)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    frames = Workspace.open(tmp_path).load_strokes(rec.id).frames
    assert sorted(frames) == [0, 1, 2, 100, 101, 102]
    assert np.array_equal(frames[0], _labels(12)) and np.array_equal(frames[102], _labels(114))
    # no orphan files: exactly one file per stored frame
    assert len(list((tmp_path / "strokes").rglob("*.npy"))) == 6
    assert not list(tmp_path.rglob("*.tmp"))


def test_reopened_folder_sees_everything(tmp_path):
    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"persist" * 10, "persist.tif", source={"kind": "sample", "key": "x"})
    ws.save_strokes(rec.id, 2, _labels(7, dtype=np.uint16), [{"name": "grain"}], task="grains")
    model = ws.add_model(_model_file(tmp_path / "m.safetensors"), "my forest")
    del ws
    ws2 = Workspace.open(tmp_path)
    (got,) = ws2.images()
    assert got.id == rec.id and got.source == {"kind": "sample", "key": "x"}
    strokes = ws2.load_strokes(rec.id)
    assert np.array_equal(strokes.frames[2], _labels(7, dtype=np.uint16))
    assert strokes.classes == [{"name": "grain"}] and strokes.task == "grains"
    assert [m.id for m in ws2.models()] == [model.id]


def test_model_round_trip_dedupe_and_delete(tmp_path):
    from microseg.modelfile import load_model

    ws = Workspace.open(tmp_path / "ws")
    src = _model_file(tmp_path / "forest.safetensors")
    rec = ws.add_model(src, "forest")
    assert rec.kind == "rf" and rec.task == "nuclei" and rec.summary["classes"] == ["bg", "fg"]
    tensors, meta = load_model(ws.model_path(rec.id))
    assert np.array_equal(tensors["w"], load_model(src)[0]["w"]) and meta["kind"] == "rf"
    same = ws.add_model(src.read_bytes(), "copy")
    assert same.id == rec.id
    other = ws.add_model(_model_file(tmp_path / "b.safetensors", seed=1).read_bytes(), "other")
    assert [m.id for m in ws.models()] == [other.id, rec.id]
    path = ws.model_path(rec.id)
    ws.delete_model(rec.id)
    assert not path.exists() and [m.id for m in ws.models()] == [other.id]


def test_pickle_model_is_refused_and_not_stored(tmp_path):
    import pickle

    ws = Workspace.open(tmp_path)
    with pytest.raises(ModelFileError, match="pickle"):
        ws.add_model(pickle.dumps({"w": [1, 2]}), "evil")
    assert ws.models() == []
    assert not list((tmp_path / "models").iterdir())


def test_corrupt_database_gives_one_sentence_and_is_kept(tmp_path):
    db = tmp_path / DB_NAME
    db.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(InputError) as info:
        Workspace.open(tmp_path)
    message = str(info.value)
    assert "not a microseg workspace database" in message and message.count(". ") == 0
    assert db.read_bytes() == b"this is not a database at all" * 100


def test_damaged_sqlite_file_gives_input_error(tmp_path):
    ws = Workspace.open(tmp_path)
    ws.add_image(b"x" * 100, "x.png")
    db = tmp_path / DB_NAME
    for extra in tmp_path.glob(DB_NAME + "-*"):
        extra.unlink()
    raw = bytearray(db.read_bytes())
    raw[100:] = b"\xff" * (len(raw) - 100)
    db.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="workspace database"):
        Workspace.open(tmp_path)


def test_foreign_sqlite_database_is_refused(tmp_path):
    con = sqlite3.connect(tmp_path / DB_NAME)
    con.execute("CREATE TABLE photos (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="not a microseg workspace"):
        Workspace.open(tmp_path)
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("SELECT name FROM sqlite_master").fetchall() == [("photos",)]
    con.close()


def test_unusable_folder_gives_input_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(InputError, match="cannot be used"):
        Workspace.open(blocker)
    with pytest.raises(InputError, match="cannot be used"):
        Workspace.open(blocker / "below")


def test_object_array_stroke_file_is_refused(tmp_path):
    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"img" * 10, "img.png")
    ws.save_strokes(rec.id, 0, _labels(0))
    (path,) = (tmp_path / "strokes").rglob("*.npy")
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not loaded"):
        ws.load_strokes(rec.id)
    assert path.is_file()  # an error deletes nothing


def test_float_stroke_file_is_refused(tmp_path):
    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"img" * 10, "img.png")
    ws.save_strokes(rec.id, 0, _labels(0))
    (path,) = (tmp_path / "strokes").rglob("*.npy")
    np.save(path, np.ones((3, 3), np.float64))
    with pytest.raises(InputError, match="2-D integer"):
        ws.load_strokes(rec.id)
