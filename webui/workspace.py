"""The workspace behind the session: images, strokes, classes, pixel sizes and models
survive a refresh or restart.

Each image that is opened is registered in the server's
:class:`~microseg.store.Workspace` (``$MICROSEG_WORKSPACE`` or
``~/.microseg/workspace``); its strokes, classes and pixel size are saved
whenever they change and restored when the image is opened again. Models
trained on an image (or loaded while it is open) are saved linked to it and
offered again, loaded only when chosen. When the folder cannot be used, the app
keeps working in memory and the reason is kept in ``workspace_error`` for the
home page to show.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from microseg.errors import InputError, MicrosegError, ModelFileError
from microseg.projects import DEFAULT_SLUG, Project, get_project, home_project
from microseg.store import ANY_VERSION, ImageRecord, ModelRecord, StrokesChanged, Workspace
from webui import state

if TYPE_CHECKING:
    from microseg.segmenter import Segmenter

TRAINED, UPLOADED = "trained", "uploaded"  # how a saved model relates to its image
KIND_NAMES = {"rf": "Random forest", "unet": "U-Net"}
SAVED = "ws:"  # prefix of the model ids of saved models (see webui.models)


@st.cache_resource(show_spinner=False)
def _open(root: str) -> Workspace:
    return Workspace.open(root)


def current_project() -> Project:
    """The project this session works in (for a signed-in user: one of theirs). When it
    was deleted (in another tab, by someone else) the session starts over in the
    default project, or the user's first, and says why."""
    slug, user = state.get("project"), state.get("user")
    try:
        return get_project(slug, user=user)
    except InputError:
        home = home_project(user)
        state.start_over(home.slug)
        if slug != DEFAULT_SLUG or not user:
            state.put(
                "project_message",
                f"The project you were working in was deleted; you are in {home.name} now.",
            )
        return home


def workspace() -> Workspace | None:
    """The workspace of the session's project, or None when its folder cannot be used
    (reason kept in state)."""
    root = str(current_project().root)
    try:
        ws = _open(root)
        if not ws.db_path.is_file():  # the folder was removed while the server ran
            _open.clear()
            ws = _open(root)
    except InputError as exc:
        _failed(exc)
        return None
    return ws


def _failed(exc: InputError) -> None:
    state.put("workspace_error", f"Your work is kept in memory only: {exc}")


def sample_bytes(key: str) -> bytes:
    """What identifies a gallery sample in the workspace (samples are rebuilt from their key)."""
    return json.dumps({"microseg_sample": key}).encode()


def remember_image(data: bytes, name: str, source: dict) -> int | None:
    """Register the current image (its source bytes) and restore its saved strokes.

    Parameters
    ----------
    data : bytes
        The uploaded file, or :func:`sample_bytes` for a gallery sample.
    name : str
        Name shown under Recent work.
    source : dict
        How to open it again: ``{"kind": "upload"}`` or ``{"kind": "sample", "key": KEY}``.

    Returns
    -------
    int or None
        The workspace id, or None when the workspace cannot be used.
    """
    ws = workspace()
    image = state.get("image")
    if ws is None or image is None:
        return None
    info = {
        "shape": [int(n) for n in image.data.shape],
        "dtype": str(image.dtype),
        "pixel_size_um": image.pixel_size_um,
    }
    try:
        record = ws.add_image(data, name, info=info, source=source)
        ws.touch_image(record.id)
    except InputError as exc:
        _failed(exc)
        return None
    state.put("workspace_image", record.id)
    state.put("pixel_size_override", record.pixel_size_um)
    state.put("workspace_pixel_size", record.pixel_size_um)
    restore_strokes(record.id)
    return record.id


