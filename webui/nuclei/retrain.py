"""Train on my corrections (Nuclei page): the frames' corrected nuclei (split, merged,
deleted, added) become dense labels for the U-Net, with the image's strokes; the
retrained model becomes the page's model for the next segmentation."""

from __future__ import annotations

import numpy as np
import streamlit as st

from microseg.image import MicroImage
from webui import state
from webui.nuclei.session import NucleiResult, say, ui
from webui.retraining import held_targets, job_progress, retrain_notice, start_job, take_finished
from webui.widgets import kept_slider

JOB_KEY = "nuclei_retrain_job"


def _init_model():  # noqa: ANN202
    """The U-Net to fine-tune: the selected model when it is one, else the built-in one."""
    from webui.models import builtin_available, builtin_model
    from webui.nuclei.model_choice import resolve_model

    try:
        model = resolve_model(ui().get("model_id") or "")
    except Exception:  # noqa: BLE001 - no usable selection: fall back below
        model = None
    if model is not None and model.metadata.get("kind") == "unet":
        return model, "the selected U-Net"
    if builtin_available("nuclei"):
        return builtin_model("nuclei"), "the built-in nuclei model"
    return None, "a new U-Net"


def frame_targets(res: NucleiResult, t: int) -> tuple[np.ndarray, dict]:
    """The corrections of frame ``t`` (and its strokes) as training targets."""
    from microseg.corrections import correction_targets, merge_targets

    strokes = state.strokes_for(t) if res.z == 0 else None

    def compute() -> tuple[np.ndarray, dict]:
        corr = correction_targets(res.originals[t], res.labels[t], "nuclei")
        merged = merge_targets(strokes, [corr.targets], corr.targets.shape)
        return merged, {
            "corrected_px": corr.labelled_px,
            "places": corr.regions,
            "stroke_px": 0 if strokes is None else int(np.count_nonzero(strokes)),
        }

    return held_targets(ui(), (res.originals[t], res.labels[t], strokes), compute)


def retrain_section(image: MicroImage, res: NucleiResult, t: int) -> None:
    """The "Train on my corrections" part of the Correct tab."""
    st.markdown("**Train on my corrections**")
    job = state.get(JOB_KEY)
    if job is not None and job.running:
        job_progress(JOB_KEY)
        return
    report = ui().get("retrain_report")
    if report and report[0] == state.get("image_id"):
        st.success(report[1])
    if t not in res.originals:
        st.caption("Correct nuclei of this frame first: the corrected places become training "
                   "labels for the U-Net, which then segments this frame and the next ones.")  # fmt: skip
        return
    if isinstance(res.z, str):
        st.caption("Training on corrections needs a single slice, not a projection.")
        return
    targets, counts = frame_targets(res, t)
    init, init_name = _init_model()
    n_edits = sum(1 for e in res.edits if e.startswith(f"frame {t}:") and not e.endswith("undo"))
    st.caption(f"Frame {t}: {counts['places']} corrected place(s), {counts['corrected_px']} "
               f"labelled pixels, plus {counts['stroke_px']} stroke pixels. Fine-tunes "
               f"{init_name}; a fifth of the labels is held out to score it.")  # fmt: skip
    seconds = kept_slider("Training time (s)", 10, 600, 60, step=10, key="nuc_retrain_s")
    if st.button("Train on my corrections", key="nuc_retrain", type="primary",
                 disabled=int((targets > 0).sum()) == 0):  # fmt: skip
        classes = list(init.classes) if init is not None else ["background", "nucleus", "border"]
        meta = {"n_edits": n_edits, "corrected_px": counts["corrected_px"],
                "stroke_px": counts["stroke_px"],
                "then": "it is now the selected model: segment the frame again to see it"}  # fmt: skip
        start_job(JOB_KEY, image.frame(t, res.z), targets, init, "nuclei", classes, seconds, meta)
        st.rerun()


def finish_retraining() -> None:
    """Called before the sidebar picks the model: a finished job becomes the session's
    U-Net and the selected nuclei model."""
    from webui.models import set_session_model

    job = take_finished(JOB_KEY)
    if job is None:
        return
    model = job.result
    training = model.metadata.get("training", {})
    text = retrain_notice(training, job.meta)
    ui()["retrain_report"] = (job.meta["image_id"], text)
    say("success", text)
    if training.get("kept_initial"):  # nothing learned: the selected model stays
        return
    set_session_model("deep", model)
    ui()["model_id"] = "deep"
    ui()["select_model_id"] = True
