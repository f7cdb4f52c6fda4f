"""Training from the Annotate page: the live random forest and the background U-Net job."""

from __future__ import annotations

import time

import numpy as np

from microseg.image import MicroImage
from webui import state, workspace
from webui.models import set_session_model


def cached_features(image: MicroImage, t: int, feature_set) -> np.ndarray:
    """Features of frame ``t``, computed once per image, frame and feature selection."""
    from microseg.features import compute_features

    cache = state.get("feature_cache")
    key = (state.get("image_id"), t, feature_set.key())
    if key not in cache:
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))
        cache[key] = compute_features(image.frame(t), feature_set)
    return cache[key]


def train_classical(
    image: MicroImage, t: int, strokes: np.ndarray, classes: list[str], task: str, feature_set
) -> tuple[object, np.ndarray, float]:
    """Fit the random forest on the strokes and predict frame ``t``.

    Returns (model, probabilities (K, Y, X), seconds spent).
    """
    from microseg.classical import RandomForestSegmenter

    start = time.perf_counter()
    feats = cached_features(image, t, feature_set)
    model = RandomForestSegmenter()
    model.fit(
        image.frame(t), strokes, classes=classes, task=task, feature_set=feature_set, features=feats
    )
    proba = model.predict_proba(image.frame(t), features=feats)
    set_session_model("classical", model)
    workspace.keep_model(
        model,
        workspace.TRAINED,
        f"Random forest trained on {_image_name(image)}",
        note=f"Frame {t}, {int(np.count_nonzero(strokes))} painted pixels.",
        slot="classical",
    )
    state.get("predictions")[("classical", state.get("image_id"), t)] = proba
    return model, proba, time.perf_counter() - start


def start_deep_training(
    image: MicroImage,
    t: int,
    strokes: np.ndarray,
    classes: list[str],
    task: str,
    seconds: float,
    from_builtin: bool,
    init=None,
):
    """Start U-Net training in the background; returns the job (kept in session state).

    ``init`` (a U-Net) is fine-tuned when given; else the task's built-in model when
    ``from_builtin`` and one is installed; else a new network.
    """
    from microseg.deep import TrainConfig, TrainingJob
    from webui.models import builtin_available, builtin_model

    if init is None and from_builtin and task in ("nuclei", "grains") and builtin_available(task):
        init = builtin_model(task)
    frame = image.frame(t)
    job = TrainingJob(
        [frame],
        [strokes],
        TrainConfig(seconds=seconds, num_threads=None),
        init=init,
        task=task,
        classes=classes,
        preview_image=frame,
    )
    job.start()
    job.meta = {
        "image_id": state.get("image_id"),
        "t": t,
        "started": time.time(),
        "from": "built-in model" if init is not None else "scratch",
        "workspace_image": state.get("workspace_image"),
        "image_name": _image_name(image),
    }
    state.put("training_job", job)
    return job


def finish_deep_training(job) -> bool:
    """Store the job's model once it has finished; True when a model was stored."""
    if job is None or job.running or job.result is None:
        return False
    if state.get("models").get("deep") is not job.result:
        set_session_model("deep", job.result)
        state.get("predictions").pop(("deep", job.meta["image_id"], job.meta["t"]), None)
        meta = job.meta
        if meta.get("workspace_image") is not None:  # saved with the image it was trained on
            workspace.keep_model(
                job.result,
                workspace.TRAINED,
                f"U-Net trained on {meta.get('image_name', 'an image')}",
                note=f"Frame {meta['t']}, started from {meta['from']}.",
                slot="deep",
                workspace_id=meta["workspace_image"],
            )
    return True


def _image_name(image: MicroImage) -> str:
    return (state.get("image_source") or {}).get("name") or image.name


DEEP_UNCERTAINTY_NOTE = (
    "Uncertainty of the U-Net: how much its predictions on the eight flips and quarter "
    "turns of the image disagree, and how close its two most probable classes are. "
    "A network can be confidently wrong on a kind of image it never saw: check the map too."
)


def deep_uncertainty(image: MicroImage, t: int) -> np.ndarray:
    """Uncertainty map of the session's U-Net on frame ``t`` (eight passes; cached per model)."""
    from microseg.deep.uncertainty import augmentation_uncertainty

    model = state.get("models").get("deep")
    key = ("deep uncertainty", state.get("image_id"), t)
    preds = state.get("predictions")
    cached = preds.get(key)
    if cached is None or cached[0] is not model:
        _, unc = augmentation_uncertainty(model, image.frame(t))
        preds[key] = cached = (model, unc)
    return cached[1]


def deep_prediction(image: MicroImage, t: int) -> np.ndarray | None:
    """Probabilities of the session's U-Net on frame ``t`` (cached)."""
    model = state.get("models").get("deep")
    if model is None:
        return None
    key = ("deep", state.get("image_id"), t)
    preds = state.get("predictions")
    if key not in preds:
        preds[key] = model.predict_proba(image.frame(t))
    return preds[key]
