"""The workspace store: real SQLite files and stroke/model files in tmp_path."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from microseg.errors import InputError, ModelFileError
from microseg.modelfile import save_model
from microseg.store import APPLICATION_ID, DB_NAME, SCHEMA_VERSION, Workspace, default_root


def _labels(seed: int, shape=(32, 40), dtype=np.uint8, k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, k + 1, size=shape).astype(dtype)


def _model_file(path, seed: int = 0, kind: str = "rf"):
    w = np.random.default_rng(seed).random((4, 3)).astype(np.float32)
    return save_model(path, {"w": w}, {"kind": kind, "task": "nuclei", "classes": ["bg", "fg"]})


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MICROSEG_WORKSPACE", str(tmp_path / "ws"))
    assert default_root() == tmp_path / "ws"
    ws = Workspace.open()
    assert ws.root == tmp_path / "ws" and (tmp_path / "ws" / DB_NAME).is_file()


def test_database_is_wal_with_schema_version_and_foreign_keys(tmp_path):
    Workspace.open(tmp_path)
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "annotations", "models", "image_models", "schema_version"} <= tables
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


def test_models_are_linked_to_images_and_counted(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    a = ws.add_image(b"a" * 20, "a.tif")
    b = ws.add_image(b"b" * 20, "b.tif")
    rf = ws.add_model(
        _model_file(tmp_path / "rf.safetensors"), "forest", image_id=a.id, role="trained",
        note="frame 0",
    )  # fmt: skip
    up = ws.add_model(
        _model_file(tmp_path / "up.safetensors", seed=1, kind="unet"), "up.safetensors",
        image_id=a.id, role="uploaded",
    )  # fmt: skip
    free = ws.add_model(_model_file(tmp_path / "free.safetensors", seed=2), "free")
    assert [(m.id, m.role) for m in ws.models(a.id)] == [(up.id, "uploaded"), (rf.id, "trained")]
    assert ws.models(b.id) == [] and len(ws.models()) == 3
    assert ws.model(rf.id).note == "frame 0" and ws.model(up.id).note is None
    counts = {r.id: r.n_models for r in ws.images()}
    assert counts == {a.id: 2, b.id: 0}
    # the same file added for another image is stored once and linked to both
    again = ws.add_model((tmp_path / "rf.safetensors").read_bytes(), "copy", image_id=b.id)
    assert again.id == rf.id and again.name == "forest"
    assert [m.id for m in ws.models(b.id)] == [rf.id]
    assert len(list((tmp_path / "ws" / "models").glob("*.safetensors"))) == 3
    with pytest.raises(InputError, match="no image"):
        ws.add_model(_model_file(tmp_path / "x.safetensors", seed=3), "x", image_id=b.id + 9)
    assert len(ws.models()) == 3 and free.path.is_file()
    assert len(list((tmp_path / "ws" / "models").iterdir())) == 3  # nothing left behind


def test_replace_keeps_one_trained_model_per_kind_and_image(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    a = ws.add_image(b"a" * 20, "a.tif")
    b = ws.add_image(b"b" * 20, "b.tif")
    kw = {"image_id": a.id, "role": "trained", "replace": True}
    first = ws.add_model(_model_file(tmp_path / "1.safetensors", seed=1), "rf 1", **kw)
    shared = ws.add_model(_model_file(tmp_path / "2.safetensors", seed=2), "rf 2", **kw)
    assert [m.id for m in ws.models(a.id)] == [shared.id]
    assert not first.path.exists() and first.id not in [m.id for m in ws.models()]
    ws.add_model(shared.path.read_bytes(), "rf 2", image_id=b.id, role="trained")
    unet = ws.add_model(_model_file(tmp_path / "u.safetensors", seed=3, kind="unet"), "u", **kw)
    upload = ws.add_model(_model_file(tmp_path / "4.safetensors", seed=4), "up", image_id=a.id,
                          role="uploaded")  # fmt: skip
    third = ws.add_model(_model_file(tmp_path / "3.safetensors", seed=5), "rf 3", **kw)
    # another kind and another role stay; the replaced forest stays while image b uses it
    assert {m.id for m in ws.models(a.id)} == {unet.id, upload.id, third.id}
    assert [m.id for m in ws.models(b.id)] == [shared.id] and shared.path.is_file()
    # adding the current forest again replaces nothing
    assert ws.add_model(third.path.read_bytes(), "rf 3", **kw).id == third.id
    assert {m.id for m in ws.models(a.id)} == {unet.id, upload.id, third.id}


def test_delete_image_removes_the_models_only_it_uses(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    a = ws.add_image(b"a" * 20, "a.tif")
    b = ws.add_image(b"b" * 20, "b.tif")
    own = ws.add_model(_model_file(tmp_path / "1.safetensors", seed=1), "own", image_id=a.id)
    both = ws.add_model(_model_file(tmp_path / "2.safetensors", seed=2), "both", image_id=a.id)
    ws.add_model(both.path.read_bytes(), "both", image_id=b.id)
    free = ws.add_model(_model_file(tmp_path / "3.safetensors", seed=3), "free")
    ws.delete_image(a.id)
    assert {m.id for m in ws.models()} == {both.id, free.id}
    assert not own.path.exists() and both.path.is_file() and free.path.is_file()
    assert [m.id for m in ws.models(b.id)] == [both.id]
    ws.delete_model(both.id)
    assert ws.images()[0].n_models == 0


def test_pixel_size_is_kept_per_image(tmp_path):
    ws = Workspace.open(tmp_path)
    a = ws.add_image(b"a" * 20, "a.tif")
    b = ws.add_image(b"b" * 20, "b.tif")
    assert a.pixel_size_um is None
    ws.set_pixel_size(a.id, 0.325)
    assert Workspace.open(tmp_path).image(a.id).pixel_size_um == pytest.approx(0.325)
    assert ws.image(b.id).pixel_size_um is None
    assert ws.add_image(b"a" * 20, "a again.tif").pixel_size_um == pytest.approx(0.325)
    for bad in (0.0, -1.0, float("nan"), float("inf"), 1e200):
        with pytest.raises(InputError, match="number of µm per pixel between"):
            ws.set_pixel_size(a.id, bad)
    assert ws.image(a.id).pixel_size_um == pytest.approx(0.325)
    ws.set_pixel_size(a.id, None)
    assert ws.image(a.id).pixel_size_um is None
    with pytest.raises(InputError, match="no image"):
        ws.set_pixel_size(b.id + 9, 1.0)


# the schema of version 1, as the first release of the workspace wrote it
_SCHEMA_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL, size INTEGER NOT NULL, info TEXT NOT NULL DEFAULT '{}',
    source TEXT NOT NULL DEFAULT '{}', classes TEXT, task TEXT, added REAL NOT NULL,
    opened REAL NOT NULL
);
CREATE TABLE annotations (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    t INTEGER NOT NULL, path TEXT NOT NULL, dtype TEXT NOT NULL, n_labelled INTEGER NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (image_id, t)
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL, task TEXT, path TEXT NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL, summary TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX images_opened ON images(opened);
INSERT INTO schema_version VALUES (1);
"""


