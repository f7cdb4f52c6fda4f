"""The workspace behind the session: images, strokes and classes survive a refresh or restart.

Each image that is opened is registered in the server's
:class:`~microseg.store.Workspace` (``$MICROSEG_WORKSPACE`` or
``~/.microseg/workspace``); its strokes and classes are saved whenever they
change and restored when the image is opened again. When the folder cannot be
used, the app keeps working in memory and the reason is kept in
``workspace_error`` for the home page to show.
"""

from __future__ import annotations

import json
import time

import numpy as np
import streamlit as st

from microseg.errors import InputError
from microseg.store import ImageRecord, Workspace, default_root
from webui import state


@st.cache_resource(show_spinner=False)
def _open(root: str) -> Workspace:
    return Workspace.open(root)


def workspace() -> Workspace | None:
    """The server's workspace, or None when its folder cannot be used (reason kept in state)."""
    root = str(default_root())
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


def save_current_strokes() -> int:
    """Save the frames of the current image whose strokes changed since the last save.

    Unchanged frames are recognised by identity or equality (no write); class
    names and colours are saved when they changed on an annotated image.
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
    try:
        for t in sorted(changed):
            ws.save_strokes(workspace_id, t, current.get(t), classes, task)
        if not changed:
            ws.save_classes(workspace_id, classes, task)
    except InputError as exc:
        _failed(exc)
        state.put("workspace_image", None)
        return 0
    for t in changed:
        if t in current:
            saved[t] = current[t]
        else:
            saved.pop(t, None)
    state.put("workspace_classes", key)
    return len(changed)


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


def describe(record: ImageRecord) -> tuple[str, str, str]:
    """Size, labelled frames and last-opened time of a record, as short texts."""
    shape = record.info.get("shape") or []
    parts = []
    if len(shape) == 5:
        t, z, c, y, x = shape
        parts.append(f"{x} × {y} px")
        parts += [f"{n} {w}" for n, w in ((t, "frames"), (z, "slices"), (c, "channels")) if n > 1]
    if record.source.get("kind") != "sample":
        parts.append(_bytes(record.size))
    n = record.n_labelled
    labelled = f"{n} labelled frame{'s' if n != 1 else ''}"
    return ", ".join(parts), labelled, f"opened {_ago(record.opened)}"


def _bytes(n: int) -> str:
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
