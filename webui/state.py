"""The one owner of Streamlit session state.

Every key the app uses is declared here with its default and initialised once
per session by :func:`init_state`. Pages read and write state through these
helpers only, so a persistent workspace can back it later.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import streamlit as st

from microseg.image import MicroImage
from microseg.tasks import task_spec

DEFAULTS: dict[str, Any] = {
    "image": None,  # MicroImage being worked on
    "image_id": None,  # changes whenever a new image is loaded
    "image_source": None,  # dict: kind ("sample"|"upload"), name, citation, licence; samples: key, task
    "ground_truth": {},  # name -> ndarray (from samples with ground truth)
    "pixel_size_override": None,  # µm per pixel typed in by the user
    "task": "nuclei",
    "classes": None,  # list of {"name": str, "colour": "#rrggbb"}; None -> task defaults
    "strokes": {},  # (image_id, t) -> uint8 stroke image (0 unlabelled, k class k)
    "stroke_undo": [],  # previous stroke images for undo
    "models": {},  # "classical" / "deep" -> Segmenter
    "predictions": {},  # (model name, image_id, t) -> (K, Y, X) float32 probabilities
    "training_job": None,  # background U-Net training
    "retrain_job": None,  # U-Net training on the Grains page corrections
    "nuclei_retrain_job": None,  # U-Net training on the Nuclei page corrections
    "nuclei_result": None,
    "grain_result": None,
    "compare_result": None,
    "qc_folder": None,  # folder shown on the QC review page
    "qc_run": None,  # a batch run made on the QC review page (its summary dict)
    "qc_run_for": None,  # the folder that run checked
    "nuclei_ui": {},  # free-form state of the Nuclei page (selections, edits)
    "grains_ui": {},  # free-form state of the Grains and ML-vs-DL pages
    "grain_fields": None,  # fields of one specimen (webui.grains.specimen); None: not loaded
    "canvas_gen": 0,  # bumped to remount the canvas after strokes change outside it
    "canvas_base": {},  # canvas key -> strokes of the region when the canvas was created
    "feature_cache": {},  # (image_id, t, feature key) -> (F, Y, X) float32 features
    "live_update": True,
    "view": {"t": 0, "z": 0, "channel": None, "low": 0.5, "high": 99.8},
    "load_error": None,
    "workspace_image": None,  # workspace id of the current image (None: kept in memory only)
    "workspace_saved": {},  # t -> strokes of the current image as last saved to the workspace
    "workspace_versions": {},  # t -> version of those strokes in the workspace (store)
    "workspace_conflict": None,  # another tab saved the strokes underneath (one sentence)
    "workspace_classes": None,  # classes and task as last saved; None: never annotated
    "workspace_delete": None,  # workspace id of the image awaiting delete confirmation
    "workspace_error": None,  # why the workspace cannot be used (one sentence)
    "workspace_models": {},  # "classical" / "deep" -> workspace id of that session model
    "workspace_pixel_size": None,  # pixel size of the current image as last saved
    "workspace_broken": {},  # workspace model id -> why it cannot be loaded (one sentence)
    "signed_in": False,  # passed the sign-in of webui.signin (when the server asks for one)
    "user": None,  # who signed in with a per-user token (None: no per-user sign-in)
    "project": "default",  # slug of the project this session works in (microseg.projects)
    "project_confirm_delete": False,  # the delete of the current project awaits confirmation
    "project_file": None,  # (slug, file name, bytes) of a prepared project export
    "project_message": None,  # what the last project action did (one sentence)
    "address_tried": None,  # the image parameter of the address last tried (webui.address)
}


def init_state() -> None:
    """Create every session key with its default (once per session)."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = _copy(value)
    if st.session_state["classes"] is None:
        reset_classes(st.session_state["task"])


KEPT_ON_START_OVER = ("signed_in", "user")


def start_over(project: str) -> None:
    """A fresh session in ``project``: every key back to its default (the open image,
    strokes, models and results belong to the project that was open); who signed in
    stays."""
    for key, value in DEFAULTS.items():
        if key not in KEPT_ON_START_OVER:
            st.session_state[key] = _copy(value)
    st.session_state["project"] = project
    reset_classes(st.session_state["task"])


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def get(key: str) -> Any:
    """Read a state value (initialising the session if needed)."""
    if key not in st.session_state:
        init_state()
    return st.session_state[key]


