"""The nuclei model of the Nuclei page: session and built-in models, uploaded model files,
and the instance settings in the sidebar."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from microseg.errors import MicrosegError
from microseg.image import MicroImage
from webui import state, workspace
from webui.nuclei.session import ui

NO_BUILTIN = "no built-in nuclei model installed; train one on the Annotate page"


def _uploaded() -> dict[str, Any]:
    return ui().setdefault("uploaded_models", {})


def model_options() -> dict[str, str]:
    """Label -> model id: session models, the built-in one, uploaded model files."""
    from webui.models import model_choices

    options = dict(model_choices("nuclei"))
    for mid in _uploaded():
        options[f"Model file: {mid.split(':', 1)[1]}"] = mid
    return options


def resolve_model(model_id: str):  # noqa: ANN201 - a Segmenter
    """The model behind an id of :func:`model_options`."""
    if model_id.startswith("upload:"):
        return _uploaded()[model_id]
    from webui.models import get_model

    return get_model(model_id)


def _model_facts(model_id: str) -> tuple[bool, dict[str, float], float | None]:
    """Whether the model is a U-Net, its recorded instance settings (foreground
    threshold and split depth), and the nucleus diameter it was trained at (defaults
    when it cannot be loaded)."""
    from microseg.thresholds import instance_settings

    try:
        meta = resolve_model(model_id).metadata
    except (MicrosegError, KeyError):
        meta = {}
    diameter = meta.get("object_diameter_px")
    return (
        meta.get("kind") == "unet",
        instance_settings(meta),
        float(diameter) if diameter else None,
    )


def load_model_upload(name: str, data: bytes) -> str | None:
    """Load an uploaded model file; returns its id (None: the error is kept in the UI state)."""
    from microseg.modelfile import file_hash
    from microseg.segmenter import load_segmenter

    error = None
    with tempfile.TemporaryDirectory() as tmp:
        stored = "model.zip" if name.lower().endswith(".zip") else "model.safetensors"
        path = Path(tmp) / stored
        path.write_bytes(data)
        try:
            model = load_segmenter(path)
            digest = file_hash(path)
        except MicrosegError as exc:
            error = str(exc).replace(stored, name)
        except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
            error = f"{name} could not be loaded as a model file ({type(exc).__name__})."
    if error is None and model.task != "nuclei":
        if "nucleus" not in [c.lower() for c in model.classes]:
            error = f"{name} is a {model.task} model; choose a nuclei model."
    if error is not None:
        ui()["model_upload_error"] = error
        return None
    model.metadata.setdefault("file_sha256", digest)
    mid = f"upload:{name}"
    _uploaded()[mid] = model
    return mid


def model_sidebar(image: MicroImage) -> dict[str, Any] | None:
    """Model picker, model file upload and instance settings; returns the settings."""
    from webui.models import builtin_available

    st.subheader("Model")
    up = st.file_uploader(
        "Load a model file (.safetensors, or a bioimage.io package microseg wrote)",
        type=["safetensors", "zip"],
        key="nuc_model_upload",
    )
    if up is not None and ui().get("last_model_upload") != (up.name, up.size):
        ui()["last_model_upload"] = (up.name, up.size)
        ui().pop("model_upload_error", None)
        mid = load_model_upload(up.name, up.getvalue())
        if mid:
            workspace.keep_model(_uploaded()[mid], workspace.UPLOADED, up.name, slot=mid)
            ui()["model_id"] = mid
            ui()["select_model_id"] = True  # a freshly loaded model becomes the selected one
    if up is not None and ui().get("model_upload_error"):
        st.error(ui()["model_upload_error"])
    options = model_options()
    if not builtin_available("nuclei"):
        st.caption(f"There is {NO_BUILTIN}, or load a model file.")
    if not options:
        st.info(
            "No nuclei model yet: train one on the Annotate page (task nuclei) or load "
            "a model file above."
        )
        return None
    labels = list(options)
    want = ui().get("model_id")
    index = list(options.values()).index(want) if want in options.values() else 0
    if ui().pop("select_model_id", False):
        st.session_state["nuc_model"] = labels[index]
    label = st.selectbox("Nuclei model", labels, index=index, key="nuc_model")
    ui()["model_id"] = options[label]
    st.subheader("Instances")
    min_area = st.number_input(
        "Minimum area (px), 0 = automatic",
        min_value=0,
        value=0,
        step=5,
        key="nuc_min_area",
        help="Smaller objects are removed as debris.",
    )
    split = st.toggle(
        "Split touching nuclei",
        value=True,
        key="nuc_split",
        help="Seeded watershed between touching nuclei.",
    )
    deep, recorded_settings, trained_at = _model_facts(options[label])
    recorded = recorded_settings["threshold"]
    threshold = st.slider(
        "Foreground threshold",
        min_value=0.05,
        max_value=0.95,
        value=recorded,
        step=0.05,
        key=f"nuc_threshold_{options[label]}",
        help="Nucleus probability above which a pixel belongs to a nucleus. Higher: "
        "smaller nuclei, touching ones separated more easily, fewer faint objects. "
        f"This model's default is {recorded:g}"
        + (" (chosen on its validation images)." if recorded != 0.5 else "."),
    )
    depth_default = recorded_settings["h_fraction"]
    h_fraction = st.slider(
        "Split depth",
        min_value=0.05,
        max_value=0.6,
        value=min(0.6, max(0.05, round(depth_default, 2))),
        step=0.05,
        key=f"nuc_split_depth_{options[label]}",
        disabled=not split,
        help="Touching nuclei are cut at a neck only where the neck is narrower than both "
        "sides by this fraction of a nucleus' radius. Raise it when single nuclei come out "
        "in pieces; lower it when touching nuclei stay joined. "
        f"This model's default is {depth_default:g}.",
    )
    size_modes = ["Estimate from the image", "Use the image as it is", "Type it in"]
    size_mode = st.radio(
        "Nucleus size",
        size_modes,
        key="nuc_size_mode",
        disabled=trained_at is None,
        help="The image is rescaled so that its nuclei have the size the model was "
        "trained at"
        + (
            f" ({trained_at:.3g} px); the estimate rescales only when the nuclei differ "
            "from that by more than 1.5x."
            if trained_at
            else "; this model records no size."
        ),
    )
    diameter: float | str | None = None
    if trained_at is not None and size_mode == size_modes[0]:
        diameter = "auto"
    elif trained_at is not None and size_mode == size_modes[2]:
        diameter = float(
            st.number_input(
                "Typical nucleus diameter (px)",
                min_value=2.0,
                value=float(round(trained_at)),
                step=1.0,
                key="nuc_diameter",
            )
        )
    augment = st.toggle(
        "Test-time augmentation (8x slower)",
        value=False,
        key="nuc_augment",
        disabled=not deep,
        help="Average the network's prediction over the eight flips and quarter turns "
        "of the image: usually slightly more accurate. Deep-learning models only.",
    )
    temporal = True
    if image.n_frames >= 3:
        temporal = st.toggle(
            "Fix one-frame splits and merges from neighbouring frames",
            value=True,
            key="nuc_temporal",
            help="When a nucleus is cut in two (or two nuclei are merged) in one frame "
            "only, the frames before and after decide. Applies to 'Segment all frames'.",
        )
    channel = None
    if image.n_channels > 1:
        names = ["all channels"] + list(image.channel_names)
        pick = st.selectbox("Channel to segment", names, key="nuc_channel")
        channel = None if pick == "all channels" else names.index(pick) - 1
    z: int | str = 0
    if image.n_slices > 1:
        z = st.slider("Slice (z)", 0, image.n_slices - 1, 0, key="nuc_z")
    ps = state.pixel_size()
    st.caption(
        f"Pixel size: {ps:.4g} µm/px"
        if ps
        else "Pixel size unknown: areas in px (set it on the Image page)."
    )
    return {
        "model_id": options[label],
        "model_label": label,
        "min_area_px": int(min_area) or None,
        "split_touching": bool(split),
        "augment": bool(augment) and deep,
        "object_diameter_px": diameter,
        "threshold": float(threshold),
        "h_fraction": float(h_fraction),
        "temporal": bool(temporal),
        "channel": channel,
        "z": z,
        "pixel_size_um": ps,
    }
