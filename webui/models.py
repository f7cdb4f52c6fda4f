"""The models a page can use: those of this session, the built-in ones and those saved
in the workspace for the current image."""

from __future__ import annotations

import streamlit as st

from microseg.errors import MicrosegError
from microseg.segmenter import Segmenter
from webui import state
from webui.workspace import SAVED, load_saved_model, saved_models

SESSION_MODELS = {"classical": "Classical ML (random forest, trained here)",
                  "deep": "Deep learning (U-Net, trained here)"}  # fmt: skip


@st.cache_resource(show_spinner="Loading the built-in model ...")
def builtin_model(name: str) -> Segmenter:
    """Load ``builtin:NAME`` once per server process."""
    from microseg.segmenter import load_segmenter

    return load_segmenter(f"builtin:{name}")


def builtin_available(name: str) -> bool:
    """True when the built-in model's weights are installed."""
    try:
        from microseg.zoo import builtin_path

        return builtin_path(name).is_file()
    except (MicrosegError, ImportError):
        return False


def model_choices(task: str) -> dict[str, str]:
    """Label → model id ('classical', 'deep', 'builtin:NAME' or 'ws:ID') usable for ``task``.

    Models saved in the workspace for the current image come last; one that
    cannot be loaded is left out with a one-sentence warning.
    """
    choices: dict[str, str] = {}
    for key, label in SESSION_MODELS.items():
        model = state.get("models").get(key)
        if model is not None and model.task == task:
            choices[label] = key
    if task in ("nuclei", "grains") and builtin_available(task):
        choices[f"Built-in {task} model (U-Net)"] = f"builtin:{task}"
    saved, problems = saved_models(task)
    for problem in problems:
        st.warning(problem)
    choices.update(saved)
    return choices


def get_model(model_id: str) -> Segmenter:
    """The model behind an id from :func:`model_choices` (a saved one is loaded now)."""
    if model_id.startswith("builtin:"):
        return builtin_model(model_id.split(":", 1)[1])
    if model_id.startswith(SAVED):
        return load_saved_model(int(model_id[len(SAVED) :]))
    return state.get("models")[model_id]


def set_session_model(key: str, model: Segmenter) -> None:
    """Store a model trained in this session ('classical' or 'deep')."""
    models = dict(state.get("models"))
    models[key] = model
    state.put("models", models)
