"""The Nuclei page: segment frames and series, linked plots, tracks, corrections, exports.

Session state lives in two keys only: ``nuclei_ui`` (a dict: background job,
uploaded models, selection generation, undo stack, last message) and
``nuclei_result`` (a :class:`NucleiResult`). Numerical work is done by the
engine (:mod:`microseg.commands.nuclei`, :mod:`microseg.instances`,
:mod:`microseg.tracking`, :mod:`microseg.exports`); this module draws widgets and
keeps the results of the session.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from microseg.errors import InputError, MicrosegError
from microseg.image import MicroImage
from webui import state

NO_BUILTIN = "no built-in nuclei model installed; train one on the Annotate page"
_TRACK_COLOUR = "#ffd400"

# ----------------------------------------------------------------------------- state


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


class SeriesJob:
    """Segments every frame in a background thread; the page polls it.

    The thread never touches Streamlit; it only writes ``done``, ``result``,
    ``error`` and ``finished`` on this object.
    """

    def __init__(
        self, run: Callable[[Callable[[int, int], None], threading.Event], Any], total: int
    ) -> None:
        self.total = int(total)
        self.done = 0
        self.stop = threading.Event()
        self.result: Any = None
        self.error: str | None = None
        self.finished = False
        self.consumed = False
        self.started = time.perf_counter()
        self.seconds = 0.0
        self._run = run
        self.thread = threading.Thread(target=self._target, name="nuclei-series", daemon=True)

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)

    def _target(self) -> None:
        try:
            self.result = self._run(self._progress, self.stop)
        except MicrosegError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown as one sentence on the page
            self.error = f"Segmentation failed ({type(exc).__name__}: {exc})."
        finally:
            self.seconds = time.perf_counter() - self.started
            self.finished = True

    def start(self) -> SeriesJob:
        """Start the thread; returns self."""
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        """True until the thread has finished."""
        return not self.finished


def ui() -> dict:
    """The page's free-form state (a dict kept in session state)."""
    return state.get("nuclei_ui")


def current_result(image_id: str | None) -> NucleiResult | None:
    """The result for the current image, if any."""
    res = state.get("nuclei_result")
    if isinstance(res, NucleiResult) and res.image_id == image_id:
        return res
    return None


def _say(kind: str, text: str) -> None:
    ui()["message"] = (kind, text)


def show_message() -> None:
    """Show (once) the outcome of the last action."""
    msg = ui().pop("message", None)
    if msg:
        getattr(st, msg[0])(msg[1])


# ----------------------------------------------------------------------------- models


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


def load_model_upload(name: str, data: bytes) -> str | None:
    """Load an uploaded model file; returns its id (None: the error is kept in the UI state)."""
    from microseg.modelfile import file_hash
    from microseg.segmenter import load_segmenter

    error = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(data)
        try:
            model = load_segmenter(path)
            digest = file_hash(path)
        except MicrosegError as exc:
            error = str(exc).replace("model.safetensors", name)
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
        "Load a model file (.safetensors)", type=["safetensors"], key="nuc_model_upload"
    )
    if up is not None and ui().get("last_model_upload") != (up.name, up.size):
        ui()["last_model_upload"] = (up.name, up.size)
        ui().pop("model_upload_error", None)
        mid = load_model_upload(up.name, up.getvalue())
        if mid:
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
        "channel": channel,
        "z": z,
        "pixel_size_um": ps,
    }


def _pipeline(settings: dict[str, Any]):  # noqa: ANN202
    from microseg.commands.nuclei import FrameMeasurer, FrameSegmenter

    model = resolve_model(settings["model_id"])
    seg = FrameSegmenter(
        model,
        channel=settings["channel"],
        min_area_px=settings["min_area_px"],
        split_touching=settings["split_touching"],
    )
    return seg, FrameMeasurer(settings["pixel_size_um"])


def _result_settings(settings: dict[str, Any]) -> dict[str, Any]:
    model = resolve_model(settings["model_id"])
    out = {k: settings[k] for k in ("channel", "min_area_px", "split_touching", "pixel_size_um")}
    out["model_kind"] = model.metadata.get("kind")
    out["model_sha256"] = model.metadata.get("file_sha256")
    return out


def _fresh_result(image_id: str, image: MicroImage, settings: dict[str, Any]) -> NucleiResult:
    res = current_result(image_id)
    if res is None or res.z != settings["z"]:
        res = NucleiResult(image_id=image_id, n_frames=image.n_frames, z=settings["z"])
        state.put("nuclei_result", res)
    res.model_label = settings["model_label"]
    res.settings = _result_settings(settings)
    return res


# ----------------------------------------------------------------------------- actions


def segment_frame(image: MicroImage, t: int, settings: dict[str, Any]) -> None:
    """Segment frame ``t`` now (in the script thread) and store it in the result."""
    seg, meas = _pipeline(settings)
    frame = image.frame(t, settings["z"])
    start = time.perf_counter()
    labels = seg(frame)
    rows = meas(labels, frame)
    res = _fresh_result(state.get("image_id"), image, settings)
    res.set_frame(t, labels, rows)
    _say("success", f"Frame {t}: {len(rows)} nuclei ({time.perf_counter() - start:.1f} s).")


