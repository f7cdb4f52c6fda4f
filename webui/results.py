"""Result panels of the Annotate page: live classical results, U-Net training, stacks, model files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from microseg.errors import InputError, MicrosegError
from microseg.image import MicroImage
from webui import state, training, workspace
from webui.models import set_session_model
from webui.render import class_overlay, display_plane
from webui.widgets import kept_slider


def _stroke_problem(strokes: np.ndarray | None, names: list[str]) -> str | None:
    from microseg.strokes import validate_strokes

    if strokes is None:
        return "Paint a few strokes of at least two classes to train a model."
    try:
        validate_strokes(strokes, strokes.shape, len(names), classes=names)
    except InputError as exc:
        return str(exc)
    return None


def result_panel(method: str, image: MicroImage, t: int, strokes, classes: list[dict], task: str):
    """Right-hand column of the Annotate page for the chosen method."""
    names = [c["name"] for c in classes]
    if method == "Classical ML":
        _classical_panel(image, t, strokes, names, task, classes)
    else:
        _deep_panel(image, t, strokes, names, task, classes)


def _classical_panel(image, t, strokes, names, task, classes):
    from microseg.features import FeatureSet

    live = st.toggle(
        "Live update after each stroke",
        value=state.get("live_update"),
        key="live_toggle",
        help="Turn off for big images; then press Train.",
    )
    state.put("live_update", live)
    fs = feature_selector()
    problem = _stroke_problem(strokes, names)
    clicked = st.button("Train", key="rf_train", disabled=live or problem is not None)
    preds = state.get("predictions")
    pkey = ("classical", state.get("image_id"), t)
    fs = fs or FeatureSet()
    fingerprint = None if strokes is None else (fs.key(), hash(strokes.tobytes()), tuple(names))
    if problem:
        st.info(problem)
    elif clicked or (live and preds.get(("classical fit",) + pkey[1:]) != fingerprint):
        try:
            with st.spinner("Computing features and training ..."):
                _, proba, seconds = training.train_classical(image, t, strokes, names, task, fs)
            preds[("classical fit",) + pkey[1:]] = fingerprint
            st.caption(f"Random forest updated in {seconds:.2f} s.")
        except InputError as exc:
            st.error(str(exc))
    model = state.get("models").get("classical")
    if pkey not in preds and model is not None and model.task == task:
        st.caption(f"A random forest trained earlier ({', '.join(model.classes)}) is available.")
        if st.button("Apply it to this image", key="rf_apply"):
            try:
                preds[pkey] = model.predict_proba(image.frame(t))
            except InputError as exc:
                st.error(str(exc))
    proba = preds.get(pkey)
    if proba is not None:
        styles = classes if model is None else class_styles(list(model.classes), classes)
        show_prediction(image, t, proba, styles, "rf", strokes=strokes,
                        uncertainty_note="Uncertainty: 1 - the margin between the two most "
                        "probable classes of the random forest.")  # fmt: skip


def feature_selector():
    """Feature families and scales of the classical model (defaults preselected)."""
    from microseg.features import FAMILIES, FeatureSet

    default = FeatureSet()
    with st.expander("Features (engineered filters)"):
        fams = st.multiselect(
            "Filter families", list(FAMILIES), default=list(default.families), key="rf_families"
        )
        all_scales = [0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0]
        scales = st.multiselect(
            "Scales σ (px)", all_scales, default=list(default.scales), key="rf_scales"
        )
        st.caption(f"{default.describe()} by default.")
    if not fams or not scales:
        st.warning("Pick at least one filter family and one scale; using the defaults.")
        return default
    try:
        return FeatureSet.grid(fams, scales)
    except InputError as exc:
        st.warning(f"{exc} Using the defaults.")
        return default


def class_styles(model_classes: list[str], classes: list[dict]) -> list[dict]:
    """Name and colour per class of a model: the user's colour where the names match."""
    from microseg.tasks import PALETTE

    by_name = {c["name"]: c["colour"] for c in classes}
    styles = []
    for k, name in enumerate(model_classes):
        colour = by_name.get(name) or (classes[k]["colour"] if k < len(classes) else None)
        styles.append({"name": name, "colour": colour or PALETTE[k % len(PALETTE)]})
    return styles


