"""Widgets several pages share: frame/slice/channel pickers, zoom, pixel size, a slider
that keeps its value."""

from __future__ import annotations

from typing import Any

import streamlit as st

from microseg.image import MicroImage
from webui import state


def frame_controls(image: MicroImage, key: str) -> tuple[int, int | str, int | None]:
    """Frame, slice (or max projection) and channel pickers; returns (t, z, channel)."""
    t = 0
    z: int | str = 0
    channel = None
    if image.n_frames > 1:
        t = st.slider("Frame", 0, image.n_frames - 1, 0, key=f"{key}_t")
    if image.n_slices > 1:
        if st.checkbox("Maximum projection over z", key=f"{key}_maxz"):
            z = "max"
        else:
            z = st.slider("Slice (z)", 0, image.n_slices - 1, 0, key=f"{key}_z")
    if image.n_channels > 1:
        options = ["composite"] + list(range(image.n_channels))
        pick = st.selectbox(
            "Channel",
            options,
            format_func=lambda c: c if c == "composite" else image.channel_names[c],
            key=f"{key}_c",
        )
        channel = None if pick == "composite" else int(pick)
    return t, z, channel


def zoom_controls(shape_yx: tuple[int, int], key: str) -> tuple[int, int, int, int]:
    """Pick a region of a large image; returns (y0, y1, x0, x1) in image pixels."""
    h, w = shape_yx
    if max(h, w) <= 1024:
        return 0, h, 0, w
    with st.expander("Zoom to a region", expanded=False):
        size = st.select_slider(
            "Region size (px)", [256, 512, 1024, max(h, w)], value=max(h, w), key=f"{key}_size"
        )
        cy = st.slider("Centre y", 0, h - 1, h // 2, key=f"{key}_cy")
        cx = st.slider("Centre x", 0, w - 1, w // 2, key=f"{key}_cx")
    y0 = int(min(max(cy - size // 2, 0), max(h - size, 0)))
    x0 = int(min(max(cx - size // 2, 0), max(w - size, 0)))
    return y0, min(y0 + size, h), x0, min(x0 + size, w)


def pixel_size_input(image: MicroImage) -> None:
    """Show the pixel size from metadata and let the user type one in."""
    st.subheader("Pixel size")
    meta = image.pixel_size_um
    src = image.metadata.get("pixel_size_source") if image.metadata else None
    if meta:
        st.caption(f"From metadata ({src or 'file'}): {meta:.4g} µm/px")
    else:
        st.caption("No pixel size in the file's metadata.")
        ignored_calibration_note(image)
    value = st.number_input(
        "Pixel size (µm/px), 0 = use metadata",
        min_value=0.0,
        value=float(state.get("pixel_size_override") or 0.0),
        step=0.01,
        format="%.4f",
        key="pixel_size_widget",
    )
    state.put("pixel_size_override", value or None)


def ignored_calibration_note(image: MicroImage) -> None:
    """Say so when the file's calibration could not be a pixel size and was set aside."""
    ignored = (image.metadata or {}).get("pixel_size_ignored")
    if ignored and not image.pixel_size_um:
        st.caption(f"The file's calibration ({ignored} µm/px) cannot be a pixel size and is "
                   "ignored.")  # fmt: skip


def kept_slider(
    label: str, min_value: int, max_value: int, value: int, step: int, key: str, **kwargs: Any
) -> int:
    """A slider that keeps its value while it is not drawn (e.g. during a training run:
    Streamlit forgets the state of a widget that was not rendered in a run)."""
    kept = f"{key}__kept"
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(kept, value)
    chosen = st.slider(label, min_value, max_value, step=step, key=key, **kwargs)
    st.session_state[kept] = chosen
    return chosen