def start_series(image: MicroImage, settings: dict[str, Any]) -> SeriesJob:
    """Start segmenting every frame in the background."""
    from microseg.commands.nuclei import default_workers, segment_image

    seg, meas = _pipeline(settings)
    z = settings["z"]

    def run(progress: Callable[[int, int], None], stop: threading.Event) -> Any:
        return segment_image(
            image, seg, meas, z=z, progress=progress, stop=stop, workers=default_workers()
        )

    job = SeriesJob(run, image.n_frames)
    job.settings = dict(settings)  # type: ignore[attr-defined]
    job.image_id = state.get("image_id")  # type: ignore[attr-defined]
    ui()["job"] = job
    return job.start()


def collect_job(image: MicroImage) -> None:
    """Store a finished background run in the result (once)."""
    job = ui().get("job")
    if job is None or not job.finished or job.consumed:
        return
    job.consumed = True
    ui()["job"] = None
    if job.error:
        _say("error", job.error)
        return
    if job.image_id != state.get("image_id"):
        return
    from microseg.commands.nuclei import empty_objects, order_columns

    sr = job.result
    res = NucleiResult(
        image_id=job.image_id,
        n_frames=image.n_frames,
        z=job.settings["z"],
        model_label=job.settings["model_label"],
        settings=_result_settings(job.settings),
    )
    res.labels = {t: sr.labels[t] for t in range(sr.n_done)}
    table = order_columns(sr.tables) if len(sr.tables) else empty_objects()
    res.table = table.reset_index(drop=True)
    state.put("nuclei_result", res)
    n = len(res.table)
    if sr.stopped:
        _say("warning", f"Stopped after {sr.n_done} of {sr.n_total} frames ({n} nuclei).")
    else:
        rate = sr.n_done / job.seconds if job.seconds > 0 else float("nan")
        _say(
            "success",
            f"Segmented {sr.n_done} frames: {n} nuclei in {job.seconds:.1f} s "
            f"({rate:.1f} frames/s).",
        )


def remeasure(image: MicroImage, res: NucleiResult, pixel_size_um: float | None) -> None:
    """Measure every segmented frame again (after a pixel-size change)."""
    from microseg.commands.nuclei import FrameMeasurer

    meas = FrameMeasurer(pixel_size_um)
    tracks, track_table = res.tracks, res.track_table
    for t in res.frames_done:
        res.set_frame(t, res.labels[t], meas(res.labels[t], image.frame(t, res.z)))
    res.settings["pixel_size_um"] = pixel_size_um
    res.tracks = tracks
    if tracks is not None:
        from microseg.tracking import per_track_measurements

        res.track_table = per_track_measurements(res.table, tracks)
    else:
        res.track_table = track_table


def track(res: NucleiResult, max_distance_px: float | None, divisions: bool) -> None:
    """Link the nuclei of all segmented frames."""
    from microseg.tracking import per_track_measurements, track_objects

    res.tracks = track_objects(
        res.table, max_distance_px=max_distance_px or None, divisions=divisions
    )
    res.track_table = per_track_measurements(res.table, res.tracks)
    n_div = len(res.tracks.divisions)
    _say(
        "success",
        f"{res.tracks.n_tracks} tracks over {len(res.labels)} frames, {n_div} division(s).",
    )


def apply_edit(image: MicroImage, res: NucleiResult, t: int, kind: str, **kw: Any) -> None:
    """Delete, merge or split nuclei of frame ``t`` and measure the frame again."""
    from microseg.commands.nuclei import FrameMeasurer
    from microseg.instances import delete_objects, merge_objects, split_object

    before = res.labels[t]
    if kind == "delete":
        ids = [int(i) for i in kw["ids"]]
        if not ids:
            raise InputError("Choose at least one nucleus to delete.")
        after = delete_objects(before, ids)
        what = f"frame {t}: deleted {', '.join(map(str, ids))}"
    elif kind == "merge":
        a, b = int(kw["a"]), int(kw["b"])
        if a == b:
            raise InputError("Choose two different nuclei to merge.")
        after = merge_objects(before, [a, b])
        what = f"frame {t}: merged {a} and {b}"
    elif kind == "split":
        obj = int(kw["obj"])
        pts = np.array([[kw["y0"], kw["x0"]], [kw["y1"], kw["x1"]]], float)
        after = split_object(before, obj, pts)
        what = f"frame {t}: split {obj} along ({kw['y0']}, {kw['x0']})-({kw['y1']}, {kw['x1']})"
    else:
        raise ValueError(kind)
    had_tracks = res.tracks is not None
    undo = ui().setdefault("undo", [])
    undo.append((t, before))
    del undo[:-10]
    rows = FrameMeasurer(res.pixel_size_um)(after, image.frame(t, res.z))
    res.set_frame(t, after, rows)
    res.edits.append(what)
    note = " Tracks were cleared; track again." if had_tracks else ""
    _say("success", f"Corrected {what}: {len(rows)} nuclei in the frame.{note}")