def restore_strokes(workspace_id: int) -> bool:
    """Replace the current image's strokes, classes and task by those saved for it.

    An image that was never annotated keeps what the loader gave it (a sample's
    own strokes). Returns True when saved strokes were restored.
    """
    ws = workspace()
    if ws is None:
        return False
    try:
        saved = ws.load_strokes(workspace_id)
    except InputError as exc:
        _failed(exc)
        state.put("workspace_image", None)  # do not overwrite what could not be read
        return False
    state.put("workspace_saved", {})
    state.put("workspace_classes", None)
    state.put("workspace_versions", dict(saved.versions))
    state.put("workspace_conflict", None)
    if saved.classes is None:
        return False
    from microseg.tasks import TASKS

    image = state.get("image")
    image_id = state.get("image_id")
    strokes = state.get("strokes")
    for key in [k for k in strokes if k[0] == image_id]:
        del strokes[key]
    restored = {}
    for t, labels in saved.frames.items():
        if 0 <= t < image.n_frames and labels.shape == image.shape_yx:
            restored[t] = strokes[(image_id, t)] = labels.astype(np.uint8, copy=False)
    if saved.task in TASKS:
        state.put("task", saved.task)
    if _valid_classes(saved.classes):
        state.put("classes", [{"name": c["name"], "colour": c["colour"]} for c in saved.classes])
    state.put("workspace_saved", restored)
    state.put("workspace_classes", _classes_key())
    state.put("stroke_undo", [])
    state.put("canvas_gen", state.get("canvas_gen") + 1)
    return True


def _valid_classes(classes: object) -> bool:
    return (
        isinstance(classes, list)
        and len(classes) >= 2
        and all(
            isinstance(c, dict)
            and isinstance(c.get("name"), str)
            and isinstance(c.get("colour"), str)
            for c in classes
        )
    )


def _classes_key() -> str:
    return json.dumps([state.get("classes"), state.get("task")])


def save_current_strokes(overwrite: bool = False) -> int:
    """Save the frames of the current image whose strokes changed since the last save.

    Unchanged frames are recognised by identity or equality (no write); class
    names and colours are saved when they changed on an annotated image. A frame
    saved in another tab since this one last saw it is not overwritten (unless
    ``overwrite``): ``workspace_conflict`` says so and this tab keeps its strokes.
    Returns the number of frames written.
    """
    workspace_id = state.get("workspace_image")
    if workspace_id is None:
        return 0
    image_id = state.get("image_id")
    current = {t: a for (iid, t), a in state.get("strokes").items() if iid == image_id}
    saved = state.get("workspace_saved")
    changed = []
    for t in set(current) | set(saved):
        new, old = current.get(t), saved.get(t)
        if new is old:
            continue
        if new is not None and old is not None and np.array_equal(new, old):
            saved[t] = new
            continue
        changed.append(t)
    key = _classes_key()
    annotated = state.get("workspace_classes") is not None
    if not changed and (not annotated or key == state.get("workspace_classes")):
        return 0
    ws = workspace()
    if ws is None:
        return 0
    classes, task = state.get("classes"), state.get("task")
    versions = state.get("workspace_versions")
    written = 0
    try:
        for t in sorted(changed):
            expected = ANY_VERSION if overwrite else versions.get(t)
            version = ws.save_strokes(
                workspace_id, t, current.get(t), classes, task, expected=expected
            )
            if version is None:
                versions.pop(t, None)
            else:
                versions[t] = version
            if t in current:
                saved[t] = current[t]
            else:
                saved.pop(t, None)
            written += 1
        if not changed:
            ws.save_classes(workspace_id, classes, task)
    except StrokesChanged as exc:
        state.put(
            "workspace_conflict",
            f"{exc} Your strokes are kept in this tab only, until you choose below.",
        )
        return written
    except InputError as exc:
        _failed(exc)
        state.put("workspace_image", None)
        return written
    state.put("workspace_conflict", None)
    state.put("workspace_classes", key)
    return written


def save_pixel_size() -> bool:
    """Save the pixel size typed in (or set from a scale bar) for the current image.

    Nothing is written when it did not change since the last save. Returns True
    when it was written.
    """
    workspace_id = state.get("workspace_image")
    value = state.get("pixel_size_override") or None
    if workspace_id is None or value == state.get("workspace_pixel_size"):
        return False
    ws = workspace()
    if ws is None:
        return False
    try:
        ws.set_pixel_size(workspace_id, value)
    except InputError as exc:
        _failed(exc)
        return False
    state.put("workspace_pixel_size", value)
    return True


