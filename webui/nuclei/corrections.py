"""Corrections of the nuclei of a frame: draw on the frame to split, merge, delete or
add nuclei, or give ids and points; undo. The frame is measured again after each."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from microseg.errors import InputError
from microseg.image import MicroImage
from webui.nuclei.retrain import retrain_section
from webui.nuclei.session import NucleiResult, run_safely, say, ui
from webui.stroke_canvas import clear_report, report, stroke_canvas

DRAW_MODES = {
    "split": "Split: draw across a nucleus",
    "merge": "Merge: draw from one nucleus into the others",
    "delete": "Delete: draw over nuclei",
    "add": "Add: outline a missing nucleus",
}
DRAW_KEY = "nuc_draw"
DRAW_COLOUR = "#ff2d2d"
DRAW_WIDTH = 3


def _ids_under(labels: np.ndarray, mask: np.ndarray) -> list[int]:
    """Nuclei under the stroke, most covered first."""
    hit = labels[mask]
    counts = np.bincount(hit[hit > 0].astype(np.int64))
    ids = np.flatnonzero(counts)
    return [int(i) for i in ids[np.argsort(-counts[ids], kind="stable")]]


def apply_edit(image: MicroImage, res: NucleiResult, t: int, kind: str, **kw: Any) -> None:
    """Delete, merge, split or add nuclei of frame ``t`` and measure the frame again."""
    from microseg.instances import add_object, delete_objects, merge_objects, split_object
    from microseg.nuclei import FrameMeasurer

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
    elif kind == "add_drawn":
        after = add_object(before, np.asarray(kw["mask"], bool))
        what = f"frame {t}: added nucleus {int(after.max())} (drawn)"
    elif kind in ("split_drawn", "merge_drawn", "delete_drawn"):
        mask = np.asarray(kw["mask"], bool)
        ids = _ids_under(before, mask)
        if not ids:
            raise InputError("The stroke does not touch a nucleus; draw on the nuclei to correct.")
        if kind == "split_drawn":
            after = split_object(before, ids[0], mask)
            what = f"frame {t}: split {ids[0]} along a drawn line"
        elif kind == "merge_drawn":
            if len(ids) < 2:
                raise InputError(
                    f"The stroke touches only nucleus {ids[0]}; draw from one nucleus into another."
                )
            after = merge_objects(before, ids)
            what = f"frame {t}: merged {', '.join(map(str, sorted(ids)))} (drawn)"
        else:
            after = delete_objects(before, ids)
            what = f"frame {t}: deleted {', '.join(map(str, sorted(ids)))} (drawn)"
    elif kind == "split":
        obj = int(kw["obj"])
        pts = np.array([[kw["y0"], kw["x0"]], [kw["y1"], kw["x1"]]], float)
        after = split_object(before, obj, pts)
        what = f"frame {t}: split {obj} along ({kw['y0']}, {kw['x0']})-({kw['y1']}, {kw['x1']})"
    else:
        raise ValueError(kind)
    had_tracks = res.tracks is not None
    res.originals.setdefault(int(t), before)
    undo = ui().setdefault("undo", [])
    undo.append((t, before))
    del undo[:-10]
    rows = FrameMeasurer(res.pixel_size_um)(after, image.frame(t, res.z))
    res.set_frame(t, after, rows)
    res.edits.append(what)
    note = " Tracks were cleared; track again." if had_tracks else ""
    say("success", f"Corrected {what}: {len(rows)} nuclei in the frame.{note}")


def undo_edit(image: MicroImage, res: NucleiResult) -> None:
    """Restore the labels before the last correction."""
    from microseg.nuclei import FrameMeasurer

    undo = ui().get("undo") or []
    if not undo:
        say("info", "There is no correction to undo.")
        return
    t, before = undo.pop()
    res.set_frame(t, before, FrameMeasurer(res.pixel_size_um)(before, image.frame(t, res.z)))
    res.edits.append(f"frame {t}: undo")
    say("success", f"Undid the last correction of frame {t}.")


def corrections_tab(image: MicroImage, res: NucleiResult, t: int) -> None:
    """Delete, merge and split nuclei of the current frame; undo."""
    if t not in res.labels:
        st.info("Segment this frame first.")
        return
    ids = sorted(int(i) for i in res.frame_rows(t)["label"])
    st.caption(f"Corrections apply to frame {t}; the table and plots update.")
    _draw_tool(image, res, t)
    st.caption("Or by ids and points:")
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Delete**")
        doomed = st.multiselect("Nuclei to delete", ids, key="nuc_del_ids")
        if st.button("Delete", key="nuc_del", disabled=not doomed):
            clear_report(DRAW_KEY)
            run_safely(lambda: apply_edit(image, res, t, "delete", ids=doomed))
            st.rerun()
    top = max(ids) if ids else 0
    with c2:
        st.markdown("**Merge two nuclei**")
        a = st.number_input("First id", 0, top, 0, key="nuc_merge_a")
        b = st.number_input("Second id", 0, top, 0, key="nuc_merge_b")
        if st.button("Merge", key="nuc_merge", disabled=not (a and b)):
            clear_report(DRAW_KEY)
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
            clear_report(DRAW_KEY)
            run_safely(
                lambda: apply_edit(image, res, t, "split", obj=obj, y0=y0, x0=x0, y1=y1, x1=x1)
            )
            st.rerun()
    if st.button("Undo last correction", key="nuc_undo", disabled=not ui().get("undo")):
        clear_report(DRAW_KEY)
        run_safely(lambda: undo_edit(image, res))
        st.rerun()
    if res.edits:
        st.caption("Corrections so far: " + "; ".join(res.edits[-8:]))
    retrain_section(image, res, t)


def _draw_tool(image: MicroImage, res: NucleiResult, t: int) -> None:
    """Draw on the frame (outlines shown) to split, merge, delete or add nuclei."""
    from webui import state
    from webui.nuclei.viewer import overlay_rgb

    # the canvas only while drawing: a canvas mounts with an extra rerun of the page
    if not st.toggle("Draw on the frame", key="nuc_draw_on"):
        return
    mode = st.segmented_control("Correction", list(DRAW_MODES), format_func=DRAW_MODES.get,
                                default="split", key="nuc_draw_mode") or "split"  # fmt: skip
    shown = ui().get("overlay")
    if shown is None or shown.shape[:2] != res.labels[t].shape:
        shown = overlay_rgb(image, res, t, [], None)

    def render(region: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
        from PIL import Image

        y0, y1, x0, x1 = region
        crop = np.ascontiguousarray(shown[y0:y1, x0:x1])
        return np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.NEAREST))

    mask = stroke_canvas(res.labels[t].shape, render, DRAW_KEY,
                         f"{state.get('image_id')}_{t}_{mode}", DRAW_COLOUR, DRAW_WIDTH)  # fmt: skip
    if mask is not None:
        run_safely(lambda: apply_edit(image, res, t, f"{mode}_drawn", mask=mask))
        msg = ui().pop("message", None)  # shown above the canvas, beside the drawing
        if msg:
            report(DRAW_KEY, *msg)
        st.rerun()