def _columns(db) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {t: con.execute(f"PRAGMA table_info({t})").fetchall() for t in tables}
    out["indexes"] = sorted(
        r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")
    )
    con.close()
    return out


def test_version_1_database_is_migrated_and_keeps_its_content(tmp_path):
    root = tmp_path / "old"
    (root / "strokes" / "1").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "images").mkdir()
    (root / "images" / "abc.png").write_bytes(b"old image")
    labels = _labels(4)
    np.save(root / "strokes" / "1" / "t0-aaa.npy", labels)
    model = _model_file(root / "models" / "def.safetensors")
    con = sqlite3.connect(root / DB_NAME)
    con.executescript(_SCHEMA_V1)
    con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    con.execute(
        "INSERT INTO images (name, sha256, path, size, classes, task, added, opened)"
        " VALUES ('old.png', 'abc', 'images/abc.png', 9, '[\"a\", \"b\"]', 'nuclei', 1, 2)"
    )
    con.execute("INSERT INTO annotations VALUES (1, 0, 'strokes/1/t0-aaa.npy', 'uint8', 5, 3)")
    con.execute(
        "INSERT INTO models (name, sha256, kind, task, path, size, created)"
        " VALUES ('old forest', 'def', 'rf', 'nuclei', 'models/def.safetensors', ?, 4)",
        (model.stat().st_size,),
    )
    con.commit()
    con.close()

    ws = Workspace.open(root)
    (image,) = ws.images()
    assert (image.name, image.n_labelled, image.n_models, image.pixel_size_um) == (
        "old.png", 1, 0, None,
    )  # fmt: skip
    assert ws.image_bytes(image.id) == b"old image"
    strokes = ws.load_strokes(image.id)
    assert np.array_equal(strokes.frames[0], labels) and strokes.classes == ["a", "b"]
    (old_model,) = ws.models()
    assert old_model.name == "old forest" and old_model.note is None
    # the new features work on the migrated database
    ws.add_model(model.read_bytes(), "old forest", image_id=image.id, role="trained")
    ws.set_pixel_size(image.id, 0.5)
    ws2 = Workspace.open(root)  # opening again migrates nothing twice
    assert ws2.image(image.id).n_models == 1 and ws2.image(image.id).pixel_size_um == 0.5
    con = sqlite3.connect(root / DB_NAME)
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    con.close()
    # a migrated database has the same tables, columns and indexes as a new one
    Workspace.open(tmp_path / "new")
    assert _columns(root / DB_NAME) == _columns(tmp_path / "new" / DB_NAME)


