"""The quality verdict of the shown frame's nuclei (:func:`microseg.quality.nuclei_quality`)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from microseg.errors import MicrosegError
from microseg.image import MicroImage
from microseg.quality import Quality, model_unfamiliarity, nuclei_quality
from webui.nuclei.session import NucleiResult, ui
from webui.quality_panel import quality_panel


def frame_quality(
    image: MicroImage, res: NucleiResult, t: int, settings: dict[str, Any] | None
) -> Quality | None:
    """Verdict on frame ``t``'s nuclei (``None`` when it is not segmented); how unfamiliar
    the frame is to the model is cached per model and frame."""
    from webui.nuclei.model_choice import resolve_model

    labels = res.labels.get(int(t))
    if labels is None:
        return None
    u, diameter = None, None
    z = (settings or {}).get("z", 0)
    frame = image.frame(t, z if z is not None else 0)
    ch = (settings or {}).get("channel")
    if ch is not None and frame.ndim == 3 and 0 <= int(ch) < frame.shape[0]:
        frame = frame[int(ch)]
    if settings is not None:
        try:
            model = resolve_model(settings["model_id"])
        except (KeyError, MicrosegError):
            model = None
        if model is not None:
            key = (settings["model_id"], res.settings.get("model_sha256"), res.image_id, t,
                   settings.get("channel"), settings.get("z"))  # fmt: skip
            cache = ui().setdefault("unfamiliarity", {})
            if key not in cache:
                cache.clear()
                cache[key] = model_unfamiliarity(model, frame, zoom=_zoom(model, labels, settings))
            u = cache[key]
            if settings.get("object_diameter_px") is None:  # no rescaling to the model
                diameter = model.metadata.get("object_diameter_px")
    return nuclei_quality(labels, model_diameter_px=diameter, pixel_size_um=res.pixel_size_um,
                          unfamiliarity=u, image=frame)  # fmt: skip


def _zoom(model, labels, settings: dict[str, Any]) -> float:  # noqa: ANN001
    """The rescaling the network saw the frame at (1 when unknown)."""
    from microseg.nuclei import FrameSegmenter

    try:
        seg = FrameSegmenter(model, object_diameter_px=settings.get("object_diameter_px"))
        return seg.network_zoom(labels)
    except (MicrosegError, TypeError, ValueError):
        return 1.0


def verdict_panel(
    image: MicroImage, res: NucleiResult, t: int, settings: dict[str, Any] | None
) -> None:
    """The verdict box of frame ``t`` (nothing when the frame is not segmented)."""
    q = frame_quality(image, res, t, settings)
    if q is not None:
        st.caption(f"Quality of frame {t}:" if res.n_frames > 1 else "Quality of the result:")
        quality_panel(q, "nuclei")
