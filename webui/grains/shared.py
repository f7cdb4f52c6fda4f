"""What the Grains and the ML-vs-DL pages share: their UI state, one-sentence error
messages, the frame picker and the image under the overlays.

Session state used: ``grains_ui`` (settings, edits, selections of both pages).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from microseg.errors import MicrosegError
from microseg.image import MicroImage
from webui import state
from webui.render import display_plane


def ui() -> dict:
    """The mutable UI state dict shared by the Grains and ML-vs-DL pages."""
    return state.get("grains_ui")


def one_sentence(exc: BaseException, doing: str) -> str:
    """A one-sentence message for an error raised while ``doing`` something."""
    if isinstance(exc, MicrosegError):
        msg = str(exc).strip() or f"{doing} failed."
    else:
        msg = f"{doing} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no details'})."
    return msg if msg.endswith((".", "!", "?")) else msg + "."


def frame_picker(image: MicroImage, key: str) -> tuple[int, int]:
    """Frame and slice sliders for stacks; returns (t, z)."""
    t = z = 0
    if image.n_frames > 1:
        t = st.slider("Frame", 0, image.n_frames - 1, 0, key=f"{key}_t")
    if image.n_slices > 1:
        z = st.slider("Slice (z)", 0, image.n_slices - 1, 0, key=f"{key}_z")
    return t, z


def base_rgb(image: MicroImage, t: int, z: int) -> np.ndarray:
    """8-bit RGB rendering of a plane."""
    base = display_plane(image, t=t, z=z)
    return base if base.ndim == 3 else np.repeat(base[..., None], 3, axis=2)
