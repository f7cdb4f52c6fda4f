"""Session state of the Nuclei page: the result of the open image, the page's free-form
dict and its one-shot messages.

Session state lives in two keys only: ``nuclei_ui`` (a dict: background job,
uploaded models, selection generation, undo stack, last message) and
``nuclei_result`` (a :class:`NucleiResult`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from microseg.errors import MicrosegError
from webui import state


@dataclass
class NucleiResult:
    """Nuclei of the current image: per-frame labels, the object table and tracks.

    Attributes
    ----------
    image_id : str
        Image the result belongs to.
    n_frames : int
        Frames of the image.
    z : int or str
        Slice (or "max") that was segmented.
    labels : dict
        Frame -> ``(Y, X)`` instance labels (ids unique per frame).
    table : DataFrame
        One row per nucleus of every segmented frame (``frame`` and ``label`` first).
    model_label : str
        The model that produced it (for the caption and provenance).
    settings : dict
        Instance settings (channel, min area, split) and pixel size.
    tracks : Tracks or None
        Links over frames (None until tracked, and after a correction).
    track_table : DataFrame or None
        Per-track measurements.
    edits : list of str
        Corrections made, in order (recorded in the provenance).
    originals : dict
        Frame -> labels as segmented, before the first correction of that frame (what
        "Train on my corrections" compares the corrected labels with).
    """

    image_id: str
    n_frames: int
    z: int | str = 0
    labels: dict[int, np.ndarray] = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    model_label: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    tracks: Any = None
    track_table: pd.DataFrame | None = None
    edits: list[str] = field(default_factory=list)
    originals: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def frames_done(self) -> list[int]:
        """Segmented frames, in order."""
        return sorted(self.labels)

    @property
    def pixel_size_um(self) -> float | None:
        """Pixel size the table was measured with."""
        return self.settings.get("pixel_size_um")

    def frame_rows(self, t: int) -> pd.DataFrame:
        """Rows of frame ``t``."""
        if self.table.empty:
            return self.table
        return self.table[self.table["frame"] == t]

    def set_frame(self, t: int, labels: np.ndarray, rows: pd.DataFrame) -> None:
        """Replace frame ``t``'s labels and rows (tracks become stale)."""
        self.labels[int(t)] = labels
        rows = rows.drop(columns="frame", errors="ignore")
        rows.insert(0, "frame", int(t))
        keep = self.table[self.table["frame"] != t] if not self.table.empty else None
        parts = [p for p in (keep, rows) if p is not None and len(p)]
        table = pd.concat(parts, ignore_index=True) if parts else rows
        self.table = table.sort_values(["frame", "label"], kind="stable").reset_index(drop=True)
        self.tracks = None
        self.track_table = None

    def provenance(self, **extra: Any) -> dict[str, Any]:
        """Provenance record for exports."""
        from microseg.exports import provenance

        params = dict(self.settings, z=self.z, frames=len(self.labels), edits=list(self.edits))
        if self.tracks is not None:
            params["tracking"] = self.tracks.params
        rec = provenance(None, params, **extra)
        rec["model"] = self.model_label
        if self.settings.get("model_sha256"):
            rec["model_sha256"] = self.settings["model_sha256"]
        return rec


def ui() -> dict:
    """The page's free-form state (a dict kept in session state)."""
    return state.get("nuclei_ui")


def current_result(image_id: str | None) -> NucleiResult | None:
    """The result for the current image, if any."""
    res = state.get("nuclei_result")
    if isinstance(res, NucleiResult) and res.image_id == image_id:
        return res
    return None


def say(kind: str, text: str) -> None:
    """Keep a message (``kind``: success, info, warning, error) for :func:`show_message`."""
    ui()["message"] = (kind, text)


def show_message() -> None:
    """Show (once) the outcome of the last action."""
    msg = ui().pop("message", None)
    if msg:
        getattr(st, msg[0])(msg[1])


def run_safely(action: Callable[[], Any]) -> None:
    """Run an action; a failure becomes a one-sentence message."""
    try:
        action()
    except MicrosegError as exc:
        say("error", str(exc))
    except Exception as exc:  # noqa: BLE001 - never a traceback on the page
        say("error", f"That did not work ({type(exc).__name__}: {exc}).")