def show_prediction(
    image: MicroImage,
    t: int,
    proba: np.ndarray,
    classes: list[dict],
    key: str,
    strokes: np.ndarray | None = None,
    uncertainty_of=None,  # noqa: ANN001 - () -> (Y, X) map, computed when first shown
    uncertainty_note: str = "",
):
    """Overlay, outlines, probability maps, uncertainty and where to paint next.

    ``classes`` must describe the model's classes (one per probability map); the
    "where to paint next" boxes avoid the ``strokes`` already painted. Without
    ``uncertainty_of`` the uncertainty is the margin of ``proba``.
    """
    from microseg.classical import area_fractions, suggest_regions, uncertainty

    if len(classes) < proba.shape[0]:
        classes = class_styles([f"class {k + 1}" for k in range(proba.shape[0])], classes)
    names = [c["name"] for c in classes]
    colours = [c["colour"] for c in classes]
    class_map = (np.argmax(proba, axis=0) + 1).astype(np.uint8)
    base = display_plane(image, t=t)
    view = st.radio(
        "Show",
        ["Overlay", "Outlines", "Probability", "Uncertainty"],
        horizontal=True,
        key=f"{key}_view",
    )
    if view in ("Overlay", "Outlines"):
        opacity = st.slider("Opacity", 0.0, 1.0, 0.45, key=f"{key}_opacity")
        if view == "Overlay":
            st.image(
                class_overlay(base, class_map, colours[: proba.shape[0]], opacity),
                caption="Most probable class per pixel",
                width="stretch",
            )
        else:
            from skimage.segmentation import find_boundaries

            edges = find_boundaries(class_map, mode="inner").astype(np.uint8) * class_map
            st.image(
                class_overlay(base, edges, colours[: proba.shape[0]], max(opacity, 0.9)),
                caption="Class outlines",
                width="stretch",
            )
    elif view == "Probability":
        k = st.selectbox(
            "Class", range(proba.shape[0]), format_func=lambda i: names[i], key=f"{key}_pclass"
        )
        fig = go.Figure(
            go.Heatmap(z=proba[k], colorscale="Viridis", zmin=0, zmax=1, colorbar={"title": "p"})
        )
        fig.update_layout(
            title=f"Probability of '{names[k]}'",
            yaxis_autorange="reversed",
            yaxis_scaleanchor="x",
            height=480,
            margin={"l": 0, "r": 0, "t": 40, "b": 0},
        )
        st.plotly_chart(fig, key=f"{key}_pfig")
    else:
        if uncertainty_of is None:
            unc = uncertainty(proba)
        else:
            with st.spinner("Predicting on eight flips and turns of the image ..."):
                unc = uncertainty_of()
        painted = strokes if strokes is not None and strokes.shape == unc.shape else None
        boxes = suggest_regions(unc, n=5, exclude=painted)
        if uncertainty_note:
            st.caption(uncertainty_note)
        fig = go.Figure(
            go.Heatmap(
                z=unc,
                colorscale="Inferno",
                zmin=0,
                zmax=1,
                colorbar={"title": "uncertainty"},
                name="uncertainty",
            )
        )
        for i, (by0, bx0, by1, bx1) in enumerate(boxes):
            fig.add_shape(
                type="rect", x0=bx0, x1=bx1, y0=by0, y1=by1, line={"color": "cyan", "width": 2}
            )
            fig.add_annotation(
                x=bx0,
                y=by0,
                text=str(i + 1),
                showarrow=False,
                font={"color": "cyan"},
                xanchor="left",
                yanchor="bottom",
            )
        fig.update_layout(
            title="Uncertainty — cyan boxes: where to paint next",
            yaxis_autorange="reversed",
            yaxis_scaleanchor="x",
            height=480,
            margin={"l": 0, "r": 0, "t": 40, "b": 0},
        )
        st.plotly_chart(fig, key=f"{key}_ufig")
    fractions = area_fractions(class_map, len(names))
    st.dataframe(
        {
            "class": names[: proba.shape[0]],
            "area fraction (%)": [
                round(100 * fractions[k], 2) for k in range(1, proba.shape[0] + 1)
            ],
        },
        hide_index=True,
        key=f"{key}_fractions",
    )


