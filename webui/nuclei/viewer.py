"""The image viewer of the Nuclei page: the frame with one outline colour per nucleus,
clickable nucleus centres, track lines, and the selected nuclei's rows beside it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from microseg.image import MicroImage
from webui.nuclei.plots import display_table
from webui.nuclei.selection import chart_key, clear_selection
from webui.nuclei.session import NucleiResult, ui
from webui.pngdata import png_data_uri

_TRACK_COLOUR = "#ffd400"


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
    fig = go.Figure(
        go.Image(
            source=png_data_uri(rgb, compress_level=1), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"
        )
    )
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