def put(key: str, value: Any) -> None:
    """Write a state value; unknown keys are a programming error."""
    if key not in DEFAULTS:
        raise KeyError(f"unknown session key {key!r}")
    st.session_state[key] = value


def reset_classes(task: str) -> None:
    """Set the class list to the task's defaults."""
    spec = task_spec(task)
    st.session_state["classes"] = [
        {"name": n, "colour": c} for n, c in zip(spec.classes, spec.colours, strict=True)
    ]


def switch_task(task: str) -> None:
    """Make ``task`` the current task with its default classes (nothing when it already is)."""
    if task == st.session_state.get("task"):
        return
    task_spec(task)  # an unknown task raises before anything changes
    st.session_state["task"] = task
    reset_classes(task)
    refresh_canvas()


def refresh_canvas() -> None:
    """Remount the Annotate canvas so that it shows strokes or classes changed outside it
    (undo, clear, import, another task)."""
    st.session_state["canvas_gen"] = st.session_state.get("canvas_gen", 0) + 1
    st.session_state["canvas_base"] = {}


def set_image(image: MicroImage, source: dict, ground_truth: dict | None = None) -> None:
    """Make ``image`` the current image; results of the previous image are dropped."""
    digest = hashlib.sha1(
        np.ascontiguousarray(image.data[0, 0, 0, ::7, ::7]).tobytes()
        + repr((image.name, image.data.shape, str(image.dtype))).encode()
    ).hexdigest()[:12]
    st.session_state["image"] = image
    st.session_state["image_id"] = digest
    st.session_state["image_source"] = source
    st.session_state["ground_truth"] = ground_truth or {}
    st.session_state["pixel_size_override"] = None
    st.session_state["predictions"] = {}
    st.session_state["feature_cache"] = {}
    st.session_state["canvas_base"] = {}
    st.session_state["nuclei_result"] = None
    st.session_state["grain_result"] = None
    st.session_state["compare_result"] = None
    st.session_state["nuclei_ui"] = {}
    st.session_state["grains_ui"] = {}
    st.session_state["stroke_undo"] = []
    view = dict(DEFAULTS["view"])
    st.session_state["view"] = view
    st.session_state["load_error"] = None
    st.session_state["workspace_image"] = None
    st.session_state["workspace_saved"] = {}
    st.session_state["workspace_versions"] = {}
    st.session_state["workspace_conflict"] = None
    st.session_state["workspace_classes"] = None


def pixel_size() -> float | None:
    """Pixel size in µm: typed-in value first, then the image's metadata."""
    override = get("pixel_size_override")
    if override:
        return float(override)
    image = get("image")
    return image.pixel_size_um if image is not None else None


def strokes_for(t: int = 0) -> np.ndarray | None:
    """Stroke image of frame ``t`` of the current image (None when nothing painted)."""
    return get("strokes").get((get("image_id"), t))


def set_strokes(t: int, strokes: np.ndarray | None, remember: bool = True) -> None:
    """Replace the strokes of frame ``t``; the previous ones go on the undo stack."""
    key = (get("image_id"), t)
    store = get("strokes")
    if remember:
        undo = get("stroke_undo")
        undo.append((key, store.get(key)))
        del undo[:-20]
    if strokes is None or not strokes.any():
        store.pop(key, None)
    else:
        store[key] = strokes
    _persist()


def undo_strokes() -> bool:
    """Restore the strokes before the last change; False when there is nothing to undo."""
    undo = get("stroke_undo")
    if not undo:
        return False
    key, previous = undo.pop()
    store = get("strokes")
    if previous is None:
        store.pop(key, None)
    else:
        store[key] = previous
    _persist()
    return True


def _persist() -> None:
    """Save changed strokes of the current image to the workspace, when one backs it."""
    if st.session_state.get("workspace_image") is not None:
        from webui.workspace import save_current_strokes

        had_conflict = bool(st.session_state.get("workspace_conflict"))
        save_current_strokes()
        if st.session_state.get("workspace_conflict") and not had_conflict:
            # said now; the top of every page says it from the next run on (a rerun here
            # would cut short the page that is taking in the new strokes)
            st.toast(st.session_state["workspace_conflict"], icon=":material/sync_problem:")
