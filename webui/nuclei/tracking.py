"""Tracking the segmented nuclei over frames: the Track button, lineage, per-track
measurements and a track's plots."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from webui.nuclei.plots import column_title
from webui.nuclei.session import NucleiResult, run_safely, say


def track(res: NucleiResult, max_distance_px: float | None, divisions: bool) -> None:
    """Link the nuclei of all segmented frames."""
    from microseg.tracking import per_track_measurements, track_objects

    res.tracks = track_objects(
        res.table, max_distance_px=max_distance_px or None, divisions=divisions
    )
    res.track_table = per_track_measurements(res.table, res.tracks)
    n_div = len(res.tracks.divisions)
    say(
        "success",
        f"{res.tracks.n_tracks} tracks over {len(res.labels)} frames, {n_div} division(s).",
    )


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