def _deep_panel(image, t, strokes, names, task, classes):
    from webui.models import builtin_available

    job = state.get("training_job")
    if job is not None and job.running:
        _training_progress()
        return
    if job is not None:
        training.finish_deep_training(job)
        if job.error is not None:
            st.error(f"Training stopped with an error: {job.error}")
    problem = _stroke_problem(strokes, names)
    has_builtin = task in ("nuclei", "grains") and builtin_available(task)
    from_builtin = st.checkbox(
        f"Start from the built-in {task} model",
        value=has_builtin,
        disabled=not has_builtin,
        key="dl_builtin",
        help="Fine-tuning a pretrained model needs far fewer strokes.",
    )
    if not has_builtin:
        st.caption(
            "No built-in model for this task: the U-Net trains from scratch, which needs "
            "many more strokes than the random forest to do as well."
        )
    seconds = kept_slider("Training time (s)", 5, 600, 60, step=5, key="dl_seconds")
    c1, c2 = st.columns(2)
    if c1.button("Train U-Net", key="dl_train", disabled=problem is not None, type="primary"):
        training.start_deep_training(image, t, strokes, names, task, seconds, from_builtin)
        st.rerun()
    model = state.get("models").get("deep")
    if c2.button(
        "Continue training",
        key="dl_continue",
        disabled=model is None or problem is not None,
        help="Continue from the current network with the strokes as they are now.",
    ):
        if job is not None and job.result is model:
            job.continue_training(targets=[strokes], images=[image.frame(t)], seconds=seconds)
        else:  # a model loaded from a file: fine-tune it
            training.start_deep_training(
                image, t, strokes, names, task, seconds, from_builtin=False, init=model
            )
        st.rerun()
    if problem:
        st.info(problem)
    proba = training.deep_prediction(image, t) if model is not None else None
    if proba is not None:
        if job is not None and job.progress.losses:
            st.plotly_chart(_loss_figure(job.progress), key="dl_loss_done")
        show_prediction(image, t, proba, class_styles(model.classes, classes), "dl",
                        strokes=strokes, uncertainty_of=lambda: training.deep_uncertainty(image, t),
                        uncertainty_note=training.DEEP_UNCERTAINTY_NOTE)  # fmt: skip


@st.fragment(run_every=1.5)
def _training_progress():
    job = state.get("training_job")
    if job is None:
        return
    p = job.progress
    if not job.running:
        training.finish_deep_training(job)
        st.rerun()
    st.progress(
        p.fraction,
        text=f"Training the U-Net: step {p.step}, {p.seconds:.0f} s elapsed, "
        f"about {p.eta:.0f} s left",
    )
    if st.button("Stop (keep the best model so far)", key="dl_stop"):
        job.stop(wait=True)
        training.finish_deep_training(job)
        st.rerun()
    if p.losses:
        st.plotly_chart(_loss_figure(p), key="dl_loss_live")
    if p.preview is not None:
        colours = [c["colour"] for c in state.get("classes")]
        cmap = (
            (np.argmax(p.preview, axis=0) + 1).astype(np.uint8)
            if p.preview.ndim == 3
            else p.preview
        )
        base = display_plane(state.get("image"), t=job.meta["t"])
        st.image(
            class_overlay(base, cmap, colours),
            caption="Preview of the current network",
            width="stretch",
        )


def _loss_figure(p) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(y=p.losses, mode="lines", name="training loss")
    if p.val_scores:
        steps, scores = zip(*p.val_scores, strict=True)
        fig.add_scatter(x=steps, y=scores, mode="lines+markers", name="validation F1", yaxis="y2")
    fig.update_layout(
        height=260,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        xaxis_title="step",
        yaxis_title="loss",
        yaxis2={"overlaying": "y", "side": "right", "range": [0, 1], "title": "F1"},
        legend={"orientation": "h"},
        title="Training curve",
    )
    return fig


