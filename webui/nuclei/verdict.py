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
    """Verdict on frame ``t``'s nuclei (``None`` when it is not segmented). The verdict
    is cached for the shown frame and its labels; how unfamiliar the frame is to the
    model (a network pass) per model, frame and rescaling, so an edit only redoes the
    cheap checks."""
    from webui.nuclei.model_choice import resolve_model

    labels = res.labels.get(int(t))
    if labels is None:
        return None
    s = settings or {}
    key = (s.get("model_id"), res.settings.get("model_sha256"), res.image_id, int(t),
           s.get("channel"), s.get("z"), s.get("object_diameter_px"))  # fmt: skip
    cached = ui().get("frame_quality")
    if cached is not None and cached[0] == (key, res.pixel_size_um) and cached[1] is labels:
        return cached[2]
    frame = _shown_plane(image, t, s)
    u, diameter = None, None
    try:
        model = resolve_model(s["model_id"]) if settings is not None else None
    except (KeyError, MicrosegError):
        model = None
    if model is not None:
        cache = ui().setdefault("unfamiliarity", {})
        if key not in cache:
            cache.clear()
            cache[key] = model_unfamiliarity(model, frame, zoom=_zoom(model, labels, s))
        u = cache[key]
        if s.get("object_diameter_px") is None:  # no rescaling to the model
            diameter = model.metadata.get("object_diameter_px")
    q = nuclei_quality(labels, model_diameter_px=diameter, pixel_size_um=res.pixel_size_um,
                       unfamiliarity=u, image=frame)  # fmt: skip
    ui()["frame_quality"] = ((key, res.pixel_size_um), labels, q)
    return q


def _shown_plane(image: MicroImage, t: int, settings: dict[str, Any]) -> Any:
    """The plane that was segmented: frame ``t``, its slice and its channel."""
    z = settings.get("z")
    frame = image.frame(t, z if z is not None else 0)
    ch = settings.get("channel")
    if ch is not None and frame.ndim == 3 and 0 <= int(ch) < frame.shape[0]:
        frame = frame[int(ch)]
    return frame


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