def undo_edit(image: MicroImage, res: NucleiResult) -> None:
    """Restore the labels before the last correction."""
    from microseg.commands.nuclei import FrameMeasurer

    undo = ui().get("undo") or []
    if not undo:
        _say("info", "There is no correction to undo.")
        return
    t, before = undo.pop()
    res.set_frame(t, before, FrameMeasurer(res.pixel_size_um)(before, image.frame(t, res.z)))
    res.edits.append(f"frame {t}: undo")
    _say("success", f"Undid the last correction of frame {t}.")


def run_safely(action: Callable[[], Any]) -> None:
    """Run an action; a failure becomes a one-sentence message."""
    try:
        action()
    except MicrosegError as exc:
        _say("error", str(exc))
    except Exception as exc:  # noqa: BLE001 - never a traceback on the page
        _say("error", f"That did not work ({type(exc).__name__}: {exc}).")


# ----------------------------------------------------------------------------- controls


def action_bar(image: MicroImage, t: int, settings: dict[str, Any] | None) -> None:
    """Segment buttons, and the progress of a background run with its Stop button."""
    job = ui().get("job")
    busy = job is not None and not job.finished
    c1, c2, c3 = st.columns([1, 1, 2])
    if c1.button(
        "Segment this frame", key="nuc_seg_frame", type="primary", disabled=settings is None or busy
    ):
        run_safely(lambda: segment_frame(image, t, settings))
        st.rerun()
    if image.n_frames > 1 and c2.button(
        "Segment all frames", key="nuc_seg_all", disabled=settings is None or busy
    ):
        run_safely(lambda: start_series(image, settings))
        st.rerun()
    if busy:
        with c3:
            job_progress()


@st.fragment(run_every=1.0)
def job_progress() -> None:
    """Progress bar and Stop button of the background run (refreshed every second)."""
    job = ui().get("job")
    if job is None:
        return
    if job.finished:
        st.rerun()
    frac = job.done / job.total if job.total else 0.0
    st.progress(min(frac, 1.0), text=f"Segmenting: {job.done}/{job.total} frames")
    if job.stop.is_set():
        st.caption("Stopping after the frames in progress ...")
    elif st.button("Stop", key="nuc_stop"):
        job.stop.set()
        st.caption("Stopping after the frames in progress ...")


def frame_slider(image: MicroImage) -> int:
    """Frame slider (0 for a single image)."""
    if image.n_frames <= 1:
        return 0
    return int(st.slider("Frame", 0, image.n_frames - 1, 0, key="nuc_t"))


# ----------------------------------------------------------------------------- selection


def _gen() -> int:
    return int(ui().get("sel_gen", 0))


def chart_key(name: str) -> str:
    """Widget key of a selectable chart or table (changes when the selection is cleared)."""
    return f"nuc_{name}_{_gen()}"


def range_key(col: str, t: int) -> str:
    """Key of the histogram's range slider (one per column and frame, or for all frames)."""
    scope = "all" if st.session_state.get("nuc_scope") == "All frames" else f"t{t}"
    return chart_key(f"range_{col}_{scope}")


def clear_selection() -> None:
    """Forget every selection (charts, table, image)."""
    ui()["sel_gen"] = _gen() + 1


def column_title(col: str) -> str:
    """Axis title with units for a table column."""
    special = {
        "y": "centroid y (px)",
        "x": "centroid x (px)",
        "label": "nucleus id",
        "frame": "frame",
        "touches_border": "touches border",
    }
    if col in special:
        return special[col]
    units = (
        ("_um2", "µm²"),
        ("_px2", "px²"),
        ("_um", "µm"),
        ("_px", "px"),
        ("_deg", "°"),
        ("_rad", "rad"),
    )
    for suffix, unit in units:
        if col.endswith(suffix):
            base = col[: -len(suffix)]
            return f"{base.replace('_', ' ')} ({unit})"
    if col == "area_px":
        return "area (px²)"
    return col.replace("_", " ")


def plot_columns(table: pd.DataFrame, pixel_size: float | None) -> list[str]:
    """Numeric columns worth plotting (µm columns only with a pixel size)."""
    skip = {"frame", "label", "track_id"}
    cols = []
    for c in table.columns:
        if c in skip or not pd.api.types.is_numeric_dtype(table[c]) or table[c].dtype == bool:
            continue
        if not pixel_size and ("_um" in c) and table[c].isna().all():
            continue
        cols.append(c)
    area = "area_um2" if pixel_size and "area_um2" in cols else "area_px"
    if area in cols:
        cols.remove(area)
        cols.insert(0, area)
    return cols


def _rows_in_box(df: pd.DataFrame, box: dict, xcol: str, ycol: str | None) -> pd.DataFrame:
    xs = [v for v in box.get("x", []) if v is not None]
    if len(xs) < 2:
        return df.iloc[0:0]
    x0, x1 = min(xs), max(xs)
    sel = df[xcol].between(x0, x1)
    if ycol is not None and len(box.get("y", [])) >= 2:
        y0, y1 = min(box["y"]), max(box["y"])
        sel &= df[ycol].between(y0, y1)
    return df[sel]


def _keys(df: pd.DataFrame) -> set[tuple[int, int]]:
    if df.empty:
        return set()
    return set(zip(df["frame"].astype(int), df["label"].astype(int), strict=True))


