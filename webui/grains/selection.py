"""Selected grains, one selection shared by the grain map, the histograms, the grain
table and the grain-id box."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from webui.grains.shared import ui


def selection_points(event: Any) -> list[dict]:
    """The points of a plotly selection event (none when there is no selection)."""
    try:
        sel = (
            event["selection"] if isinstance(event, dict) or hasattr(event, "__getitem__") else None
        )
        return list(sel["points"]) if sel else []
    except (KeyError, TypeError, AttributeError):
        return []


def update_selection(source: str, ids: list[int]) -> None:
    """Make ``ids`` the selected grains when ``source``'s selection changed to something new."""
    seen = ui().setdefault("seen", {})
    sig = tuple(sorted(int(i) for i in ids))
    if seen.get(source) == sig:
        return
    seen[source] = sig
    if sig:
        ui()["selected"] = list(sig)
        ui()["selected_from"] = source


def selected_ids() -> list[int]:
    """Grain ids currently selected."""
    return list(ui().get("selected", []))


def selection_panel(table: pd.DataFrame) -> None:
    """Grain-id box, Clear selection, the selected rows and the selectable grain table."""
    g = ui()
    c1, c2, c3 = st.columns([1, 1, 2])
    gid = c1.number_input("Grain id", min_value=0, value=0, step=1, key="grains_pick_id",
                          help="Type a grain id to see its row and highlight it.")  # fmt: skip
    update_selection("id", [int(gid)] if gid else [])
    if c2.button("Clear selection", key="grains_clear_sel"):
        g["selected"] = []
        st.rerun()
    selected = selected_ids()
    if selected:
        c3.success(f"{len(selected)} grain(s) selected (highlighted in yellow).")
        rows = table[table["label"].isin(selected)]
        with st.container(key="grains_sel_rows"):
            st.dataframe(rows.round(3), hide_index=True, key="grains_sel_table")
    with st.expander(f"Grain table ({len(table)} grains)", key="grains_table_panel"):
        ev = st.dataframe(table.round(3), hide_index=True, on_select="rerun",
                          selection_mode="multi-row", key="grains_table")  # fmt: skip
        st.caption("Select rows to highlight their grains. Lengths in px and µm, areas in px² "
                   "and µm², orientation in degrees from the x axis (counter-clockwise).")  # fmt: skip
        try:
            rows = list(ev["selection"]["rows"])
        except (KeyError, TypeError):
            rows = []
        update_selection("table", [int(table.iloc[r]["label"]) for r in rows if r < len(table)])
