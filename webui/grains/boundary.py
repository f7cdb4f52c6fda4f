"""Grain-boundary models the Grains page offers (session, built-in, ML-vs-DL, ground
truth) and their boundary probabilities, cached per model and plane."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from microseg.errors import InputError
from microseg.image import MicroImage
from webui import state
from webui.grains.shared import ui
from webui.grains.truth import truth_boundaries

TRUTH = "truth"
COMPARE = "compare:"
COMPARE_LABELS = {
    "classical": "Classical ML (random forest)",
    "deep": "Deep learning (U-Net)",
    "scratch": "U-Net from scratch",
}


def boundary_index(classes: list[str]) -> int:
    """Index of the grain-boundary class among a model's classes."""
    from microseg.commands.grains import boundary_class_index

    return boundary_class_index(classes)


def grain_model_choices(shape: tuple[int, int]) -> dict[str, str]:
    """Label → model id for the Grains page (session, built-in, comparison, ground truth)."""
    from webui.models import model_choices

    choices = dict(model_choices("grains"))
    cmp = state.get("compare_result")
    if cmp and cmp.get("image_id") == state.get("image_id"):
        for key in cmp.get("models", {}):
            choices[f"From the ML vs DL page: {COMPARE_LABELS[key]}"] = COMPARE + key
    if truth_boundaries(shape) is not None:
        choices["Ground-truth boundaries of the sample"] = TRUTH
    return choices


def _prediction_key(model_id: str, t: int, z: int, model: Any = None) -> tuple:
    """Key of a model's probabilities in ``predictions`` (the Annotate page's convention
    for session models; comparison models are told apart by identity)."""
    key: tuple = (model_id, state.get("image_id"), t)
    if z:
        key += (z,)
    if model_id.startswith(COMPARE):
        key += (id(model),)
    return key


def boundary_probability(
    model_id: str, image: MicroImage, t: int, z: int, slot: Any = None
) -> np.ndarray:
    """Grain-boundary probability ``(Y, X)`` float32 of a plane (cached per model and plane).

    ``slot``: an ``st.empty()`` that shows the progress of a new prediction. The caller
    makes it on every run, so that the page's elements keep their places (an element
    that appears in one run only would shift the others and close open expanders).
    """
    if model_id == TRUTH:
        cached = ui().get("truth_prob")
        if cached is None or cached[0] != state.get("image_id"):
            b = truth_boundaries(image.shape_yx)
            if b is None:
                raise InputError("This image has no ground-truth boundaries.")
            cached = (state.get("image_id"), b.astype(np.float32))
            ui()["truth_prob"] = cached
        return cached[1]
    if model_id.startswith(COMPARE):
        cmp = state.get("compare_result") or {}
        key = model_id[len(COMPARE) :]
        if (cmp.get("t"), cmp.get("z")) == (t, z) and key in cmp.get("boundary", {}):
            return cmp["boundary"][key]
        model = cmp["models"][key]
    else:
        from webui.models import get_model

        model = get_model(model_id)
    idx = boundary_index(list(model.classes))
    preds = state.get("predictions")
    pkey = _prediction_key(model_id, t, z, model)
    proba = preds.get(pkey)
    if proba is None or proba.shape[-2:] != image.shape_yx:
        proba = _predict_with_progress(model, image.frame(t, z), slot or st.empty())
        preds[pkey] = proba
    # the same array object while the prediction is unchanged: the grain map (and the
    # user's corrections on it) are keyed by it
    views = ui().setdefault("boundary_views", {})
    held = views.get(pkey)
    if held is None or held[0] is not proba or held[1] != idx:
        views.clear()
        held = (proba, idx, proba[idx])
        views[pkey] = held
    return held[2]


def _predict_with_progress(model: Any, plane: np.ndarray, slot: Any) -> np.ndarray:
    """A model's class probabilities, with a progress bar in ``slot`` where the model
    reports progress (tiled U-Net inference) and a spinner otherwise."""
    import inspect

    text = "Predicting grain boundaries"
    if "progress" not in inspect.signature(model.predict_proba).parameters:
        with slot, st.spinner(f"{text} ..."):
            return np.asarray(model.predict_proba(plane), np.float32)

    def progress(frac: float) -> None:
        slot.progress(min(max(float(frac), 0.0), 1.0), text=f"{text}: {100 * frac:.0f} %")

    slot.progress(0.0, text=f"{text} ...")
    try:
        return np.asarray(model.predict_proba(plane, progress=progress), np.float32)
    finally:
        slot.empty()


def class_fractions(model_id: str, image: MicroImage, t: int, z: int) -> pd.DataFrame | None:
    """Area fraction of each class when the model has more than two classes."""
    if model_id == TRUTH or model_id.startswith(COMPARE):
        return None
    from webui.models import get_model

    model = get_model(model_id)
    if len(model.classes) <= 2:
        return None
    proba = state.get("predictions").get(_prediction_key(model_id, t, z))
    if proba is None:
        return None
    cls = np.argmax(proba, axis=0)
    frac = np.bincount(cls.ravel(), minlength=len(model.classes)) / cls.size
    return pd.DataFrame({"class": list(model.classes), "area fraction (%)": 100 * frac})
