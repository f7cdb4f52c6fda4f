"""Train on my corrections: the corrected grain map becomes dense labels for the U-Net
(with the Annotate strokes of the image), fine-tuned in the background; the new model
then draws the map. Predict -> correct -> retrain -> predict."""

from __future__ import annotations

import numpy as np
import streamlit as st

from microseg.image import MicroImage
from microseg.roi import Region
from webui import state
from webui.grains.shared import one_sentence, ui
from webui.retraining import held_targets, job_progress, retrain_notice, start_job, take_finished
from webui.widgets import kept_slider

JOB_KEY = "retrain_job"
DEEP_LABEL = "Deep learning (U-Net, trained here)"


def _init_model(model_id: str):  # noqa: ANN202
    """The U-Net to fine-tune: the map's model when it is one, else the built-in one."""
    from webui.models import builtin_available, builtin_model, get_model

    if not model_id.startswith(("compare:", "truth")):
        model = get_model(model_id)
        if model.metadata.get("kind") == "unet":
            return model, "the map's U-Net"
    if builtin_available("grains"):
        return builtin_model("grains"), "the built-in grains model"
    return None, "a new U-Net"


def training_targets(image: MicroImage, t: int, z: int, region: Region) -> tuple[np.ndarray, dict]:
    """The corrections of the current map (and the image's strokes) as targets on the
    measured region, with counts for the page."""
    from microseg.corrections import correction_targets, merge_targets

    g = ui()
    strokes = state.strokes_for(t) if z == 0 else None

    def compute() -> tuple[np.ndarray, dict]:
        corr = correction_targets(g["base_labels"], g["labels"], "grains")
        mine = None if strokes is None else region.crop(strokes)
        merged = merge_targets(mine, [corr.targets], corr.targets.shape)
        return merged, {
            "corrected_px": corr.labelled_px,
            "places": corr.regions,
            "stroke_px": 0 if mine is None else int(np.count_nonzero(mine)),
        }

    # the map is made anew when the region changes, so the arrays tell the region too
    return held_targets(g, (g["base_labels"], g["labels"], strokes), compute)


def retrain_panel(image: MicroImage, t: int, z: int, region: Region, model_id: str) -> None:
    """The "Train on my corrections" expander of the Grains page."""
    g = ui()
    job = state.get(JOB_KEY)
    report = g.get("retrain_report")
    if report and report[0] == state.get("image_id"):
        st.success(report[1])
    with st.expander("Train on my corrections", expanded=job is not None and job.running,
                     key="grains_retrain_panel"):  # fmt: skip
        if job is not None and job.running:
            job_progress(JOB_KEY)
            return
        if job is not None and job.result is None and job.error is not None:
            st.error(one_sentence(job.error, "Training on the corrections"))
        if not g.get("edits"):
            st.caption("Correct the map first (paint a missing boundary, erase a false one): "
                       "the corrected places become training labels for the U-Net, which "
                       "then redraws the map here and on your next images.")  # fmt: skip
            return
        try:
            targets, counts = training_targets(image, t, z, region)
        except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
            st.error(one_sentence(exc, "Turning the corrections into labels"))
            return
        init, init_name = _init_model(model_id)
        st.caption(f"{len(g['edits'])} correction(s): {counts['places']} corrected place(s), "
                   f"{counts['corrected_px']} labelled pixels, plus {counts['stroke_px']} "
                   f"painted stroke pixels of this image. Fine-tunes {init_name}; a fifth of "
                   "the corrected places and strokes is held out to score it.")  # fmt: skip
        seconds = kept_slider("Training time (s)", 10, 600, 60, step=10, key="grains_retrain_s")
        if st.button("Train on my corrections", key="grains_retrain", type="primary",
                     disabled=int((targets > 0).sum()) == 0):  # fmt: skip
            meta = {"n_edits": len(g["edits"]), "corrected_px": counts["corrected_px"],
                    "stroke_px": counts["stroke_px"], "then": "the map below is its prediction"}  # fmt: skip
            start_job(JOB_KEY, region.crop(image.frame(t, z)), targets, init, "grains",
                      ["grain interior", "grain boundary"], seconds, meta)  # fmt: skip
            st.rerun()


def finish_retraining() -> None:
    """Called before the page picks its model: a finished job becomes the session's
    U-Net, the Grains page switches to it, and the corrections it learned are cleared
    (the new map is drawn by the model that learned them). When the starting model was
    kept, only the report is shown: the map and its corrections stay."""
    from webui.models import set_session_model

    job = take_finished(JOB_KEY)
    if job is None:
        return
    model = job.result
    tr = model.metadata.get("training", {})
    g = ui()
    g["retrain_report"] = (job.meta["image_id"], retrain_notice(tr, job.meta))
    if tr.get("kept_initial"):  # nothing learned: the map and its corrections stay as they are
        return
    set_session_model("deep", model)
    preds = state.get("predictions")
    for k in [k for k in preds if isinstance(k, tuple) and k and k[0] == "deep"]:
        del preds[k]
    g["edits"], g["history"] = [], []
    g["base_key"] = None
    st.session_state["grains_model"] = DEEP_LABEL
