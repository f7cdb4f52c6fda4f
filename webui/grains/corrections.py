"""Corrections of a grain map: paint a missing boundary or erase a false one on the map,
add one along a line, remove one between two grains or at a point, undo, discard."""

from __future__ import annotations

import numpy as np
import streamlit as st

from microseg.errors import InputError
from webui.grains.selection import selected_ids
from webui.grains.shared import one_sentence, ui
from webui.stroke_canvas import clear_report, report, stroke_canvas

PAINT_KEY = "grains_paint"
PAINT_MODES = {"add": "Paint a missing boundary", "remove": "Erase a false boundary"}
PAINT_COLOURS = {"add": "#ff2d2d", "remove": "#00e5ff"}
#: brush width in display pixels: a thin line to add, a wide stroke to erase
PAINT_WIDTH = {"add": 3, "remove": 12}


def _line_mask(shape: tuple[int, int], p0: tuple[float, float], p1: tuple[float, float],
               extend: float = 3.0) -> np.ndarray:  # fmt: skip
    """One-pixel line from p0 to p1 ((y, x)), extended by ``extend`` px at both ends."""
    from skimage import draw

    (y0, x0), (y1, x1) = p0, p1
    d = np.hypot(y1 - y0, x1 - x0)
    if d > 0 and extend:
        uy, ux = (y1 - y0) / d, (x1 - x0) / d
        y0, x0, y1, x1 = y0 - extend * uy, x0 - extend * ux, y1 + extend * uy, x1 + extend * ux
    rr, cc = draw.line(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
    keep = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    mask = np.zeros(shape, bool)
    mask[rr[keep], cc[keep]] = True
    return mask


def shared_boundary(labels: np.ndarray, a: int, b: int) -> np.ndarray:
    """Boundary pixels (0) between grain ``a`` and grain ``b``, kept away from the
    junctions with other grains so that only these two grains merge."""
    from scipy import ndimage as ndi

    ids = np.unique(labels)
    for g in (a, b):
        if g <= 0 or g not in ids:
            raise InputError(f"There is no grain {g} in the grain map.")
    if a == b:
        raise InputError("Pick two different grains to remove the boundary between them.")
    fp = np.ones((3, 3), bool)
    near_a = ndi.binary_dilation(labels == a, fp)
    near_b = ndi.binary_dilation(labels == b, fp)
    other = (labels != 0) & (labels != a) & (labels != b)
    mask = near_a & near_b & (labels == 0)
    if not mask.any():
        raise InputError(f"Grains {a} and {b} do not share a boundary.")
    for margin in (3, 2):
        trimmed = mask & ~ndi.binary_dilation(other, fp, iterations=margin)
        if trimmed.any():
            return trimmed
    return mask


def apply_edit(labels: np.ndarray, op: dict) -> np.ndarray:
    """Apply one correction to a grain map and return the new map."""
    from skimage import draw

    from microseg import grains

    shape = labels.shape
    if op["kind"] == "add":
        mask = _line_mask(shape, (op["y0"], op["x0"]), (op["y1"], op["x1"]))
        if not mask.any():
            raise InputError("The line lies outside the image.")
        out = grains.edit_add_boundary(labels, mask)
        if int(out.max()) <= int(labels.max()):
            raise InputError(
                "The line does not cut a grain in two; draw it from one boundary to another."
            )
        return out
    if op["kind"] in ("paint_add", "paint_remove"):
        mask = np.asarray(op["mask"], bool)
        if mask.shape != shape or not mask.any():
            raise InputError("Nothing was painted on the grain map.")
        if op["kind"] == "paint_remove":
            return grains.edit_remove_boundary(labels, mask)
        out = grains.edit_add_boundary(labels, mask)
        if int(out.max()) <= int(labels.max()):  # a stroke that stops just short of a boundary
            from scipy import ndimage as ndi

            out = grains.edit_add_boundary(labels, ndi.binary_dilation(mask, iterations=2))
        if int(out.max()) <= int(labels.max()):
            raise InputError(
                "The painted line does not cut a grain in two; paint from one boundary to another."
            )
        return out
    if op["kind"] == "remove_ids":
        return grains.edit_remove_boundary(labels, shared_boundary(labels, op["a"], op["b"]))
    if op["kind"] == "remove_at":
        y, x = int(op["y"]), int(op["x"])
        if not (0 <= y < shape[0] and 0 <= x < shape[1]):
            raise InputError("The point lies outside the image.")
        mask = np.zeros(shape, bool)
        rr, cc = draw.disk((y, x), 3, shape=shape)
        mask[rr, cc] = True
        return grains.edit_remove_boundary(labels, mask)
    raise InputError(f"Unknown correction '{op['kind']}'.")


def describe_edit(op: dict) -> str:
    """Human-readable description of a correction."""
    if op["kind"] == "add":
        return f"boundary added from ({op['x0']}, {op['y0']}) to ({op['x1']}, {op['y1']})"
    if op["kind"] == "remove_ids":
        return f"boundary between grains {op['a']} and {op['b']} removed"
    if op["kind"] == "paint_add":
        return f"boundary painted ({op['n_px']} px stroke)"
    if op["kind"] == "paint_remove":
        return f"boundary erased under a painted stroke ({op['n_px']} px)"
    return f"boundary at ({op['x']}, {op['y']}) removed"


def paint_background(base: np.ndarray, labels: np.ndarray, region: tuple[int, int, int, int],
                     size: tuple[int, int], proba: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """The painting canvas's background: the image region with the grain boundaries in
    yellow, scaled to ``size`` (width, height); lines stay visible when it is shrunk.
    With ``proba`` the boundary probability tints the image magenta (faint boundaries
    the map did not use show where to paint)."""
    from PIL import Image
    from scipy import ndimage as ndi

    y0, y1, x0, x1 = region
    rgb = base[y0:y1, x0:x1].copy()
    if proba is not None:
        a = 0.75 * np.clip(proba[y0:y1, x0:x1], 0.0, 1.0)[..., None]
        rgb = (rgb * (1 - a) + np.array([255, 0, 255]) * a).astype(np.uint8)
    lines = labels[y0:y1, x0:x1] == 0
    shrink = (x1 - x0) / max(size[0], 1)
    if shrink > 1.2:  # a one-pixel line would vanish when shrunk
        lines = ndi.binary_dilation(lines, iterations=int(np.ceil(shrink / 2)))
    rgb[lines] = (255, 220, 0)
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST))


