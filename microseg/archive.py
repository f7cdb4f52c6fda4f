"""A workspace as one file: export a project to a zip and import it on another machine.

The archive holds ``manifest.json`` (format, version and the SHA-256 and size of
every other member), ``project.json`` (the database rows as JSON: images with
their classes, task, pixel size and stroke files; models with their links to
images; the specimen fields) and the files themselves::

    images/<sha256><suffix>        source bytes, as stored
    strokes/<image>/t<t>.npy       stroke labels of one frame (np.save, no pickles)
    models/<sha256>.safetensors    model files

Importing checks the whole archive before anything is written — only known member
names, every member listed with a matching checksum, sizes within bounds — and then
adds everything through :class:`~microseg.store.Workspace`, which validates each
image, stroke array and model file again. Nothing in the file is ever executed or
unpickled; a tampered, truncated or foreign file is refused with one sentence.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microseg.errors import InputError
from microseg.store import Workspace

FORMAT = "microseg-project"
FORMAT_VERSION = 1
MAX_MEMBERS = 100_000
MAX_TOTAL_BYTES = 64 * 1024**3  # uncompressed: larger than any project a lab would move
MAX_RATIO = 1000  # uncompressed / compressed size of one member beyond this: a zip bomb
_MEMBER = re.compile(
    r"^(images/[0-9a-f]{64}(\.[a-z0-9]{1,5})?|strokes/\d{1,9}/t\d{1,9}\.npy"
    r"|models/[0-9a-f]{64}\.safetensors)$"
)


@dataclass(frozen=True)
class ImportSummary:
    """What an import added: counts of images, stroke frames, models and specimen fields."""

    images: int
    frames: int
    models: int
    fields: int


def export_project(ws: Workspace, dest: str | Path, name: str = "") -> Path:
    """Write the whole workspace ``ws`` to the zip file ``dest``.

    Parameters
    ----------
    ws : Workspace
        The project to export.
    dest : str or Path
        The archive to write (replaced atomically when it exists).
    name : str
        The project's name, kept in the manifest.

    Returns
    -------
    Path
        ``dest``.
    """
    dest = Path(dest)
    members: dict[str, bytes] = {}
    images = []
    for rec in reversed(ws.images()):  # oldest first: an import keeps the order
        data = ws.image_bytes(rec.id)
        file = f"images/{rec.sha256}{_suffix(rec.path.suffix)}"
        members[file] = data
        saved = ws.load_strokes(rec.id)
        strokes = {}
        for t, labels in saved.frames.items():
            member = f"strokes/{rec.id}/t{t}.npy"
            buf = io.BytesIO()
            np.save(buf, labels, allow_pickle=False)
            members[member] = buf.getvalue()
            strokes[str(t)] = member
        images.append({
            "key": rec.id, "name": rec.name, "file": file, "info": rec.info,
            "source": rec.source, "classes": saved.classes, "task": saved.task,
            "pixel_size_um": rec.pixel_size_um, "strokes": strokes,
        })  # fmt: skip
    links: dict[int, list[dict[str, Any]]] = {}
    for rec in images:
        for m in ws.models(rec["key"]):
            links.setdefault(m.id, []).append({"image": rec["key"], "role": m.role})
    models = []
    for m in reversed(ws.models()):
        file = f"models/{m.sha256}.safetensors"
        try:
            members[file] = m.path.read_bytes()
        except OSError as exc:
            raise InputError(f"The stored file of the model {m.name} cannot be read.") from exc
        models.append({"name": m.name, "file": file, "note": m.note,
                       "links": links.get(m.id, [])})  # fmt: skip
    project = {"images": images, "models": models, "specimen_fields": ws.specimen_fields()}
    members["project.json"] = json.dumps(project, allow_nan=False).encode()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": str(name),
        "created": time.time(),
        "files": {k: {"sha256": _sha(v), "size": len(v)} for k, v in members.items()},
    }
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=1))
            for member, data in members.items():
                zf.writestr(member, data)
        tmp.replace(dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"The project file {dest.name} cannot be written ({exc.strerror or exc})."
        ) from exc
    return dest


def read_manifest(source: str | Path | bytes) -> dict[str, Any]:
    """The manifest of a project file after checking the whole archive (see the module
    notes); :class:`InputError` with one sentence when it is not a sound project file."""
    with _open_zip(source) as zf:
        manifest, _ = _checked(zf)
    return manifest


def import_project(source: str | Path | bytes, ws: Workspace) -> ImportSummary:
    """Add the project in ``source`` (a path or the file's bytes) to the workspace ``ws``.

    The archive is checked whole before anything is written; the workspace should be
    a new, empty one (a new project), which the caller removes when this raises.

    Raises
    ------
    InputError
        When the file is not a microseg project, was changed or cut short, or holds
        anything the workspace refuses (the sentence says which).
    """
    with _open_zip(source) as zf:
        _, project = _checked(zf)
        strokes = {  # every stroke array is read and checked before anything is written
            member: _labels(zf.read(member), rec["name"])
            for rec in project["images"]
            for member in rec["strokes"].values()
        }
        ids: dict[int, int] = {}
        frames = 0
        for rec in project["images"]:
            new = ws.add_image(zf.read(rec["file"]), rec["name"], info=rec["info"],
                               source=rec["source"])  # fmt: skip
            ids[rec["key"]] = new.id
            if rec["pixel_size_um"] is not None:
                ws.set_pixel_size(new.id, rec["pixel_size_um"])
            if rec["classes"] is not None:
                ws.save_classes(new.id, rec["classes"], rec["task"])
            for t, member in rec["strokes"].items():
                ws.save_strokes(new.id, int(t), strokes[member])
                frames += 1
        for m in project["models"]:
            data = zf.read(m["file"])
            targets = [(ids[link["image"]], link["role"]) for link in m["links"]]
            if not targets:
                ws.add_model(data, m["name"], note=m["note"])
            for image_id, role in targets:
                ws.add_model(data, m["name"], image_id=image_id, role=role, note=m["note"])
        fields = []
        for f in project["specimen_fields"]:
            f = dict(f)
            f["image_id"] = ids.get(f.get("image_id"))  # type: ignore[arg-type]
            fields.append(f)
        if fields:
            ws.save_specimen_fields(fields)
    return ImportSummary(len(ids), frames, len(project["models"]), len(fields))


# ---------------------------------------------------------------------- checks


def _open_zip(source: str | Path | bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise InputError(_not_a_project("it is not a zip archive, or it is cut short")) from exc
    except OSError as exc:
        raise InputError(f"The project file cannot be read ({exc.strerror or exc}).") from exc


def _not_a_project(why: str) -> str:
    return f"This is not a microseg project file that can be imported: {why}."


def _checked(zf: zipfile.ZipFile) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, project) once every member is known, listed and intact."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InputError(_not_a_project(f"it holds more than {MAX_MEMBERS} files"))
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise InputError(_not_a_project("a file name appears twice in it"))
    if "manifest.json" not in names:
        raise InputError(_not_a_project("it has no manifest.json"))
    total = 0
    for info in infos:
        if info.filename not in ("manifest.json", "project.json") and not _MEMBER.match(
            info.filename
        ):
            raise InputError(_not_a_project(f"it holds an unexpected file {info.filename[:80]!r}"))
        total += info.file_size
        if info.file_size > MAX_RATIO * max(info.compress_size, 1024):
            raise InputError(_not_a_project(f"{info.filename} expands implausibly (a zip bomb)"))
    if total > MAX_TOTAL_BYTES:
        raise InputError(_not_a_project(f"it unpacks to more than {MAX_TOTAL_BYTES >> 30} GiB"))
    manifest = _json(_read(zf, "manifest.json"), "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(_not_a_project("its manifest is not a microseg project manifest"))
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(_not_a_project("its manifest has no whole-number format version"))
    if version > FORMAT_VERSION:
        raise InputError(
            f"This project file is of format version {version}, made by a newer microseg "
            f"(this one reads up to {FORMAT_VERSION}); update microseg to import it."
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(names) - {"manifest.json"}:
        raise InputError(
            _not_a_project("its files do not match its manifest (changed or cut short)")
        )
    for name, entry in files.items():
        size, digest = _stream_sha(zf, name)
        if (
            not isinstance(entry, dict)
            or entry.get("size") != size
            or entry.get("sha256") != digest
        ):
            raise InputError(
                _not_a_project(f"{name} does not match its checksum (the file was changed)")
            )
    project = _json(_read(zf, "project.json"), "project.json")
    _check_project(project, set(names))
    return manifest, project


def _read(zf: zipfile.ZipFile, name: str) -> bytes:
    try:
        return zf.read(name)
    except KeyError as exc:
        raise InputError(_not_a_project(f"it has no {name}")) from exc
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, ValueError) as exc:
        raise InputError(_not_a_project(f"{name} in it is damaged or cut short")) from exc


def _stream_sha(zf: zipfile.ZipFile, name: str) -> tuple[int, str]:
    """(size, SHA-256) of a member, read in pieces (a large image is never held whole)."""
    h, size = hashlib.sha256(), 0
    try:
        with zf.open(name) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, ValueError) as exc:
        raise InputError(_not_a_project(f"{name} in it is damaged or cut short")) from exc
    return size, h.hexdigest()


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InputError(_not_a_project(f"{name} is not valid JSON")) from exc


def _check_project(project: Any, names: set[str]) -> None:
    """Types and references of ``project.json`` (what the workspace cannot check itself)."""

    def bad(why: str) -> InputError:
        return InputError(_not_a_project(f"project.json {why}"))

    if not isinstance(project, dict):
        raise bad("is not a mapping")
    for key in ("images", "models", "specimen_fields"):
        if not isinstance(project.get(key), list):
            raise bad(f"has no list of {key.replace('_', ' ')}")
    keys: set[int] = set()
    for rec in project["images"]:
        if not isinstance(rec, dict):
            raise bad("lists an image that is not a mapping")
        if not _is_int(rec.get("key")) or rec["key"] in keys:
            raise bad("lists an image without a unique whole-number key")
        keys.add(rec["key"])
        if not isinstance(rec.get("name"), str) or rec.get("file") not in names:
            raise bad("lists an image without a name or file")
        if not str(rec["file"]).startswith("images/"):
            raise bad("lists an image whose file is not an image file")
        for k in ("info", "source"):
            if not isinstance(rec.get(k), dict):
                raise bad(f"lists an image whose {k} is not a mapping")
        if rec.get("task") is not None and not isinstance(rec["task"], str):
            raise bad("lists an image whose task is not text")
        ps = rec.get("pixel_size_um")
        if ps is not None and (not isinstance(ps, int | float) or isinstance(ps, bool)):
            raise bad("lists an image whose pixel size is not a number")
        strokes = rec.get("strokes")
        if not isinstance(strokes, dict) or any(
            not (t.isdigit() and m in names and str(m).startswith("strokes/"))
            for t, m in strokes.items()
        ):
            raise bad("lists strokes that are not frame numbers and stroke files")
    for m in project["models"]:
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise bad("lists a model without a name")
        if m.get("file") not in names or not str(m["file"]).startswith("models/"):
            raise bad("lists a model without a model file")
        if m.get("note") is not None and not isinstance(m["note"], str):
            raise bad("lists a model whose note is not text")
        links = m.get("links")
        if not isinstance(links, list) or any(
            not isinstance(link, dict)
            or link.get("image") not in keys
            or not isinstance(link.get("role"), str)
            for link in links
        ):
            raise bad("links a model to an image it does not list")
    for f in project["specimen_fields"]:
        if not isinstance(f, dict):
            raise bad("lists a specimen field that is not a mapping")


def _labels(data: bytes, image_name: str) -> np.ndarray:
    try:
        labels = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(
            _not_a_project(f"the strokes of {image_name} are not a plain array")
        ) from exc
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.dtype.kind not in "ui":
        raise InputError(_not_a_project(f"the strokes of {image_name} are not a 2-D integer array"))
    return labels


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _suffix(suffix: str) -> str:
    s = suffix.lower()
    return s if re.fullmatch(r"\.[a-z0-9]{1,5}", s) else ""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ImportSummary",
    "export_project",
    "import_project",
    "read_manifest",
]
