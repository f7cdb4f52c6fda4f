"""The workspace: a user's images, strokes and models kept in one folder.

A :class:`Workspace` is an SQLite database ``workspace.sqlite`` (WAL mode, foreign
keys on, a schema version table) plus files beside it::

    images/<sha256><suffix>          source bytes, as given (content addressed)
    strokes/<image id>/t<t>-<k>.npy  stroke labels of one frame (np.save, no pickles)
    models/<sha256>.safetensors      model files (see :mod:`microseg.modelfile`)

A model may be linked to the images it was trained on or loaded for (table
``image_models``, with a role such as ``"trained"`` or ``"uploaded"``); an
image also keeps the pixel size the user set for it. ``specimen_fields`` holds
the measured fields of the specimen being built up (JSON records, in order; a
field outlives the image it came from). Databases of an older
schema are migrated in place when opened (see ``_MIGRATIONS``).

Every file is written under a temporary name and moved into place with
:func:`os.replace`; every call is one transaction, and a file is deleted only
after the transaction that stops referring to it has committed. Paths in the
database are relative to the folder, so a workspace can be moved. Problems with
the folder or the database raise :class:`~microseg.errors.InputError` with one
sentence; nothing stored is deleted by an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from microseg.errors import InputError, ModelFileError

SCHEMA_VERSION = 3
APPLICATION_ID = 0x6D736567  # "mseg": marks the database as a microseg workspace
DB_NAME = "workspace.sqlite"
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: files a save left behind (killed mid-write) are removed when they are this old (s)
LEFTOVER_AGE_S = 600.0

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    info TEXT NOT NULL DEFAULT '{}',
    source TEXT NOT NULL DEFAULT '{}',
    classes TEXT,
    task TEXT,
    added REAL NOT NULL,
    opened REAL NOT NULL
);
CREATE TABLE annotations (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    t INTEGER NOT NULL,
    path TEXT NOT NULL,
    dtype TEXT NOT NULL,
    n_labelled INTEGER NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (image_id, t)
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    task TEXT,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    summary TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX images_opened ON images(opened);
"""

# statements that take a database from version ``v`` to ``v + 1``; a new database
# is created with ``_SCHEMA`` (version 1) and then migrated, so both paths agree
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE images ADD COLUMN pixel_size_um REAL",
        "ALTER TABLE models ADD COLUMN note TEXT",
        """CREATE TABLE image_models (
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            role TEXT NOT NULL DEFAULT '',
            added REAL NOT NULL,
            PRIMARY KEY (image_id, model_id)
        )""",
        "CREATE INDEX image_models_model ON image_models(model_id)",
    ),
    2: (
        """CREATE TABLE specimen_fields (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER REFERENCES images(id) ON DELETE SET NULL,
            data TEXT NOT NULL,
            added REAL NOT NULL
        )""",
    ),
}


@dataclass(frozen=True)
class ImageRecord:
    """One stored image.

    Attributes
    ----------
    id : int
        Workspace id.
    name : str
        File (or sample) name as given.
    sha256 : str
        SHA-256 of the source bytes (images are deduplicated on it).
    path : Path
        The stored source file.
    size : int
        Source size in bytes.
    info : dict
        Free JSON description (shape, dtype, pixel size ...).
    source : dict
        Where the image came from (kind, sample key, citation ...).
    added, opened : float
        Unix times of the first add and the last open.
    n_labelled : int
        Number of frames with stored strokes.
    pixel_size_um : float or None
        Pixel size (µm) the user set for the image; None: use the file's.
    n_models : int
        Number of stored models linked to the image.
    """

    id: int
    name: str
    sha256: str
    path: Path
    size: int
    info: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    added: float = 0.0
    opened: float = 0.0
    n_labelled: int = 0
    pixel_size_um: float | None = None
    n_models: int = 0


@dataclass(frozen=True)
class ModelRecord:
    """One stored model file (kind ``"rf"`` or ``"unet"``, task, summary of its metadata).

    ``note`` is a free description given when it was added; ``role`` is how the
    model relates to the image it was listed for (:meth:`Workspace.models` with
    ``image_id``), empty otherwise.
    """

    id: int
    name: str
    sha256: str
    kind: str
    task: str | None
    path: Path
    size: int
    created: float
    summary: dict = field(default_factory=dict)
    note: str | None = None
    role: str = ""