def apply_to_stack_section(image: MicroImage, classes: list[dict], prefer: str) -> None:
    """Apply a trained model (``prefer``: 'classical' or 'deep' first) to every frame
    of a time series, or to every slice of a z-stack."""
    models = state.get("models")
    if image.n_frames * image.n_slices <= 1 or not models:
        return
    along = "frame" if image.n_frames > 1 else "slice"
    n = image.n_frames if along == "frame" else image.n_slices
    st.subheader(f"Apply to every {along}")
    options = [k for k in (prefer, "deep" if prefer == "classical" else "classical") if k in models]
    which = st.radio(
        "Model",
        options,
        format_func={"classical": "Random forest", "deep": "U-Net"}.get,
        horizontal=True,
        key="stack_model_" + "_".join(options),
    )
    model = models[which]
    classes = class_styles(list(model.classes) or [c["name"] for c in classes], classes)
    clicked = st.button(f"Segment all {n} {along}s", key="stack_run")
    slot = st.empty()  # on every run, so the elements below keep their places
    if clicked:
        bar = slot.progress(0.0, text=f"Segmenting {along}s ...")
        maps = np.zeros((n, *image.shape_yx), np.uint8)
        for i in range(n):
            plane = image.frame(i) if along == "frame" else image.frame(0, i)
            maps[i] = np.argmax(model.predict_proba(plane), axis=0) + 1
            bar.progress((i + 1) / n, text=f"{along.capitalize()} {i + 1} / {n}")
        slot.empty()
        state.get("predictions")[("stack", which, state.get("image_id"))] = maps
    maps = state.get("predictions").get(("stack", which, state.get("image_id")))
    if maps is not None:
        t = st.slider(along.capitalize(), 0, len(maps) - 1, 0, key="stack_t")
        colours = [c["colour"] for c in classes]
        shown = display_plane(image, t=t) if along == "frame" else display_plane(image, z=t)
        st.image(class_overlay(shown, maps[t], colours), width=480)
        fractions = np.stack([(maps == k).mean(axis=(1, 2)) for k in range(1, len(classes) + 1)])
        fig = go.Figure(
            [
                go.Scatter(y=100 * f, name=c["name"])
                for f, c in zip(fractions, classes, strict=False)
            ]
        )
        fig.update_layout(
            title=f"Area fraction per {along}",
            xaxis_title=along,
            yaxis_title="area fraction (%)",
            height=300,
        )
        st.plotly_chart(fig, key="stack_frac")


def bioimageio_bytes(model) -> bytes:  # noqa: ANN001 - a UNetSegmenter
    """The U-Net as a bioimage.io model package (made when the button is clicked)."""
    from microseg.deep.bioimageio import export_bioimageio

    with tempfile.TemporaryDirectory() as tmp:
        return export_bioimageio(model, Path(tmp) / "model.zip").read_bytes()


def model_file_section(classes: list[dict]) -> None:
    """Download the trained models; load a model file."""
    st.subheader("Model files")
    models = state.get("models")
    cols = st.columns(3)
    for col, key, label in ((cols[0], "classical", "random forest"), (cols[1], "deep", "U-Net")):
        model = models.get(key)
        if model is None:
            col.caption(f"No {label} trained yet.")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = model.save(Path(tmp) / f"{key}.safetensors")
            data = path.read_bytes()
        col.download_button(
            f"Download {label} (.safetensors)",
            data=data,
            file_name=f"microseg_{key}.safetensors",
            key=f"dl_model_{key}",
        )
        if key == "deep":
            col.download_button(
                "bioimage.io package (ZIP)",
                data=lambda m=model: bioimageio_bytes(m),
                file_name="microseg_unet_bioimageio.zip",
                mime="application/zip",
                key="dl_model_bioimageio",
                on_click="ignore",
                help="For ilastik, bioimageio.core and the bioimage.io model zoo: ONNX "
                "weights, the normalisation, a test image and its result.",
            )
    up = cols[2].file_uploader(
        "Load a model file",
        type=["safetensors", "zip"],
        key="model_upload",
        help="A microseg model (.safetensors) or a bioimage.io package microseg wrote (.zip).",
    )
    if up is not None and st.session_state.get("model_loaded") != (up.name, up.size):
        st.session_state["model_loaded"] = (up.name, up.size)
        from microseg.segmenter import load_segmenter

        with tempfile.TemporaryDirectory() as tmp:
            suffix = ".zip" if up.name.lower().endswith(".zip") else ".safetensors"
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(up.getvalue())
            try:
                model = load_segmenter(path)
            except MicrosegError as exc:
                cols[2].error(str(exc).replace(path.name, up.name))
                return
        kind = "classical" if model.metadata.get("kind") == "rf" else "deep"
        set_session_model(kind, model)
        workspace.keep_model(model, workspace.UPLOADED, up.name, slot=kind)
        cols[2].success(
            f"Loaded a {kind} model for '{model.task}' with classes {', '.join(model.classes)}."
        )
