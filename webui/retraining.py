"""Training a U-Net on a page's corrections in the background (Grains and Nuclei pages):
start the job, show its progress, and say what the retrained model learned."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import streamlit as st

from webui import state


def start_job(key: str, plane: np.ndarray, targets: np.ndarray, init: Any, task: str,
              classes: list[str], seconds: float, meta: dict) -> None:  # fmt: skip
    """Fine-tune ``init`` (or a new U-Net) on ``targets`` of ``plane``; the job is kept
    in session state under ``key``."""
    from microseg.deep import TrainConfig, TrainingJob

    job = TrainingJob([plane], [targets], TrainConfig(seconds=float(seconds)), init=init,
                      task=task, classes=classes)  # fmt: skip
    if init is not None:  # how much of the rest of the plane it redraws, in the job's thread
        job.after = lambda model: _changed_elsewhere(init, model, plane, targets)
    job.meta = {"image_id": state.get("image_id"), "started": time.time(), **meta}
    job.start()
    state.put(key, job)


def _changed_elsewhere(
    init: Any, model: Any, plane: np.ndarray, targets: np.ndarray
) -> float | None:
    from microseg.corrections import changed_elsewhere

    if model.metadata.get("training", {}).get("kept_initial"):
        return None
    return changed_elsewhere(init, model, plane, targets)


@st.fragment(run_every=1.5)
def job_progress(key: str) -> None:
    """Progress bar and Stop button of the job under ``key``; the page reruns when done."""
    job = state.get(key)
    if job is None:
        return
    if not job.running:
        st.rerun()  # the whole page: the finished model takes over
    p = job.progress
    if p.step == 0:  # the random forest that labels the rest of the image comes first
        st.progress(0.0, text="Training on the corrections: preparing the training labels ...")
    else:
        st.progress(p.fraction, text=f"Training on the corrections: step {p.step}, "
                    f"{p.seconds:.0f} s elapsed, about {p.eta:.0f} s left")  # fmt: skip
    if st.button("Stop (keep the best model so far)", key=f"{key}_stop"):
        job.stop(wait=True)
        st.rerun()


def take_finished(key: str) -> Any:
    """The job under ``key`` when it has finished with a model, taken out of session
    state (so that it is handled once), else None. Its ``meta["changed_elsewhere"]``
    says how much of the image outside the labelled pixels the new model redraws
    (``None`` when it kept the starting model or had none)."""
    job = state.get(key)
    if job is None or job.running or job.result is None:
        return None
    state.put(key, None)
    job.meta["changed_elsewhere"] = job.after_result
    return job


def held_targets(store: dict, inputs: tuple, compute: Any) -> Any:
    """``compute()`` once while ``inputs`` (the arrays it reads, compared by identity:
    a correction or a stroke replaces them) stay the same; kept in ``store``."""
    held = store.get("retrain_targets")
    if (
        held is None
        or len(held[0]) != len(inputs)
        or any(a is not b for a, b in zip(held[0], inputs, strict=True))
    ):
        held = (inputs, compute())
        store["retrain_targets"] = held
    return held[1]


def retrain_notice(training: dict, meta: dict) -> str:
    """One sentence on what the retrained model learned from and how it scores."""
    text = (f"The U-Net was trained on {meta['n_edits']} correction(s) ({meta['corrected_px']} "
            f"labelled pixels) and {meta['stroke_px']} stroke pixels for "
            f"{training.get('seconds', 0):.0f} s")  # fmt: skip
    before, after = training.get("initial_val_score"), training.get("best_val_score")
    if before is not None and after is not None:
        verdict = ("it kept the starting model, which scored as well" if training.get("kept_initial")
                   else f"{meta['then']}")  # fmt: skip
        text += (f"; score on the held-out corrections and strokes (macro F1): {before:.3f} "
                 f"before, {after:.3f} after; {verdict}.")  # fmt: skip
    else:
        text += (f"; too few corrected places to hold some out for a score (correct three or "
                 f"more places for one); {meta['then']}.")  # fmt: skip
    share = meta.get("changed_elsewhere")
    if share is not None:
        scored = before is not None and after is not None
        text += (f"{' The score covers the corrected places only.' if scored else ''} Outside "
                 f"the corrected places and strokes the new model changes the class of "
                 f"{100 * share:.1f} % of the pixels: look the result over there before you "
                 "trust it.")  # fmt: skip
    return text
