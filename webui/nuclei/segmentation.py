"""Segmenting the open image with the engine's nuclei pipeline (:mod:`microseg.nuclei`):
one frame in the script thread, or every frame in a background job the page polls, with
the frame slider, the segment buttons and the job's progress and Stop button."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from microseg.errors import MicrosegError
from microseg.image import MicroImage
from webui import state
from webui.nuclei.model_choice import resolve_model
from webui.nuclei.session import NucleiResult, current_result, run_safely, say, ui


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


def _pipeline(settings: dict[str, Any]):  # noqa: ANN202
    from microseg.nuclei import FrameMeasurer, FrameSegmenter

    model = resolve_model(settings["model_id"])
    seg = FrameSegmenter(
        model,
        channel=settings["channel"],
        min_area_px=settings["min_area_px"],
        split_touching=settings["split_touching"],
        augment=bool(settings.get("augment", False)),
        object_diameter_px=settings.get("object_diameter_px"),
        threshold=settings.get("threshold"),
        h_fraction=settings.get("h_fraction"),
    )
    return seg, FrameMeasurer(settings["pixel_size_um"])


def _result_settings(settings: dict[str, Any]) -> dict[str, Any]:
    model = resolve_model(settings["model_id"])
    keys = ("channel", "min_area_px", "split_touching", "pixel_size_um")
    out = {k: settings[k] for k in keys}
    out["temporal_consistency"] = bool(settings.get("temporal", True))
    out["test_time_augmentation"] = bool(settings.get("augment", False))
    out["object_diameter_px"] = settings.get("object_diameter_px")
    out["threshold"] = settings.get("threshold")
    out["split_depth"] = settings.get("h_fraction")
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


def segment_frame(image: MicroImage, t: int, settings: dict[str, Any]) -> None:
    """Segment frame ``t`` now (in the script thread) and store it in the result."""
    seg, meas = _pipeline(settings)
    frame = image.frame(t, settings["z"])
    start = time.perf_counter()
    labels = seg(frame)
    rows = meas(labels, frame)
    res = _fresh_result(state.get("image_id"), image, settings)
    res.set_frame(t, labels, rows)
    res.originals.pop(int(t), None)  # a new segmentation: no corrections on it yet
    say("success", f"Frame {t}: {len(rows)} nuclei ({time.perf_counter() - start:.1f} s).")


def start_series(image: MicroImage, settings: dict[str, Any]) -> SeriesJob:
    """Start segmenting every frame in the background."""
    from microseg.nuclei import default_workers, segment_image

    seg, meas = _pipeline(settings)
    z = settings["z"]

    def run(progress: Callable[[int, int], None], stop: threading.Event) -> Any:
        return segment_image(
            image,
            seg,
            meas,
            z=z,
            progress=progress,
            stop=stop,
            workers=default_workers(),
            temporal=bool(settings.get("temporal", True)),
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
        say("error", job.error)
        return
    if job.image_id != state.get("image_id"):
        return
    from microseg.nuclei import empty_objects, order_columns

    sr = job.result
    res = NucleiResult(
        image_id=job.image_id,
        n_frames=image.n_frames,
        z=job.settings["z"],
        model_label=job.settings["model_label"],
        settings=_result_settings(job.settings),
    )
    res.labels = {t: sr.labels[t] for t in range(sr.n_done)}
    res.originals = {}
    table = order_columns(sr.tables) if len(sr.tables) else empty_objects()
    res.table = table.reset_index(drop=True)
    state.put("nuclei_result", res)
    n = len(res.table)
    if sr.stopped:
        say("warning", f"Stopped after {sr.n_done} of {sr.n_total} frames ({n} nuclei).")
    else:
        rate = sr.n_done / job.seconds if job.seconds > 0 else float("nan")
        say(
            "success",
            f"Segmented {sr.n_done} frames: {n} nuclei in {job.seconds:.1f} s "
            f"({rate:.1f} frames/s).",
        )


def remeasure(image: MicroImage, res: NucleiResult, pixel_size_um: float | None) -> None:
    """Measure every segmented frame again (after a pixel-size change)."""
    from microseg.nuclei import FrameMeasurer

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