def load_specimen_fields() -> list[dict] | None:
    """The specimen's fields saved in the workspace (None when it cannot be used)."""
    ws = workspace()
    if ws is None:
        return None
    try:
        return ws.specimen_fields()
    except InputError as exc:
        _failed(exc)
        return None


def save_specimen_fields(records: list[dict]) -> bool:
    """Replace the specimen's fields in the workspace by ``records`` (JSON dicts)."""
    ws = workspace()
    if ws is None:
        return False
    try:
        ws.save_specimen_fields(records)
    except InputError as exc:
        _failed(exc)
        return False
    return True


def keep_model(
    model: Segmenter,
    role: str,
    name: str,
    *,
    note: str | None = None,
    slot: str | None = None,
    workspace_id: int | None = None,
) -> int | None:
    """Save a model into the workspace, linked to the image it was trained on or loaded for.

    Parameters
    ----------
    model : Segmenter
        Saved through its ``save`` method (safetensors).
    role : str
        :data:`TRAINED` or :data:`UPLOADED`. A random forest trained on an image
        replaces the one trained on it before (it is retrained after every stroke).
    name : str
        Name kept with the model.
    note : str, optional
        How it was made (frame, strokes ...).
    slot : str, optional
        The session slot ('classical' or 'deep') that holds the model, so that it
        is not offered twice.
    workspace_id : int, optional
        The image's workspace id; default the current image's.

    Returns
    -------
    int or None
        The model's workspace id; None when there is no workspace image to link
        it to, or it could not be saved (reason in ``workspace_error``).
    """
    if workspace_id is None:
        workspace_id = state.get("workspace_image")
    ws = workspace()
    if ws is None or workspace_id is None:
        return None
    replace = role == TRAINED and model.metadata.get("kind") == "rf"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = model.save(Path(tmp) / "model.safetensors")
            record = ws.add_model(
                path, name, image_id=workspace_id, role=role, note=note, replace=replace
            )
    except (MicrosegError, OSError) as exc:
        reason = exc if isinstance(exc, MicrosegError) else f"{name} cannot be saved ({exc})."
        state.put("workspace_error", f"Your work is kept in memory only: {reason}")
        return None
    if slot is not None:
        saved = dict(state.get("workspace_models"))
        saved[slot] = record.id
        state.put("workspace_models", saved)
    state.get("workspace_broken").pop(record.id, None)
    return record.id


def saved_models(task: str) -> tuple[dict[str, str], list[str]]:
    """Models saved for the current image that can be used for ``task``.

    Returns
    -------
    choices : dict
        Label → model id (``"ws:ID"``), newest first; models held in the
        session's own slots are left out (they are offered as such).
    problems : list of str
        One sentence per saved model that is skipped because it cannot be loaded.
    """
    workspace_id = state.get("workspace_image")
    ws = workspace() if workspace_id is not None else None
    if ws is None:
        return {}, []
    try:
        records = ws.models(workspace_id)
    except InputError as exc:
        _failed(exc)
        return {}, []
    in_session = set(state.get("workspace_models").values())
    broken = state.get("workspace_broken")
    choices: dict[str, str] = {}
    problems: list[str] = []
    for rec in records:
        if rec.task != task or rec.id in in_session:
            continue
        problem = broken.get(rec.id) or _file_problem(rec)
        if problem:
            problems.append(problem)
            continue
        label = model_label(rec)
        if label in choices:
            label = f"{label} #{rec.id}"
        choices[label] = f"{SAVED}{rec.id}"
    return choices, problems


def model_label(rec: ModelRecord) -> str:
    """How a saved model is offered: what it is and when it was saved."""
    when = time.strftime("%d %b %H:%M", time.localtime(rec.created))
    if rec.role == TRAINED:
        return f"{KIND_NAMES.get(rec.kind, 'Model')} trained on this image (saved {when})"
    return f"Model file {rec.name} (saved {when})"


def _file_problem(rec: ModelRecord) -> str | None:
    """Why a saved model's file cannot be used (missing, or not the bytes saved), or None."""
    try:
        stat = rec.path.stat()
    except FileNotFoundError:
        return _cannot_load(rec.name, "its file is missing")
    except OSError:
        return _cannot_load(rec.name, "its file cannot be read")
    if stat.st_size != rec.size or not _intact(
        str(rec.path), stat.st_mtime_ns, stat.st_size, rec.sha256
    ):
        return _cannot_load(rec.name, "its file is damaged")
    return None


