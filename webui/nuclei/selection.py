"""Selected nuclei, linked over the histogram (and its range slider), the scatter plot,
the table and the image: widget keys of the selectable charts and the (frame, label)
keys they select."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from webui.nuclei.session import NucleiResult, ui


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