class Strokes(NamedTuple):
    """The stored annotation of one image.

    ``frames`` maps frame index to its label image (0 unlabelled, k class k);
    ``classes`` and ``task`` are None when nothing was ever saved for the image;
    ``versions`` maps frame index to the version of its stored strokes (pass it to
    :meth:`Workspace.save_strokes` as ``expected`` to notice a save made elsewhere).
    """

    frames: dict[int, np.ndarray]
    classes: Any
    task: str | None
    versions: dict[int, str] = {}  # noqa: RUF012 - a NamedTuple default, never mutated


ANY_VERSION = object()  # save_strokes: overwrite whatever is stored


class StrokesChanged(InputError):
    """The stored strokes of a frame are not the version the caller last saw: another
    session saved them in between (nothing was written)."""


def default_root() -> Path:
    """``$MICROSEG_WORKSPACE``, else ``~/.microseg/workspace``."""
    env = os.environ.get("MICROSEG_WORKSPACE")
    return Path(env).expanduser() if env else Path.home() / ".microseg" / "workspace"


class Workspace:
    """Images, strokes and models of one user, in one folder (see the module notes).

    Use :meth:`open`; an instance may be shared between threads (every call opens
    its own database connection, and writes are serialised).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, root: str | os.PathLike | None = None) -> Workspace:
        """Open (creating if needed) the workspace in ``root``.

        Parameters
        ----------
        root : str or Path, optional
            Workspace folder; default :func:`default_root`.

        Returns
        -------
        Workspace

        Raises
        ------
        InputError
            When the folder cannot be created or written, or its database is
            corrupt, foreign or from a newer microseg.
        """
        root = Path(root).expanduser() if root is not None else default_root()
        try:
            root.mkdir(parents=True, exist_ok=True)
            for sub in ("images", "strokes", "models"):
                (root / sub).mkdir(exist_ok=True)
            probe = root / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(
                f"The workspace folder {root} cannot be used ({exc.strerror or exc})."
            ) from exc
        ws = cls(root)
        ws._init_db()
        ws.sweep_leftovers()
        return ws

    def sweep_leftovers(self, older_than_s: float = LEFTOVER_AGE_S) -> int:
        """Remove what an interrupted save left behind: temporary files and image,
        stroke or model files that no database row points to, once older than
        ``older_than_s`` (a save in progress in another session is never touched).

        Returns the number of files removed. Best effort: a file that cannot be
        removed is left where it is.
        """
        with self._lock, self._connect() as con:
            known = {
                str(r[0])
                for table in ("images", "annotations", "models")
                for r in con.execute(f"SELECT path FROM {table}")  # noqa: S608 - fixed names
            }
        cutoff = time.time() - older_than_s
        removed = 0
        for sub in ("images", "strokes", "models"):
            for path in (self.root / sub).rglob("*"):
                try:
                    if not path.is_file() or path.stat().st_mtime > cutoff:
                        continue
                    if path.relative_to(self.root).as_posix() in known:
                        continue
                    path.unlink()
                    removed += 1
                except OSError:
                    continue
        return removed

    def _init_db(self) -> None:
        db = self.db_path
        if db.is_file() and db.stat().st_size > 0:
            with open(db, "rb") as fh:
                if fh.read(16) != _SQLITE_MAGIC:
                    raise InputError(_foreign(db))
        with self._lock, self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            if con.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise InputError(f"The workspace database {db} is damaged; move it aside.")
            con.execute("BEGIN IMMEDIATE")
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            if not tables and app_id == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute("INSERT INTO schema_version VALUES (1)")
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            elif app_id != APPLICATION_ID or "schema_version" not in tables:
                raise InputError(_foreign(db))
            version = con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if version is None or version > SCHEMA_VERSION:
                raise InputError(
                    f"The workspace database {db} was written by a newer microseg "
                    f"(schema {version}); update microseg to use it."
                )
            for v in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[v]:
                    con.execute(statement)
                con.execute("UPDATE schema_version SET version = ?", (v + 1,))
            con.execute("COMMIT")

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for one call; ``write`` runs the body as one immediate transaction."""
        try:
            con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(
                f"The workspace database {self.db_path} cannot be opened ({exc})."
            ) from exc
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA foreign_keys = ON")
            if write:
                con.execute("BEGIN IMMEDIATE")
            yield con
            if write:
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"The workspace database {self.db_path} cannot be used ({exc})."
            ) from exc
        finally:
            if con.in_transaction:
                con.execute("ROLLBACK")
            con.close()

    # ------------------------------------------------------------------- images

    def add_image(
        self, data: bytes, name: str, *, info: dict | None = None, source: dict | None = None
    ) -> ImageRecord:
        """Store an image's source bytes; the existing record is returned for known bytes.

        Parameters
        ----------
        data : bytes
            The file as read (or any bytes that identify the image).
        name : str
            File or sample name shown to the user.
        info, source : dict, optional
            JSON descriptions: shape/dtype/pixel size, and where the image came from.

        Returns
        -------
        ImageRecord
        """
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        existing = self._image_by_sha(digest)
        if existing is not None:
            return existing
        suffix = Path(name).suffix.lower()
        if not (2 <= len(suffix) <= 6 and suffix[1:].isalnum()):
            suffix = ".bin"
        rel = f"images/{digest}{suffix}"
        with self._lock:
            _write_atomic(self.root / rel, data)
            now = self._next_time()
            try:
                with self._connect(write=True) as con:
                    con.execute(
                        "INSERT INTO images (name, sha256, path, size, info, source, added, opened)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (name, digest, rel, len(data), _dumps(info), _dumps(source), now, now),
                    )
            except InputError:
                existing = self._image_by_sha(digest)
                if existing is not None:
                    return existing
                raise
        record = self._image_by_sha(digest)
        assert record is not None
        return record

    def images(self) -> list[ImageRecord]:
        """All stored images, most recently opened first."""
        with self._connect() as con:
            rows = con.execute(_IMAGE_SELECT + " ORDER BY i.opened DESC, i.id DESC").fetchall()
        return [self._image_record(r) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        """The record of image ``image_id`` (InputError when it is not stored)."""
        with self._connect() as con:
            row = con.execute(_IMAGE_SELECT + " WHERE i.id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise InputError(f"The workspace has no image {image_id}.")
        return self._image_record(row)

    def image_bytes(self, image_id: int) -> bytes:
        """The stored source bytes of image ``image_id``."""
        record = self.image(image_id)
        try:
            return record.path.read_bytes()
        except OSError as exc:
            raise InputError(
                f"The stored file of {record.name} cannot be read ({exc.strerror or exc})."
            ) from exc

    def touch_image(self, image_id: int) -> None:
        """Mark image ``image_id`` as opened now (it moves to the top of :meth:`images`)."""
        with self._lock, self._connect(write=True) as con:
            cur = con.execute(
                "UPDATE images SET opened = ? WHERE id = ?", (self._next_time(con), int(image_id))
            )
            if cur.rowcount == 0:
                raise InputError(f"The workspace has no image {image_id}.")

    def set_pixel_size(self, image_id: int, pixel_size_um: float | None) -> None:
        """Store the pixel size (µm) the user set for image ``image_id`` (None: the file's).

        Raises
        ------
        InputError
            When the image is not stored or the value is not a positive number.
        """
        if pixel_size_um is not None:
            from microseg.pixel_size import check_pixel_size

            pixel_size_um = check_pixel_size(pixel_size_um, "A pixel size")
        with self._lock, self._connect(write=True) as con:
            cur = con.execute(
                "UPDATE images SET pixel_size_um = ? WHERE id = ?", (pixel_size_um, int(image_id))
            )
            if cur.rowcount == 0:
                raise InputError(f"The workspace has no image {image_id}.")

    def delete_image(self, image_id: int) -> None:
        """Remove image ``image_id``, its strokes and their files.

        Models linked to this image only are removed with their files; models
        also linked to another image stay.
        """
        with self._lock:
            with self._connect(write=True) as con:
                row = con.execute(
                    "SELECT path FROM images WHERE id = ?", (int(image_id),)
                ).fetchone()
                if row is None:
                    raise InputError(f"The workspace has no image {image_id}.")
                files = [row["path"]] + [
                    r["path"]
                    for r in con.execute(
                        "SELECT path FROM annotations WHERE image_id = ?", (int(image_id),)
                    )
                ]
                linked = [
                    r["model_id"]
                    for r in con.execute(
                        "SELECT model_id FROM image_models WHERE image_id = ?", (int(image_id),)
                    )
                ]
                con.execute("DELETE FROM images WHERE id = ?", (int(image_id),))
                files += _drop_unlinked(con, linked)
            for rel in files:
                (self.root / rel).unlink(missing_ok=True)
            shutil.rmtree(self.root / "strokes" / str(int(image_id)), ignore_errors=True)

    # ------------------------------------------------------------------ strokes

    def save_strokes(
        self,
        image_id: int,
        t: int,
        labels: np.ndarray | None,
        classes: Any = None,
        task: str | None = None,
        *,
        expected: str | None | object = ANY_VERSION,
    ) -> str | None:
        """Store the strokes of frame ``t`` (None or all zeros removes them).

        Parameters
        ----------
        image_id : int
            Workspace image id.
        t : int
            Frame index.
        labels : ndarray or None
            2-D integer label image (0 unlabelled, k class k), kept in its dtype.
        classes : JSON value, optional
            Class definitions (names, colours) of the image; stored when given.
        task : str, optional
            Task of the classes; stored when given.
        expected : str or None, optional
            The version of the frame's strokes the caller last saw (``None``: none
            stored); when the stored version differs, :class:`StrokesChanged` is raised
            and nothing is written. Default: overwrite.

        Returns
        -------
        str or None
            The new version of the frame's strokes (None when they were removed).
        """
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim != 2 or labels.dtype.kind not in "ui":
                raise InputError(
                    f"Strokes must be a 2-D integer image, got {labels.ndim}-D {labels.dtype}."
                )
            if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
                raise InputError("Strokes must not hold negative labels.")
        keep = labels is not None and bool(labels.any())
        rel = None
        with self._lock:
            if keep:
                rel = f"strokes/{int(image_id)}/t{int(t)}-{uuid.uuid4().hex[:12]}.npy"
                _write_atomic(self.root / rel, _npy_bytes(labels))
            old = None
            try:
                with self._connect(write=True) as con:
                    _require(con, "images", image_id)
                    prev = con.execute(
                        "SELECT path FROM annotations WHERE image_id = ? AND t = ?",
                        (int(image_id), int(t)),
                    ).fetchone()
                    old = prev["path"] if prev is not None else None
                    if expected is not ANY_VERSION and expected != old:
                        raise StrokesChanged(
                            f"The strokes of frame {int(t)} were changed in another tab or "
                            "session after you opened this image; nothing was overwritten."
                        )
                    if keep:
                        con.execute(
                            "INSERT OR REPLACE INTO annotations"
                            " (image_id, t, path, dtype, n_labelled, updated)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (int(image_id), int(t), rel, str(labels.dtype),
                             int(np.count_nonzero(labels)), time.time()),
                        )  # fmt: skip
                    else:
                        con.execute(
                            "DELETE FROM annotations WHERE image_id = ? AND t = ?",
                            (int(image_id), int(t)),
                        )
                    if classes is not None:
                        con.execute(
                            "UPDATE images SET classes = ? WHERE id = ?",
                            (_dumps(classes), int(image_id)),
                        )
                    if task is not None:
                        con.execute(
                            "UPDATE images SET task = ? WHERE id = ?", (task, int(image_id))
                        )
            except BaseException:
                if rel is not None:
                    (self.root / rel).unlink(missing_ok=True)
                raise
            if old is not None and old != rel:
                (self.root / old).unlink(missing_ok=True)
        return rel

    def save_classes(self, image_id: int, classes: Any, task: str | None = None) -> None:
        """Store the class definitions (and task) of image ``image_id`` without its strokes."""
        with self._lock, self._connect(write=True) as con:
            cur = con.execute(
                "UPDATE images SET classes = ?, task = COALESCE(?, task) WHERE id = ?",
                (_dumps(classes), task, int(image_id)),
            )
            if cur.rowcount == 0:
                raise InputError(f"The workspace has no image {image_id}.")

    def load_strokes(self, image_id: int) -> Strokes:
        """The stored strokes of every frame of image ``image_id``, with its classes and task.

        Raises
        ------
        InputError
            When the image is not stored or a stroke file is missing, damaged or
            holds anything but a 2-D integer array (pickles are never loaded).
        """
        with self._connect() as con:
            row = con.execute(
                "SELECT name, classes, task FROM images WHERE id = ?", (int(image_id),)
            ).fetchone()
            if row is None:
                raise InputError(f"The workspace has no image {image_id}.")
            rows = con.execute(
                "SELECT t, path FROM annotations WHERE image_id = ? ORDER BY t", (int(image_id),)
            ).fetchall()
        frames = {int(r["t"]): _load_labels(self.root / r["path"], row["name"]) for r in rows}
        classes = json.loads(row["classes"]) if row["classes"] is not None else None
        versions = {int(r["t"]): str(r["path"]) for r in rows}
        return Strokes(frames, classes, row["task"], versions)

    # ------------------------------------------------------------------- models

    def add_model(
        self,
        model: str | os.PathLike | bytes,
        name: str,
        *,
        image_id: int | None = None,
        role: str = "",
        note: str | None = None,
        replace: bool = False,
    ) -> ModelRecord:
        """Copy a model file (safetensors, see :mod:`microseg.modelfile`) into the workspace.

        Parameters
        ----------
        model : str, Path or bytes
            The model file, or its bytes.
        name : str
            Name shown to the user.
        image_id : int, optional
            Image the model was trained on (or loaded for); the model is linked to it.
        role : str, optional
            How the model relates to the image, e.g. ``"trained"`` or ``"uploaded"``.
        note : str, optional
            Free description kept with a newly stored model.
        replace : bool, optional
            With ``image_id``: the other models of the same kind and role linked to
            the image are unlinked from it, and those linked to no other image are
            removed with their files (one random forest per image, say).

        Returns
        -------
        ModelRecord
            The new record, or the existing one for a file already stored (then
            only the link is added).

        Raises
        ------
        ModelFileError
            When the file is not a microseg model (a pickle is refused unread).
        InputError
            When ``image_id`` is not a stored image.
        """
        from microseg.modelfile import file_hash, read_metadata

        tmp = self.root / "models" / f".incoming-{uuid.uuid4().hex}.safetensors"
        dropped: list[str] = []
        try:
            with self._lock:
                if isinstance(model, bytes | bytearray | memoryview):
                    _write_atomic(tmp, bytes(model))
                else:
                    shutil.copyfile(model, tmp)
                try:
                    meta = read_metadata(tmp)
                except ModelFileError as exc:  # name the model, not the temporary file
                    raise ModelFileError(str(exc).replace(tmp.name, name)) from None
                digest = file_hash(tmp)
                rel = f"models/{digest}.safetensors"
                kind = str(meta.get("kind", ""))
                summary = {k: meta[k] for k in ("classes", "microseg_version", "training")
                           if k in meta}  # fmt: skip
                moved = False
                try:
                    with self._connect(write=True) as con:
                        if image_id is not None:
                            _require(con, "images", image_id)
                        row = con.execute(
                            "SELECT id, kind FROM models WHERE sha256 = ?", (digest,)
                        ).fetchone()
                        if row is None:
                            os.replace(tmp, self.root / rel)
                            moved = True
                            cur = con.execute(
                                "INSERT INTO models (name, sha256, kind, task, path, size,"
                                " created, summary, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (name, digest, kind, meta.get("task"), rel,
                                 (self.root / rel).stat().st_size, time.time(), _dumps(summary),
                                 note),
                            )  # fmt: skip
                            model_id = int(cur.lastrowid)
                        else:
                            model_id, kind = int(row["id"]), row["kind"]
                        if image_id is not None:
                            dropped = self._link(con, model_id, int(image_id), role, kind, replace)
                except BaseException:
                    if moved:
                        (self.root / rel).unlink(missing_ok=True)
                    raise
        except OSError as exc:
            raise InputError(
                f"The model {name} cannot be copied into the workspace ({exc.strerror or exc})."
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
        for old in dropped:
            (self.root / old).unlink(missing_ok=True)
        record = self._model_by_sha(digest)
        assert record is not None
        return record

    def _link(
        self, con: sqlite3.Connection, model_id: int, image_id: int, role: str, kind: str,
        replace: bool,
    ) -> list[str]:  # fmt: skip
        """Link a model to an image; with ``replace`` drop its rivals. Returns files to remove."""
        con.execute(
            "INSERT OR IGNORE INTO image_models (image_id, model_id, role, added)"
            " VALUES (?, ?, ?, ?)",
            (image_id, model_id, role, time.time()),
        )
        if not replace:
            return []
        rivals = [
            r["model_id"]
            for r in con.execute(
                "SELECT l.model_id FROM image_models l JOIN models m ON m.id = l.model_id"
                " WHERE l.image_id = ? AND l.role = ? AND m.kind = ? AND l.model_id != ?",
                (image_id, role, kind, model_id),
            )
        ]
        con.executemany(
            "DELETE FROM image_models WHERE image_id = ? AND model_id = ?",
            [(image_id, m) for m in rivals],
        )
        return _drop_unlinked(con, rivals)

    def models(self, image_id: int | None = None) -> list[ModelRecord]:
        """Stored models, newest first: all of them, or those linked to image ``image_id``.

        Records listed for an image carry the link's ``role``.
        """
        with self._connect() as con:
            if image_id is None:
                rows = con.execute(
                    "SELECT *, '' AS role FROM models ORDER BY created DESC, id DESC"
                ).fetchall()
            else:
                rows = con.execute(
                    "SELECT m.*, l.role AS role FROM models m"
                    " JOIN image_models l ON l.model_id = m.id WHERE l.image_id = ?"
                    " ORDER BY m.created DESC, m.id DESC",
                    (int(image_id),),
                ).fetchall()
        return [self._model_record(r) for r in rows]

    def model(self, model_id: int) -> ModelRecord:
        """The record of model ``model_id`` (InputError when it is not stored)."""
        with self._connect() as con:
            row = con.execute(
                "SELECT *, '' AS role FROM models WHERE id = ?", (int(model_id),)
            ).fetchone()
        if row is None:
            raise InputError(f"The workspace has no model {model_id}.")
        return self._model_record(row)

    def model_path(self, model_id: int) -> Path:
        """Path of the stored file of model ``model_id`` (load it with ``load_segmenter``)."""
        with self._connect() as con:
            row = con.execute("SELECT path FROM models WHERE id = ?", (int(model_id),)).fetchone()
        if row is None:
            raise InputError(f"The workspace has no model {model_id}.")
        return self.root / row["path"]

    def delete_model(self, model_id: int) -> None:
        """Remove model ``model_id`` and its file."""
        with self._lock:
            with self._connect(write=True) as con:
                row = con.execute(
                    "SELECT path FROM models WHERE id = ?", (int(model_id),)
                ).fetchone()
                if row is None:
                    raise InputError(f"The workspace has no model {model_id}.")
                con.execute("DELETE FROM models WHERE id = ?", (int(model_id),))
            (self.root / row["path"]).unlink(missing_ok=True)

    # ---------------------------------------------------------- specimen fields

    def save_specimen_fields(self, fields: list[dict[str, Any]]) -> None:
        """Replace the stored fields of the specimen by ``fields`` (in order).

        Each field is a JSON-serialisable dict; its ``image_id`` (optional) links it
        to a stored image, and is set to None if that image is deleted.
        """
        rows = []
        for f in fields:
            image_id = f.get("image_id")
            rows.append((None if image_id is None else int(image_id), _dumps(f)))
        with self._lock, self._connect(write=True) as con:
            known = {r[0] for r in con.execute("SELECT id FROM images")}
            con.execute("DELETE FROM specimen_fields")
            now = time.time()
            for image_id, data in rows:
                con.execute(
                    "INSERT INTO specimen_fields (image_id, data, added) VALUES (?, ?, ?)",
                    (image_id if image_id in known else None, data, now),
                )

    def specimen_fields(self) -> list[dict[str, Any]]:
        """The stored fields of the specimen, in the order they were saved."""
        with self._connect() as con:
            rows = con.execute("SELECT image_id, data FROM specimen_fields ORDER BY id").fetchall()
        out = []
        for row in rows:
            try:
                f = json.loads(row["data"])
            except json.JSONDecodeError:
                continue  # a damaged record is skipped, the others are kept
            if isinstance(f, dict):
                f["image_id"] = row["image_id"]
                out.append(f)
        return out

    # ---------------------------------------------------------------- internals

    def _next_time(self, con: sqlite3.Connection | None = None) -> float:
        """Now, but strictly after every stored open time (keeps the order exact)."""
        if con is None:
            with self._connect() as own:
                return self._next_time(own)
        last = con.execute("SELECT MAX(opened) FROM images").fetchone()[0] or 0.0
        return max(time.time(), last + 1e-6)

    def _image_by_sha(self, digest: str) -> ImageRecord | None:
        with self._connect() as con:
            row = con.execute(_IMAGE_SELECT + " WHERE i.sha256 = ?", (digest,)).fetchone()
        return None if row is None else self._image_record(row)

    def _model_by_sha(self, digest: str) -> ModelRecord | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT *, '' AS role FROM models WHERE sha256 = ?", (digest,)
            ).fetchone()
        return None if row is None else self._model_record(row)

    def _image_record(self, row: sqlite3.Row) -> ImageRecord:
        return ImageRecord(
            id=row["id"],
            name=row["name"],
            sha256=row["sha256"],
            path=self.root / row["path"],
            size=row["size"],
            info=json.loads(row["info"]),
            source=json.loads(row["source"]),
            added=row["added"],
            opened=row["opened"],
            n_labelled=row["n_labelled"],
            pixel_size_um=row["pixel_size_um"],
            n_models=row["n_models"],
        )

    def _model_record(self, row: sqlite3.Row) -> ModelRecord:
        return ModelRecord(
            id=row["id"],
            name=row["name"],
            sha256=row["sha256"],
            kind=row["kind"],
            task=row["task"],
            path=self.root / row["path"],
            size=row["size"],
            created=row["created"],
            summary=json.loads(row["summary"]),
            note=row["note"],
            role=row["role"] or "",
        )