def _cannot_load(name: str, why: str) -> str:
    return f"The saved model '{name}' cannot be loaded because {why}, so it is skipped."


@st.cache_resource(max_entries=256, show_spinner=False)
def _intact(path: str, mtime_ns: int, size: int, sha256: str) -> bool:
    """True when the file still holds the bytes it was saved with (checked once per version)."""
    from microseg.modelfile import file_hash

    try:
        return file_hash(path) == sha256
    except (OSError, InputError):
        return False


@st.cache_resource(max_entries=8, show_spinner="Loading the saved model ...")
def _load_file(path: str, sha256: str) -> Segmenter:
    from microseg.segmenter import load_segmenter

    model = load_segmenter(path)
    model.metadata.setdefault("file_sha256", sha256)
    return model


def load_saved_model(model_id: int) -> Segmenter:
    """The saved model ``model_id``, loaded once per server process.

    Raises
    ------
    ModelFileError
        With one sentence when the model cannot be loaded (its file missing,
        changed or damaged); the model is then skipped by :func:`saved_models`.
    """
    ws = workspace()
    if ws is None:
        raise ModelFileError("The workspace cannot be used, so its saved models cannot be loaded.")
    try:
        rec = ws.model(model_id)
    except InputError as exc:
        raise ModelFileError(f"The saved model {model_id} is no longer in the workspace.") from exc
    message = _file_problem(rec)
    if message is None:
        try:
            return _load_file(str(rec.path), rec.sha256)
        except Exception:  # noqa: BLE001 - one sentence, never a traceback
            message = _cannot_load(rec.name, "its file is not a model this microseg can use")
    state.get("workspace_broken")[rec.id] = message
    raise ModelFileError(message)


def recent_images() -> list[ImageRecord]:
    """Images of the workspace, most recently opened first (empty when it cannot be used)."""
    ws = workspace()
    if ws is None:
        return []
    try:
        return ws.images()
    except InputError as exc:
        _failed(exc)
        return []


def open_recent(workspace_id: int) -> bool:
    """Open a workspace image again with its strokes. Returns False on error (shown)."""
    from webui import loading

    ws = workspace()
    if ws is None:
        return False
    try:
        record = ws.image(workspace_id)
        if record.source.get("kind") == "sample":
            return loading.load_sample_into_state(record.source.get("key", ""))
        data = ws.image_bytes(workspace_id)
    except InputError as exc:
        state.put("load_error", str(exc))
        return False
    return loading.load_upload_into_state(record.name, data)


def delete_recent(workspace_id: int) -> None:
    """Remove an image and its strokes from the workspace (the open image stays in memory)."""
    ws = workspace()
    if ws is None:
        return
    try:
        ws.delete_image(workspace_id)
    except InputError as exc:
        _failed(exc)
        return
    if state.get("workspace_image") == workspace_id:
        state.put("workspace_image", None)
        state.put("workspace_saved", {})
        state.put("workspace_classes", None)


def describe(record: ImageRecord) -> tuple[str, str, str, str]:
    """Size, labelled frames, saved models and last-opened time of a record, as short texts."""
    shape = record.info.get("shape") or []
    parts = []
    if len(shape) == 5:
        t, z, c, y, x = shape
        parts.append(f"{x} × {y} px")
        parts += [f"{n} {w}" for n, w in ((t, "frames"), (z, "slices"), (c, "channels")) if n > 1]
    if record.source.get("kind") != "sample":
        parts.append(size_text(record.size))
    n = record.n_labelled
    labelled = f"{n} labelled frame{'s' if n != 1 else ''}"
    m = record.n_models
    models = f"{m} saved model{'s' if m != 1 else ''}"
    return ", ".join(parts), labelled, models, f"opened {_ago(record.opened)}"


def size_text(n: int) -> str:
    """A byte count as people read it: 812 B, 3.4 kB, 12.0 MB, 1.2 GB."""
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _ago(when: float) -> str:
    seconds = time.time() - when
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(when))