def _chart_selection(key: str) -> dict:
    ev = st.session_state.get(key)
    if not ev:
        return {}
    sel = ev.get("selection") if isinstance(ev, dict) else getattr(ev, "selection", None)
    return sel or {}


def _point_keys(sel: dict, df: pd.DataFrame) -> set[tuple[int, int]]:
    """(frame, label) of clicked points: from their customdata, else their index."""
    keys: set[tuple[int, int]] = set()
    for p in sel.get("points") or []:
        cd = np.atleast_1d(p.get("customdata", []))
        if cd.size >= 2:
            keys.add((int(cd[0]), int(cd[1])))
        elif p.get("point_index") is not None and 0 <= int(p["point_index"]) < len(df):
            keys |= _keys(df.iloc[[int(p["point_index"])]])
    return keys


def plotted_rows(res: NucleiResult, t: int) -> pd.DataFrame:
    """Rows shown in the plots: this frame or all segmented frames."""
    scope = st.session_state.get("nuc_scope", "This frame")
    df = res.table if scope == "All frames" else res.frame_rows(t)
    return df.reset_index(drop=True)


def selected_keys(res: NucleiResult, t: int) -> set[tuple[int, int]]:
    """(frame, label) of the nuclei selected in the plots, the table and the image."""
    df = plotted_rows(res, t)
    keys: set[tuple[int, int]] = set()
    hist_col = st.session_state.get("nuc_hist_col")
    if hist_col in df.columns:
        sel = _chart_selection(chart_key(f"hist_{hist_col}"))
        for box in sel.get("box") or []:
            keys |= _keys(_rows_in_box(df, box, hist_col, None))
        if not sel.get("box") and sel.get("point_indices"):
            idx = [i for i in sel["point_indices"] if 0 <= i < len(df)]
            keys |= _keys(df.iloc[idx])
        rng = st.session_state.get(range_key(hist_col, t))
        vals = df[hist_col].replace([np.inf, -np.inf], np.nan).dropna()
        if rng and len(vals):
            lo, hi = float(vals.min()), float(vals.max())
            eps = 1e-6 * max(hi - lo, 1.0)
            if rng[0] > lo + eps or rng[1] < hi - eps:
                keys |= _keys(df[df[hist_col].between(rng[0], rng[1])])
    xcol, ycol = st.session_state.get("nuc_sc_x"), st.session_state.get("nuc_sc_y")
    if xcol in df.columns and ycol in df.columns:
        sel = _chart_selection(chart_key(f"scatter_{xcol}_{ycol}"))
        for box in sel.get("box") or []:
            keys |= _keys(_rows_in_box(df, box, xcol, ycol))
        if not sel.get("box"):
            keys |= _point_keys(sel, df)
    tsel = st.session_state.get(chart_key("table"))
    if tsel:
        rows = (tsel.get("selection") or {}).get("rows") or []
        rows = [r for r in rows if 0 <= r < len(df)]
        keys |= _keys(df.iloc[rows])
    isel = _chart_selection(chart_key("image"))
    here = res.frame_rows(t).reset_index(drop=True)
    for p in isel.get("points") or []:
        cd = p.get("customdata")
        if cd is not None and len(np.atleast_1d(cd)):
            keys.add((t, int(np.atleast_1d(cd)[0])))
        elif p.get("point_index") is not None and p.get("curve_number") == 1:
            i = int(p["point_index"])
            if 0 <= i < len(here):
                keys |= _keys(here.iloc[[i]])
    for box in isel.get("box") or []:
        keys |= _keys(_rows_in_box(here, box, "x", "y"))
    return keys


# ----------------------------------------------------------------------------- image


def _png_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def overlay_rgb(
    image: MicroImage, res: NucleiResult | None, t: int, highlight: list[int], channel: int | None
) -> np.ndarray:
    """The frame with a distinct outline colour per nucleus; highlighted ids in white."""
    from webui.render import display_plane, instance_overlay

    z = res.z if res is not None else 0
    base = display_plane(image, t=t, z=z, channel=channel)
    if res is None or t not in res.labels:
        return base if base.ndim == 3 else np.repeat(base[..., None], 3, axis=2)
    hl = np.asarray(highlight, np.int64) if highlight else None
    return instance_overlay(base, res.labels[t], highlight=hl)


def track_paths(res: NucleiResult, t: int, tail: int) -> tuple[list, list]:
    """x, y polylines (None-separated) of the tracks present in frame ``t``."""
    if res.tracks is None or res.table.empty:
        return [], []
    links = res.tracks.links
    m = links.merge(res.table[["frame", "label", "y", "x"]], on=["frame", "label"], how="left")
    present = m.loc[m["frame"] == t, "track_id"].unique()
    m = m[m["track_id"].isin(present) & (m["frame"] <= t) & (m["frame"] >= t - tail)]
    xs: list = []
    ys: list = []
    for _, g in m.sort_values(["track_id", "frame"]).groupby("track_id", sort=False):
        if len(g) < 2:
            continue
        xs += g["x"].tolist() + [None]
        ys += g["y"].tolist() + [None]
    return xs, ys


