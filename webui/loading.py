"""Loading samples and uploads into the session (and the workspace), with one-sentence errors."""

from __future__ import annotations

import streamlit as st

from microseg.errors import InputError
from webui import address, state, workspace


@st.cache_resource(show_spinner=False, max_entries=8)
def _cached_sample(key: str):
    from microseg.samples import load_sample

    return load_sample(key)


@st.cache_data(show_spinner=False)
def sample_catalogue() -> list[dict]:
    """The gallery: synthetic samples, plus real datasets when a data folder is present."""
    from microseg.samples import list_samples

    return [
        {
            "key": s.key,
            "title": s.title,
            "description": s.description,
            "task": s.task,
            "source": s.source,
            "licence": s.licence,
            "citation": s.citation,
        }
        for s in list_samples()
    ]


def load_sample_into_state(key: str) -> bool:
    """Load gallery sample ``key`` as the current image. Returns False on error (shown)."""
    try:
        loaded = _cached_sample(key)
    except (InputError, OSError) as exc:
        state.put("load_error", f"Could not load the sample: {exc}")
        return False
    sample = loaded.sample
    state.set_image(
        loaded.image,
        {
            "kind": "sample",
            "key": key,
            "task": sample.task,
            "name": sample.title,
            "source": sample.source,
            "licence": sample.licence,
            "citation": sample.citation,
        },
        ground_truth=dict(loaded.ground_truth),
    )
    strokes = getattr(loaded, "strokes", None)
    if strokes is not None:
        frames = strokes if strokes.ndim == 3 else strokes[None]
        for t, frame in enumerate(frames):
            if frame.any():
                state.set_strokes(t, frame.astype("uint8"), remember=False)
    if sample.task in ("nuclei", "grains"):
        state.switch_task(sample.task)
    workspace.remember_image(
        workspace.sample_bytes(key), sample.title, {"kind": "sample", "key": key}
    )
    address.name_open_image()
    return True


def load_upload_into_state(name: str, data: bytes, task: str | None = None) -> bool:
    """Read an uploaded file as the current image, for ``task`` when given (its default
    classes). Returns False on error (shown)."""
    from microseg.io import read_image

    try:
        image = read_image(data, name=name)
    except InputError as exc:
        state.put("load_error", str(exc))
        return False
    except Exception as exc:  # noqa: BLE001 - a reader bug must not show a traceback
        state.put("load_error", f"{name} could not be read as an image ({type(exc).__name__}).")
        return False
    state.set_image(image, {"kind": "upload", "name": name})
    if task:
        state.switch_task(task)
    workspace.remember_image(data, name, {"kind": "upload"})
    address.name_open_image()
    return True