def test_database_of_a_newer_schema_is_refused_untouched(tmp_path):
    Workspace.open(tmp_path)
    con = sqlite3.connect(tmp_path / DB_NAME)
    con.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(InputError, match="newer microseg"):
        Workspace.open(tmp_path)
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION + 1
    con.close()


def test_specimen_fields_round_trip_in_order_and_outlive_their_image(tmp_path):
    ws = Workspace.open(tmp_path)
    a = ws.add_image(b"field one", "a.png")
    b = ws.add_image(b"field two", "b.png")
    fields = [
        {"image_id": a.id, "image": "a.png", "summary": {"n_a": 1000.0, "g": None}},
        {"image_id": b.id, "image": "b.png", "sizes": {"area_um2": [1.5, 2.0]}},
        {"image_id": 999, "image": "gone.png"},  # an unknown image is not linked
    ]
    ws.save_specimen_fields(fields)
    back = Workspace.open(tmp_path).specimen_fields()
    assert [f["image"] for f in back] == ["a.png", "b.png", "gone.png"]
    assert back[0]["summary"] == {"n_a": 1000.0, "g": None}
    assert back[1]["sizes"]["area_um2"] == [1.5, 2.0]
    assert [f["image_id"] for f in back] == [a.id, b.id, None]
    ws.delete_image(a.id)  # the field stays, unlinked
    assert [f["image_id"] for f in ws.specimen_fields()] == [None, b.id, None]
    ws.save_specimen_fields(back[1:2])  # saving replaces
    assert [f["image"] for f in ws.specimen_fields()] == ["b.png"]
    ws.save_specimen_fields([])
    assert ws.specimen_fields() == []