def image_figure(
    rgb: np.ndarray, rows: pd.DataFrame, highlight: set[int], paths: tuple[list, list]
) -> go.Figure:
    """The overlay as a plotly image with clickable nucleus centres and track lines."""
    h, w = rgb.shape[:2]
    fig = go.Figure(go.Image(source=_png_uri(rgb), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"))
    if len(rows):
        hl = rows["label"].isin(list(highlight)).to_numpy()
        fig.add_trace(
            go.Scatter(
                x=rows["x"],
                y=rows["y"],
                mode="markers",
                name="nuclei",
                customdata=rows[["label"]].to_numpy(),
                marker={
                    "size": np.where(hl, 11, 6),
                    "color": np.where(hl, "#ffffff", "#00e5ff"),
                    "opacity": 0.8,
                    "line": {"width": 1, "color": "#000000"},
                },
                hovertemplate="nucleus %{customdata[0]}<br>y %{y:.1f}, x %{x:.1f}<extra></extra>",
            )
        )
    if paths[0]:
        fig.add_trace(
            go.Scatter(
                x=paths[0],
                y=paths[1],
                mode="lines",
                name="tracks",
                line={"color": _TRACK_COLOUR, "width": 2},
                hoverinfo="skip",
            )
        )
    width = int(np.clip(w * 2.5, 380, 720))
    height = int(width * h / w)
    fig.update_layout(
        width=width,
        height=height + 20,
        margin={"l": 0, "r": 0, "t": 10, "b": 10},
        showlegend=False,
        dragmode="zoom",
        clickmode="event+select",
        xaxis={"visible": False, "range": [-0.5, w - 0.5]},
        yaxis={"visible": False, "range": [h - 0.5, -0.5], "scaleanchor": "x"},
    )
    return fig


def viewer(
    image: MicroImage,
    res: NucleiResult | None,
    t: int,
    keys: set[tuple[int, int]],
    channel: int | None,
) -> None:
    """Image with outlines, selection and tracks; beside it the selected nuclei's rows."""
    picked = int(st.session_state.get("nuc_pick", 0) or 0)
    here = {lab for f, lab in keys if f == t}
    if picked:
        here.add(picked)
    left, right = st.columns([3, 2])
    with left:
        rgb = overlay_rgb(image, res, t, sorted(here), channel)
        rows = res.frame_rows(t) if res is not None else pd.DataFrame()
        show_tracks = bool(st.session_state.get("nuc_show_tracks", True))
        tail = int(st.session_state.get("nuc_tail", 10))
        paths = track_paths(res, t, tail) if res is not None and show_tracks else ([], [])
        fig = image_figure(rgb, rows.reset_index(drop=True), here, paths)
        st.plotly_chart(
            fig,
            key=chart_key("image"),
            on_select="rerun",
            selection_mode=("points", "box"),
            width="content",
            config={"displaylogo": False},
        )
        ui()["overlay"] = rgb
    with right:
        if res is None or t not in res.labels:
            st.info("This frame is not segmented yet.")
            return
        n_here = int((res.table["frame"] == t).sum()) if len(res.table) else 0
        st.markdown(
            f"**Frame {t}: {n_here} nuclei** ({len(res.labels)} of "
            f"{res.n_frames} frame(s) segmented)"
        )
        st.caption(f"Model: {res.model_label}")
        st.number_input(
            "Show nucleus (id in this frame, 0 = none)",
            min_value=0,
            max_value=int(res.labels[t].max(initial=0)) or 0,
            step=1,
            key="nuc_pick",
        )
        n_sel = len(keys)
        st.markdown(
            f"**{n_sel} nuclei selected**"
            + (f" ({len(here - {picked})} in this frame)" if n_sel else "")
        )
        show = res.frame_rows(t)
        show = show[show["label"].isin(list(here))] if here else show.iloc[0:0]
        if picked and picked not in set(res.frame_rows(t)["label"]):
            st.caption(f"There is no nucleus {picked} in frame {t}.")
        if len(show):
            st.dataframe(display_table(show, res.pixel_size_um), hide_index=True, height=220)
        if n_sel and st.button("Clear selection", key="nuc_clear_sel"):
            clear_selection()
            st.rerun()


# ----------------------------------------------------------------------------- tables, plots


def display_table(df: pd.DataFrame, pixel_size: float | None) -> pd.DataFrame:
    """The table as shown: empty µm columns dropped without a pixel size."""
    if not pixel_size:
        df = df[[c for c in df.columns if not ("_um" in c and df[c].isna().all())]]
    return df


def table_tab(res: NucleiResult, t: int) -> None:
    """Table of nuclei (this frame or all) with row selection."""
    df = plotted_rows(res, t)
    if not res.pixel_size_um:
        st.caption("Areas and lengths in pixels: set the pixel size on the Image page for µm.")
    st.dataframe(
        display_table(df, res.pixel_size_um),
        key=chart_key("table"),
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        height=320,
    )
    st.caption("Select rows to highlight those nuclei in the image.")


def plots_tab(res: NucleiResult, t: int, keys: set[tuple[int, int]]) -> None:
    """Histogram and scatter plot of any column, with linked selection."""
    import plotly.express as px

    df = plotted_rows(res, t).replace([np.inf, -np.inf], np.nan)
    cols = plot_columns(res.table, res.pixel_size_um)
    if df.empty or not cols:
        st.info("No nuclei to plot in this frame.")
        return
    c1, c2 = st.columns(2)
    with c1:
        col = st.selectbox("Histogram of", cols, key="nuc_hist_col", format_func=column_title)
        fig = px.histogram(df, x=col, nbins=min(40, max(5, len(df) // 2)))
        fig.update_layout(
            dragmode="select",
            height=340,
            margin={"l": 10, "r": 10, "t": 30, "b": 10},
            xaxis_title=column_title(col),
            yaxis_title="nuclei",
            bargap=0.05,
            title={"text": "Drag across bars to select", "font": {"size": 12}},
        )
        st.plotly_chart(
            fig,
            key=chart_key(f"hist_{col}"),
            on_select="rerun",
            selection_mode=("box", "points"),
            width="stretch",
        )
        vals = df[col].dropna()
        if len(vals) and float(vals.max()) > float(vals.min()):
            lo, hi = float(vals.min()), float(vals.max())
            st.slider(
                f"Or select a range of {column_title(col)}",
                lo,
                hi,
                (lo, hi),
                key=range_key(col, t),
            )
    with c2:
        xi = cols.index("mean_intensity") if "mean_intensity" in cols else min(1, len(cols) - 1)
        xcol = st.selectbox("Scatter x", cols, index=0, key="nuc_sc_x", format_func=column_title)
        ycol = st.selectbox("Scatter y", cols, index=xi, key="nuc_sc_y", format_func=column_title)
        border = (
            df["touches_border"].astype(bool).to_numpy()
            if "touches_border" in df
            else np.zeros(len(df), bool)
        )
        chosen = np.array(
            [(int(f), int(lab)) in keys for f, lab in zip(df["frame"], df["label"], strict=True)]
        )
        colours = np.where(chosen, "#ff7f0e", np.where(border, "#d62728", "#1f77b4"))
        fig = go.Figure(
            go.Scatter(
                x=df[xcol],
                y=df[ycol],
                mode="markers",
                name="nuclei",
                customdata=df[["frame", "label"]].to_numpy(),
                marker={"size": np.where(chosen, 10, 7), "opacity": 0.85, "color": colours},
                hovertemplate="frame %{customdata[0]}, nucleus %{customdata[1]}"
                "<br>%{x:.4g}, %{y:.4g}<extra></extra>",
            )
        )
        fig.update_layout(
            dragmode="select",
            height=340,
            xaxis_title=column_title(xcol),
            yaxis_title=column_title(ycol),
            margin={"l": 10, "r": 10, "t": 30, "b": 10},
            title={"text": "orange: selected · red: touches the border", "font": {"size": 12}},
        )
        st.plotly_chart(
            fig,
            key=chart_key(f"scatter_{xcol}_{ycol}"),
            on_select="rerun",
            selection_mode=("box", "points"),
            width="stretch",
        )


def time_tab(res: NucleiResult, t: int) -> None:
    """Count, mean area and mean intensity per frame."""
    from plotly.subplots import make_subplots

    from microseg.commands.nuclei import frame_table

    frames = frame_table(res.table, res.frames_done)
    if len(frames) < 2:
        st.info("Segment more frames to see plots over time.")
        if len(frames):
            st.dataframe(frames, hide_index=True)
        return
    area = "mean_area_um2" if res.pixel_size_um and "mean_area_um2" in frames else "mean_area_px"
    area_title = "mean area (µm²)" if area.endswith("um2") else "mean area (px²)"
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for i, (col, title) in enumerate(
        (("count", "nuclei per frame"), (area, area_title), ("mean_intensity", "mean intensity")),
        start=1,
    ):
        if col not in frames.columns:
            continue
        fig.add_trace(
            go.Scatter(
                x=frames["frame"],
                y=frames[col],
                mode="lines+markers",
                name=title,
                marker={"size": 4},
            ),
            row=i,
            col=1,
        )
        fig.update_yaxes(title_text=title, row=i, col=1)
    fig.add_vline(x=t, line_dash="dot", line_color="#888888")
    fig.update_xaxes(title_text="frame", row=3, col=1)
    fig.update_layout(height=560, showlegend=False, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(fig, key="nuc_time_plot", width="stretch")
    st.dataframe(frames, hide_index=True, height=200)


def tracks_tab(res: NucleiResult) -> None:
    """Track button, lineage and per-track measurements."""
    c1, c2, c3 = st.columns(3)
    dist = c1.number_input(
        "Max. displacement per frame (px), 0 = automatic",
        min_value=0.0,
        value=0.0,
        step=1.0,
        key="nuc_track_dist",
    )
    div = c2.toggle("Detect divisions", value=True, key="nuc_track_div")
    c3.toggle("Show tracks on the image", value=True, key="nuc_show_tracks")
    c3.slider("Track tail (frames)", 1, 50, 10, key="nuc_tail")
    if st.button("Track nuclei", key="nuc_track", disabled=len(res.labels) < 2):
        run_safely(lambda: track(res, dist, div))
        st.rerun()
    if len(res.labels) < 2:
        st.info("Segment at least two frames (Segment all frames) to track nuclei.")
        return
    if res.tracks is None:
        st.caption("Not tracked yet (or tracks were cleared by a correction).")
        return
    tr = res.tracks
    st.markdown(
        f"**{tr.n_tracks} tracks**, {len(tr.divisions)} division(s); max. displacement "
        f"{tr.params.get('max_distance_px', 0):.1f} px (laptrack)."
    )
    lc, rc = st.columns(2)
    with lc:
        st.caption("Lineage (track, first and last frame, parent track)")
        st.dataframe(tr.lineage, hide_index=True, height=260, key="nuc_lineage")
    with rc:
        st.caption("Per-track measurements")
        st.dataframe(res.track_table, hide_index=True, height=260, key="nuc_track_table")
    ids = tr.lineage["track_id"].tolist()
    pick = st.selectbox("Track to plot", ids, key="nuc_track_pick") if ids else None
    if pick is not None:
        m = tr.links[tr.links["track_id"] == pick].merge(res.table, on=["frame", "label"])
        area = "area_um2" if res.pixel_size_um and "area_um2" in m else "area_px"
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=1, cols=2, subplot_titles=(column_title(area), "mean intensity"))
        fig.add_trace(go.Scatter(x=m["frame"], y=m[area], mode="lines+markers"), row=1, col=1)
        if "mean_intensity" in m:
            fig.add_trace(
                go.Scatter(x=m["frame"], y=m["mean_intensity"], mode="lines+markers"), row=1, col=2
            )
        fig.update_xaxes(title_text="frame")
        fig.update_layout(height=280, showlegend=False, margin={"l": 10, "r": 10, "t": 30, "b": 10})
        st.plotly_chart(fig, key="nuc_track_plot", width="stretch")


def corrections_tab(image: MicroImage, res: NucleiResult, t: int) -> None:
    """Delete, merge and split nuclei of the current frame; undo."""
    if t not in res.labels:
        st.info("Segment this frame first.")
        return
    ids = sorted(int(i) for i in res.frame_rows(t)["label"])
    st.caption(f"Corrections apply to frame {t}; the table and plots update.")
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Delete**")
        doomed = st.multiselect("Nuclei to delete", ids, key="nuc_del_ids")
        if st.button("Delete", key="nuc_del", disabled=not doomed):
            run_safely(lambda: apply_edit(image, res, t, "delete", ids=doomed))
            st.rerun()
    top = max(ids) if ids else 0
    with c2:
        st.markdown("**Merge two nuclei**")
        a = st.number_input("First id", 0, top, 0, key="nuc_merge_a")
        b = st.number_input("Second id", 0, top, 0, key="nuc_merge_b")
        if st.button("Merge", key="nuc_merge", disabled=not (a and b)):
            run_safely(lambda: apply_edit(image, res, t, "merge", a=a, b=b))
            st.rerun()
    h, w = image.shape_yx
    with c3:
        st.markdown("**Split along a line**")
        obj = st.number_input("Nucleus id", 0, top, 0, key="nuc_split_id")
        p1, p2 = st.columns(2)
        y0 = p1.number_input("y0", 0, h - 1, 0, key="nuc_split_y0")
        x0 = p2.number_input("x0", 0, w - 1, 0, key="nuc_split_x0")
        y1 = p1.number_input("y1", 0, h - 1, 0, key="nuc_split_y1")
        x1 = p2.number_input("x1", 0, w - 1, 0, key="nuc_split_x1")
        st.caption(
            "Two points (pixels) of a line across the nucleus; hover the image to read positions."
        )
        if st.button("Split", key="nuc_split_go", disabled=not obj):
            run_safely(
                lambda: apply_edit(image, res, t, "split", obj=obj, y0=y0, x0=x0, y1=y1, x1=x1)
            )
            st.rerun()
    if st.button("Undo last correction", key="nuc_undo", disabled=not ui().get("undo")):
        run_safely(lambda: undo_edit(image, res))
        st.rerun()
    if res.edits:
        st.caption("Corrections so far: " + "; ".join(res.edits[-8:]))


# ----------------------------------------------------------------------------- exports


def label_stack(res: NucleiResult, track_ids: bool = False) -> np.ndarray:
    """``(T, Y, X)`` labels (unsegmented frames are 0); track ids when asked and tracked."""
    from microseg.io import label_dtype

    first = next(iter(res.labels.values()))
    top = max(int(v.max(initial=0)) for v in res.labels.values())
    stack = np.zeros((res.n_frames, *first.shape), label_dtype(top))
    for t, lab in res.labels.items():
        stack[t] = lab
    if track_ids and res.tracks is not None:
        stack = res.tracks.relabel(stack)
    return stack if res.n_frames > 1 else stack[0]


def export_bytes(
    res: NucleiResult, kind: str, overlay: np.ndarray | None = None, track_ids: bool = False
) -> bytes:
    """The bytes of one export (TIFF, CSV, ZIP or PNG), with provenance."""
    from microseg import exports
    from microseg.io import write_png

    prov = res.provenance(export=kind, label_ids="track ids" if track_ids else "per frame")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if kind == "labels":
            p = exports.write_label_stack(
                d / "labels.tif",
                label_stack(res, track_ids),
                pixel_size_um=res.pixel_size_um,
                provenance=prov,
            )
            return p.read_bytes()
        if kind == "objects":
            return res.table.to_csv(index=False).encode()
        if kind == "frames":
            from microseg.commands.nuclei import frame_table

            return frame_table(res.table, res.frames_done).to_csv(index=False).encode()
        if kind == "tracks":
            return _tracks_csv(res).to_csv(index=False).encode()
        if kind == "provenance":
            return json.dumps(prov, indent=1, default=str).encode()
        if kind == "rois":
            return exports.write_imagej_rois(label_stack(res), d / "rois.zip").read_bytes()
        if kind == "overlay":
            if overlay is None:
                raise InputError("There is no overlay to export.")
            return write_png(d / "overlay.png", overlay, metadata=prov).read_bytes()
        if kind in ("trackmate", "napari", "all"):
            return _zip_export(res, kind, d, prov)
    raise ValueError(kind)


def _tracks_csv(res: NucleiResult) -> pd.DataFrame:
    if res.tracks is None:
        raise InputError("Track the nuclei first.")
    links = res.tracks.links.merge(
        res.table[["frame", "label", "y", "x"]], on=["frame", "label"], how="left"
    )
    return links


def _zip_export(res: NucleiResult, kind: str, d: Path, prov: dict) -> bytes:
    from microseg import exports

    files: list[Path] = []
    if kind in ("trackmate", "all") and res.tracks is not None:
        files += list(
            exports.write_tracks_trackmate_csv(
                res.tracks.links,
                res.table,
                d / "tracks_trackmate.csv",
                pixel_size_um=res.pixel_size_um,
                provenance=prov,
            )
        )
    if kind in ("napari", "all") and res.tracks is not None:
        files += list(
            exports.write_tracks_napari_csv(res.tracks.links, res.table, d / "tracks_napari.csv")
        )
    if kind == "all":
        from microseg.commands.nuclei import frame_table

        files.append(
            exports.write_label_stack(
                d / "labels.tif", label_stack(res), pixel_size_um=res.pixel_size_um, provenance=prov
            )
        )
        files += list(exports.write_table_csv(res.table, d / "objects.csv", prov))
        files += list(
            exports.write_table_csv(frame_table(res.table, res.frames_done), d / "frames.csv", prov)
        )
        if res.tracks is not None:
            files += list(exports.write_table_csv(_tracks_csv(res), d / "tracks.csv", prov))
            files += list(exports.write_table_csv(res.track_table, d / "track_summary.csv", prov))
        files.append(exports.write_imagej_rois(label_stack(res), d / "rois.zip"))
    if not files:
        raise InputError("Track the nuclei first.")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.name)
    return buf.getvalue()


def _deferred(res: NucleiResult, kind: str, **kw: Any) -> Callable[[], bytes]:
    def make() -> bytes:
        return export_bytes(res, kind, **kw)

    return make


def exports_tab(res: NucleiResult, stem: str) -> None:
    """Download buttons: labels, tables, tracks, ImageJ ROIs, overlay PNG, everything."""
    tracked = res.tracks is not None
    track_ids = st.toggle(
        "Label ids = track ids",
        value=False,
        key="nuc_export_track_ids",
        disabled=not tracked,
        help="Otherwise ids are per frame, as in the objects table.",
    )
    rows = [
        ("Label stack (TIFF)", "labels", f"{stem}_labels.tif", "image/tiff", True),
        ("Objects (CSV)", "objects", f"{stem}_objects.csv", "text/csv", True),
        ("Frames (CSV)", "frames", f"{stem}_frames.csv", "text/csv", True),
        ("Tracks (CSV)", "tracks", f"{stem}_tracks.csv", "text/csv", tracked),
        (
            "Tracks for TrackMate (ZIP: spots + edges)",
            "trackmate",
            f"{stem}_tracks_trackmate.zip",
            "application/zip",
            tracked,
        ),
        (
            "Tracks for napari (ZIP: CSV + graph)",
            "napari",
            f"{stem}_tracks_napari.zip",
            "application/zip",
            tracked,
        ),
        ("ImageJ ROIs (ZIP)", "rois", f"{stem}_rois.zip", "application/zip", True),
        ("Overlay of this frame (PNG)", "overlay", f"{stem}_overlay.png", "image/png", True),
        ("Provenance (JSON)", "provenance", f"{stem}_provenance.json", "application/json", True),
        (
            "Everything (ZIP, with provenance sidecars)",
            "all",
            f"{stem}_nuclei.zip",
            "application/zip",
            True,
        ),
    ]
    cols = st.columns(2)
    for i, (label, kind, name, mime, enabled) in enumerate(rows):
        kw: dict[str, Any] = {}
        if kind == "labels":
            kw["track_ids"] = bool(track_ids and tracked)
        if kind == "overlay":
            kw["overlay"] = ui().get("overlay")
        cols[i % 2].download_button(
            label,
            data=_deferred(res, kind, **kw),
            file_name=name,
            mime=mime,
            disabled=not enabled,
            key=f"nuc_dl_{kind}",
            on_click="ignore",
        )
    if not tracked:
        st.caption("Track exports appear after tracking (Tracks tab).")
