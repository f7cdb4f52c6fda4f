"""The QC review page: every image of a batch run (or of a folder, checked now) as a
thumbnail with its quality verdict, worst first; one click opens it on the Grains or
Nuclei page. The checks are :mod:`microseg.quality`'s, run by ``microseg batch``."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from microseg.errors import MicrosegError
from webui import state

VERDICT_LABEL = {"failed": "could not be processed", "do_not_trust": "do not trust",
                 "check": "check this", "ok": "looks fine", "": "no verdict"}  # fmt: skip
VERDICT_ICON = {"failed": ":material/error:", "do_not_trust": ":material/dangerous:",
                "check": ":material/warning:", "ok": ":material/check_circle:", "": ""}  # fmt: skip
TASK_PAGE = {"grains": "pages/5_Grains.py", "nuclei": "pages/4_Nuclei.py"}


def read_run(folder: Path) -> dict | None:
    """A batch run's ``batch_summary.json`` in ``folder`` (``None`` when there is none)."""
    path = folder / "batch_summary.json"
    if not path.is_file():
        return None
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) and isinstance(run.get("qc"), list) else None


def check_folder(folder: Path, task: str, out: Path, bar) -> dict:  # noqa: ANN001
    """Run ``microseg batch`` (the built-in model of ``task``) over ``folder`` into ``out``."""
    from microseg.commands.batch import cmd_batch, expand_inputs

    n = len(expand_inputs([str(folder)]))
    done = [0]

    def progress(msg: str) -> None:
        if msg.startswith("["):
            done[0] += 1
        bar.progress(min(1.0, done[0] / max(n, 1)), text=msg.splitlines()[0][:120])

    args = argparse.Namespace(inputs=[str(folder)], task=task, model=f"builtin:{task}",
                              out=str(out), pixel_size=None, scheduler=None,
                              drop_data_bar=False)  # fmt: skip
    return cmd_batch(args, progress)


@st.cache_data(max_entries=256, show_spinner=False)
def thumbnail(path: str, mtime: float, side: int = 200) -> np.ndarray | None:
    """A small 8-bit rendering of an image file (``None`` when it cannot be read)."""
    from skimage.transform import resize

    from microseg.io import read_image
    from webui.render import display_plane

    try:
        img = display_plane(read_image(path))
    except (MicrosegError, OSError, ValueError):
        return None
    h, w = img.shape[:2]
    f = side / max(h, w)
    if f < 1:
        img = resize(img, (max(1, round(h * f)), max(1, round(w * f))) + img.shape[2:],
                     preserve_range=True, anti_aliasing=True).astype(np.uint8)  # fmt: skip
    return img


def _open(path: Path, task: str) -> None:
    from webui.loading import load_upload_into_state

    if load_upload_into_state(path.name, path.read_bytes(), task=task):
        st.switch_page(TASK_PAGE.get(task, "pages/5_Grains.py"))
    else:
        st.error(state.get("load_error") or f"{path.name} could not be opened.")


def qc_page() -> None:
    """Render the QC review page."""
    from webui.layout import page_setup

    page_setup("QC review")
    st.title("QC review")
    st.markdown(
        "Every image of a batch run with its quality verdict, worst first. Give the output "
        "folder of `microseg batch` (it holds `batch_summary.json` and `qc.csv`), or a folder "
        "of images to check now with a built-in model."
    )
    c1, c2, c3 = st.columns([3, 1, 1])
    folder_text = c1.text_input("Folder on the server", value=state.get("qc_folder") or "",
                                key="qc_folder_input",
                                placeholder="/path/to/batch/output or /path/to/images")  # fmt: skip
    task = c2.selectbox("Task (to check a folder of images)", ["grains", "nuclei"], key="qc_task")
    run_now = c3.button("Check the images now", key="qc_check")
    if not folder_text.strip():
        st.info("Type the path of a folder.")
        return
    folder = Path(folder_text.strip()).expanduser()
    if not folder.is_dir():
        st.error(f"There is no folder {folder} on the server.")
        return
    state.put("qc_folder", str(folder))
    run = read_run(folder)
    if run_now:
        out = Path(tempfile.mkdtemp(prefix="microseg_qc_"))
        bar = st.progress(0.0, text="Checking ...")
        try:
            run = check_folder(folder, task, out, bar)
        except MicrosegError as exc:
            bar.empty()
            st.error(str(exc))
            return
        bar.empty()
        state.put("qc_run_for", str(folder))
        state.put("qc_run", run)
    elif run is None:
        cached = state.get("qc_run")
        if cached and state.get("qc_run_for") == str(folder):
            run = cached
    if run is None:
        st.info(f"{folder} holds no batch run (batch_summary.json). Press 'Check the images "
                "now' to check its images with the built-in model of the task.")  # fmt: skip
        return
    _show_run(run)


def _show_run(run: dict) -> None:
    rows = run["qc"]
    task = str(run.get("task", "grains"))
    counts = {v: sum(r.get("verdict") == v for r in rows) for v in VERDICT_LABEL}
    m = st.columns(4)
    for col, v in zip(m, ("do_not_trust", "check", "ok", "failed"), strict=True):
        col.metric(VERDICT_LABEL[v].capitalize(), counts[v])
    st.caption(f"Task {task}, model {run.get('model')}; {len(rows)} input(s), worst first.")
    per_row = 4
    for start in range(0, len(rows), per_row):
        cols = st.columns(per_row)
        for col, (i, row) in zip(
            cols, enumerate(rows[start : start + per_row], start), strict=False
        ):
            with col, st.container(border=True, key=f"qc_item_{i}"):
                path = Path(str(row.get("input", "")))
                v = str(row.get("verdict") or "")
                st.markdown(f"{VERDICT_ICON.get(v, '')} **{VERDICT_LABEL.get(v, v)}**")
                thumb = thumbnail(str(path), path.stat().st_mtime) if path.is_file() else None
                if thumb is not None:
                    st.image(thumb, caption=path.name, width="stretch")
                else:
                    st.caption(path.name)
                text = row.get("error") or row.get("reasons") or ""
                if text:
                    st.caption(str(text))
                if (
                    path.is_file()
                    and v != "failed"
                    and st.button(f"Open on the {task.capitalize()} page", key=f"qc_open_{i}")
                ):
                    _open(path, task)