def test_a_full_disk_during_a_save_is_one_sentence_and_keeps_what_was_saved(tmp_path, monkeypatch):
    import builtins
    import errno

    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"img" * 10, "img.png")
    ws.save_strokes(rec.id, 0, _labels(0), ["a", "b"])
    real_open = builtins.open

    class FullDisk:
        """A file that takes a few bytes, then the disk is full."""

        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(bytes(data)[:16])
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return FullDisk(fh) if str(path).endswith(".tmp") and "w" in mode else fh

    monkeypatch.setattr(builtins, "open", full_disk_open)
    with pytest.raises(InputError, match="could not save .*No space left on device"):
        ws.save_strokes(rec.id, 0, _labels(1), ["a", "b"])
    with pytest.raises(InputError, match="No space left on device"):
        ws.add_image(b"other" * 10, "other.png")
    monkeypatch.undo()
    # the strokes saved before are intact, and nothing half-written is left behind
    assert np.array_equal(ws.load_strokes(rec.id).frames[0], _labels(0))
    assert len(list((tmp_path / "strokes").rglob("*.npy"))) == 1
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert [r.name for r in ws.images()] == ["img.png"]


def test_what_a_killed_save_left_behind_is_swept_when_the_workspace_opens(tmp_path):
    import os
    import time

    ws = Workspace.open(tmp_path)
    rec = ws.add_image(b"img" * 10, "img.png")
    ws.save_strokes(rec.id, 0, _labels(0), ["a", "b"])
    model = ws.add_model(_model_file(tmp_path / "m.safetensors"), "m")
    kept = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.parent != tmp_path)
    # a kill -9 between writing a file and recording it, or in the middle of a write
    leftovers = [
        tmp_path / "strokes" / str(rec.id) / "t0-0123456789ab.npy",
        tmp_path / "images" / ".abc.png.0f0f.tmp",
        tmp_path / "models" / ".incoming-0f0f.safetensors",
    ]
    fresh = tmp_path / "strokes" / str(rec.id) / "t1-ba9876543210.npy"  # a save in progress
    old = time.time() - 2 * 3600
    for p in [*leftovers, fresh]:
        p.write_bytes(b"partial")
    for p in [*leftovers, *kept]:
        os.utime(p, (old, old))
    ws2 = Workspace.open(tmp_path)
    assert not any(p.exists() for p in leftovers)
    assert fresh.exists() and all(p.exists() for p in kept)
    assert np.array_equal(ws2.load_strokes(rec.id).frames[0], _labels(0))
    assert [m.id for m in ws2.models()] == [model.id]
    assert ws2.sweep_leftovers(older_than_s=0) == 1 and not fresh.exists()


def test_a_save_over_strokes_changed_elsewhere_is_refused_and_writes_nothing(tmp_path):
    from microseg.store import StrokesChanged

    ws = Workspace.open(tmp_path)
    image = ws.add_image(b"img", "a.tif")
    first = ws.save_strokes(image.id, 0, _labels(1), expected=None)
    assert ws.load_strokes(image.id).versions == {0: first}
    theirs = ws.save_strokes(image.id, 0, _labels(2), expected=first)  # the other tab
    with pytest.raises(StrokesChanged, match="changed in another tab"):
        ws.save_strokes(image.id, 0, _labels(3), expected=first)  # this tab, now stale
    ws.save_strokes(image.id, 1, _labels(3), expected=None)  # a first save of frame 1 ...
    with pytest.raises(StrokesChanged):  # ... and another tab's first save of it too
        ws.save_strokes(image.id, 1, _labels(4), expected=None)
    stored = ws.load_strokes(image.id)
    assert np.array_equal(stored.frames[0], _labels(2)) and stored.versions[0] == theirs
    assert np.array_equal(stored.frames[1], _labels(3))
    files = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "strokes").rglob("*.npy")}
    assert files == set(stored.versions.values())  # the refused saves left no file
    mine = ws.save_strokes(image.id, 0, _labels(3))  # "keep mine": overwrite on purpose
    assert np.array_equal(ws.load_strokes(image.id).frames[0], _labels(3)) and mine != theirs
    assert ws.save_strokes(image.id, 0, None, expected=mine) is None
    assert 0 not in ws.load_strokes(image.id).frames