def _cached_background(base: np.ndarray, labels: np.ndarray, region: tuple[int, int, int, int],
                       size: tuple[int, int], proba: np.ndarray | None) -> np.ndarray:  # fmt: skip
    """:func:`paint_background`, kept while the map, the image rendering (a sparse
    sample of it), region and layers stay the same: about 0.1 s for a 900 x 1320
    micrograph, on every rerun otherwise."""
    g = ui()
    key = (hash(base[::31, ::31].tobytes()), region, size, None if proba is None else id(proba))
    held = g.get("paint_bg")
    if held is None or held[0] != key or held[1] is not labels:
        g["paint_bg"] = held = (key, labels, paint_background(base, labels, region, size, proba))
    return held[2]


def _paint_tool(labels: np.ndarray, base: np.ndarray, proba: np.ndarray | None) -> dict | None:
    """Paint on the grain map; returns the correction for a new stroke, else None."""
    from webui import state

    g = ui()
    # the canvas only while painting: a canvas mounts with an extra rerun of the page
    if not st.toggle("Paint on the map", key="grains_paint_on"):
        return None
    mode = st.segmented_control("Paint", list(PAINT_MODES), format_func=PAINT_MODES.get,
                                default="add", key="grains_paint_mode") or "add"  # fmt: skip
    show_p = proba is not None and st.toggle(
        "Show the boundary probability (magenta)", key="grains_paint_proba",
        help="Faint magenta ridges without a yellow line are boundaries the model saw but "
             "the grain map did not use: the places to paint.")  # fmt: skip
    mask = stroke_canvas(
        labels.shape,
        lambda region, size: _cached_background(
            base, labels, region, size, proba if show_p else None
        ),  # fmt: skip
        PAINT_KEY,
        f"{state.get('image_id')}_{g.get('version')}_{mode}",
        PAINT_COLOURS[mode],
        PAINT_WIDTH[mode],
    )
    st.caption("Yellow: the grain boundaries. " + (
        "Paint a line across a grain, from one boundary to another, to split it."
        if mode == "add" else
        "Paint over a boundary to merge the grains on both sides of it."))  # fmt: skip
    if mask is None:
        return None
    return {"kind": f"paint_{mode}", "mask": mask, "n_px": int(mask.sum())}


