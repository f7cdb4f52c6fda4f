"""The nucleus table and its linked plots: the table, histogram and scatter plot of any
column, and counts, areas and intensities over time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from webui.nuclei.selection import chart_key, plotted_rows, range_key
from webui.nuclei.session import NucleiResult


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

    from microseg.nuclei import frame_table

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