_IMAGE_SELECT = (
    "SELECT i.*, (SELECT COUNT(*) FROM annotations a WHERE a.image_id = i.id) AS n_labelled,"
    " (SELECT COUNT(*) FROM image_models l WHERE l.image_id = i.id) AS n_models"
    " FROM images i"
)


def _drop_unlinked(con: sqlite3.Connection, model_ids: list[int]) -> list[str]:
    """Delete the rows of those models that no image links to; returns their file paths."""
    paths = []
    for model_id in model_ids:
        row = con.execute(
            "SELECT path FROM models WHERE id = ? AND NOT EXISTS"
            " (SELECT 1 FROM image_models WHERE model_id = ?)",
            (int(model_id), int(model_id)),
        ).fetchone()
        if row is not None:
            con.execute("DELETE FROM models WHERE id = ?", (int(model_id),))
            paths.append(row["path"])
    return paths


def _require(con: sqlite3.Connection, table: str, row_id: int) -> None:
    """Raise InputError when ``table`` has no row ``row_id`` (ids are never reused)."""
    if con.execute(f"SELECT 1 FROM {table} WHERE id = ?", (int(row_id),)).fetchone() is None:
        kind = "image" if table == "images" else "model"
        raise InputError(f"The workspace has no {kind} {row_id}.")


def _foreign(db: Path) -> str:
    return (
        f"{db} is not a microseg workspace database; move it aside or choose another "
        "workspace folder."
    )


def _dumps(value: Any) -> str:
    return json.dumps({} if value is None else value, default=str)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name beside ``path``, then move it into place.

    A failed write (a full disk, a folder made read-only) leaves nothing behind and is
    one sentence (:class:`InputError`); what was stored before stays as it was.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(
            f"The workspace could not save to {path.parent} ({exc.strerror or exc}); "
            "nothing was changed: free some disk space or check the folder, then try again."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _npy_bytes(labels: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(labels), allow_pickle=False)
    return buf.getvalue()


def _load_labels(path: Path, image_name: str) -> np.ndarray:
    """Read one stroke file: a 2-D integer ``.npy``; pickled content is refused."""
    try:
        labels = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise InputError(f"A stroke file of {image_name} is missing ({path.name}).") from exc
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(
            f"The stroke file {path.name} of {image_name} is damaged or not a label array, "
            "so it was not loaded."
        ) from exc
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.dtype.kind not in "ui":
        raise InputError(
            f"The stroke file {path.name} of {image_name} does not hold a 2-D integer label image."
        )
    return labels