def corrections_panel(labels: np.ndarray, ps: float | None, base: np.ndarray,
                      proba: np.ndarray | None = None) -> None:  # fmt: skip
    """The "Correct the grain map" expander: paint or erase boundaries on the map (over
    the model's boundary probability ``proba`` when given), add and remove them by
    coordinates or grain ids, undo, discard."""
    g = ui()
    h, w = labels.shape
    # keyed: an opened panel stays open through corrections, undo and changes above it
    with st.expander("Correct the grain map", expanded=bool(g.get("edits")),
                     key="grains_corrections_panel"):  # fmt: skip
        st.caption("Paint a missing boundary or erase a false one on the map; grains, table "
                   "and G update. Undo takes back the last correction.")  # fmt: skip
        painted = _paint_tool(labels, base, proba)
        st.caption("Or by coordinates: add a boundary along a line (from boundary to "
                   "boundary), or remove one between two grains or at a point.")  # fmt: skip
        c = st.columns(5)
        x0 = c[0].number_input("x₁", 0, w - 1, 0, key="grains_add_x0")
        y0 = c[1].number_input("y₁", 0, h - 1, 0, key="grains_add_y0")
        x1 = c[2].number_input("x₂", 0, w - 1, 0, key="grains_add_x1")
        y1 = c[3].number_input("y₂", 0, h - 1, 0, key="grains_add_y1")
        add = c[4].button("Add boundary", key="grains_add")
        c = st.columns(5)
        a = c[0].number_input("grain a", 0, max(1, int(labels.max())), 0, key="grains_rm_a")
        b = c[1].number_input("grain b", 0, max(1, int(labels.max())), 0, key="grains_rm_b")
        rm_ids = c[2].button("Remove boundary between a and b", key="grains_rm_ids")
        pair = selected_ids()
        rm_sel = False
        if len(pair) == 2:
            rm_sel = c[3].button(f"Merge the selected grains {pair[0]} and {pair[1]}",
                                 key="grains_rm_sel")  # fmt: skip
        else:
            c[3].caption("Or select two grains (shift-click their markers) to merge them.")
        c = st.columns(5)
        px = c[0].number_input("x", 0, w - 1, 0, key="grains_rm_x")
        py = c[1].number_input("y", 0, h - 1, 0, key="grains_rm_y")
        rm_at = c[2].button("Remove boundary at the point", key="grains_rm_at")
        c = st.columns(5)
        undo = c[0].button("Undo correction", key="grains_undo", disabled=not g.get("history"))
        reset = c[1].button("Discard all corrections", key="grains_reset",
                            disabled=not g.get("edits"))  # fmt: skip
        op = painted
        if add:
            op = {"kind": "add", "x0": int(x0), "y0": int(y0), "x1": int(x1), "y1": int(y1)}
        elif rm_ids:
            op = {"kind": "remove_ids", "a": int(a), "b": int(b)}
        elif rm_sel:
            op = {"kind": "remove_ids", "a": int(pair[0]), "b": int(pair[1])}
        elif rm_at:
            op = {"kind": "remove_at", "x": int(px), "y": int(py)}
        if op is not None or undo or reset:
            clear_report(PAINT_KEY)
        if op is not None:
            try:
                new = apply_edit(g["labels"], op)
            except Exception as exc:  # noqa: BLE001
                if op is painted:  # shown above the fresh canvas
                    report(PAINT_KEY, "error", one_sentence(exc, "The correction"))
                    st.rerun()
                st.error(one_sentence(exc, "The correction"))
            else:
                g["history"].append(g["labels"])
                del g["history"][:-10]
                g["labels"] = new
                g["edits"].append(op)
                g["selected"] = []
                st.rerun()
        if undo and g.get("history"):
            g["labels"] = g["history"].pop()
            if g.get("edits"):
                g["edits"].pop()
            st.rerun()
        if reset:
            g["labels"] = g["base_labels"]
            g["edits"], g["history"] = [], []
            st.rerun()
        for i, e in enumerate(g.get("edits", []), start=1):
            st.caption(f"{i}. {describe_edit(e)}")
