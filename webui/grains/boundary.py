"""Grain-boundary models the Grains page offers (session, built-in, ML-vs-DL, ground
truth) and their boundary probabilities, cached per model and plane."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.roi import Region
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


def _prediction_key(
    model_id: str, t: int, z: int, model: Any = None, region: Region | None = None
) -> tuple:
    """Key of a model's probabilities in ``predictions`` (the Annotate page's convention
    for session models and the whole image; comparison models are told apart by
    identity, a measured region by its bounds)."""
    key: tuple = (model_id, state.get("image_id"), t)
    if z:
        key += (z,)
    if model_id.startswith(COMPARE):
        key += (id(model),)
    if region is not None:
        key += ("region", region)
    return key


def boundary_probability(
    model_id: str,
    image: MicroImage,
    t: int,
    z: int,
    slot: Any = None,
    region: Region | None = None,
) -> np.ndarray:
    """Grain-boundary probability ``(Y, X)`` float32 of a plane, or of its ``region``
    (predicted on the region alone, as ``microseg grains --region`` does; the ML-vs-DL
    page's maps and the ground truth, made for the whole image, are cropped; cached per
    model, plane and region).

    ``slot``: an ``st.empty()`` that shows the progress of a new prediction. The caller
    makes it on every run, so that the page's elements keep their places (an element
    that appears in one run only would shift the others and close open expanders).
    """
    region = _part_of(image, region)
    if model_id == TRUTH:
        cached = ui().get("truth_prob")
        if cached is None or cached[0] != state.get("image_id"):
            b = truth_boundaries(image.shape_yx)
            if b is None:
                raise InputError("This image has no ground-truth boundaries.")
            cached = (state.get("image_id"), b.astype(np.float32))
            ui()["truth_prob"] = cached
        return cached[1] if region is None else _held_crop(cached[1], region)
    if model_id.startswith(COMPARE):
        cmp = state.get("compare_result") or {}
        key = model_id[len(COMPARE) :]
        if (cmp.get("t"), cmp.get("z")) == (t, z) and key in cmp.get("boundary", {}):
            full = cmp["boundary"][key]
            return full if region is None else _held_crop(full, region)
        model = cmp["models"][key]
    else:
        from webui.models import get_model

        model = get_model(model_id)
    idx = boundary_index(list(model.classes))
    preds = state.get("predictions")
    pkey = _prediction_key(model_id, t, z, model, region)
    proba = preds.get(pkey)
    plane = image.frame(t, z) if region is None else region.crop(image.frame(t, z))
    if proba is None or proba.shape[-2:] != plane.shape[-2:]:
        if region is not None:  # one region kept per model and plane
            same_plane = [k for k in preds if isinstance(k, tuple) and len(k) == len(pkey)
                          and k[-2] == "region" and k[:-1] == pkey[:-1]]  # fmt: skip
            for k in same_plane:
                del preds[k]
        proba = _predict_with_progress(model, plane, slot or st.empty())
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


def _part_of(image: MicroImage, region: Region | None) -> Region | None:
    """``region`` when it is part of the image, None for the whole image (whose
    predictions are the ones the Annotate page keeps)."""
    return None if region is None or region.is_full(image.shape_yx) else region


def _held_crop(full: np.ndarray, region: Region) -> np.ndarray:
    """``region.crop(full)``, the same array object while ``full`` and the region are
    unchanged (the grain map and its corrections are keyed by it)."""
    held = ui().get("held_crop")
    if held is None or held[0] is not full or held[1] != region:
        held = (full, region, np.ascontiguousarray(region.crop(full)))
        ui()["held_crop"] = held
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


def class_fractions(
    model_id: str, image: MicroImage, t: int, z: int, region: Region | None = None
) -> pd.DataFrame | None:
    """Area fraction of each class (in the measured region) when the model has more
    than two classes."""
    if model_id == TRUTH or model_id.startswith(COMPARE):
        return None
    from webui.models import get_model

    model = get_model(model_id)
    if len(model.classes) <= 2:
        return None
    region = _part_of(image, region)
    proba = state.get("predictions").get(_prediction_key(model_id, t, z, region=region))
    if proba is None:
        return None
    cls = np.argmax(proba, axis=0)
    frac = np.bincount(cls.ravel(), minlength=len(model.classes)) / cls.size
    return pd.DataFrame({"class": list(model.classes), "area fraction (%)": 100 * frac})


def model_of(model_id: str) -> Any | None:
    """The model behind a Grains-page model id (``None`` for the ground truth)."""
    if model_id == TRUTH:
        return None
    if model_id.startswith(COMPARE):
        return (state.get("compare_result") or {}).get("models", {}).get(model_id[len(COMPARE) :])
    from webui.models import get_model

    return get_model(model_id)


def plane_unfamiliarity(
    model_id: str, image: MicroImage, t: int, z: int, region: Region | None = None
) -> float | None:
    """How unlike its training images the measured plane looks to a U-Net
    (:func:`microseg.quality.model_unfamiliarity`; cached per model, plane and region)."""
    from microseg.quality import model_unfamiliarity

    model = model_of(model_id)
    if model is None:
        return None
    key = ("unfamiliarity", model_id, state.get("image_id"), t, z, region, id(model))
    cache = ui().setdefault("unfamiliarity", {})
    if key not in cache:
        cache.clear()
        region = _part_of(image, region)
        plane = image.frame(t, z) if region is None else region.crop(image.frame(t, z))
        cache[key] = model_unfamiliarity(model, plane)
    return cache[key]
