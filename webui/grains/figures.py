"""Figures of the grain pages: the grain map with its Heyn test lines and one clickable
marker per grain, size histograms, and cumulative and compared size distributions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from webui.pngdata import png_data_uri
from webui.render import instance_overlay

SELECT_COLOUR = np.array([255, 230, 0], np.float32)
N_TEST_LINES = 10
MAX_DISPLAY_SIDE = 2048


def test_lines(shape: tuple[int, int], n: int = N_TEST_LINES) -> list[tuple[str, float]]:
    """Heyn test lines as counted by :func:`microseg.astm.heyn_intercept`: ``n``
    horizontal (``("h", y)``) and ``n`` vertical (``("v", x)``) lines."""
    h, w = shape
    ys = ((np.arange(n) + 0.5) * h / n).astype(int)
    xs = ((np.arange(n) + 0.5) * w / n).astype(int)
    return [("h", float(y)) for y in ys] + [("v", float(x)) for x in xs]


def overlay_rgb(
    base: np.ndarray,
    labels: np.ndarray,
    selected: np.ndarray | list[int] | None = None,
    largest: np.ndarray | list[int] | None = None,
    excluded: np.ndarray | list[int] | None = None,
) -> np.ndarray:
    """Grain map over the image: a distinct colour per grain, the largest grains white,
    selected grains filled yellow, excluded edge grains dimmed."""
    out = instance_overlay(base, labels, fill_opacity=0.35, highlight=largest).astype(np.float32)
    if excluded is not None and len(excluded):
        m = np.isin(labels, np.asarray(excluded)) & (labels > 0)
        out[m] *= 0.55
    if selected is not None and len(selected):
        m = np.isin(labels, np.asarray(selected)) & (labels > 0)
        out[m] = 0.35 * out[m] + 0.65 * SELECT_COLOUR
    return np.clip(out, 0, 255).astype(np.uint8)


def marker_size(shape: tuple[int, int], n_grains: int, display_width: float) -> float:
    """Diameter (screen px, 3-7) of the grain markers: about a quarter of the typical grain
    spacing on screen, so that a thousand grains do not hide the map under their markers."""
    h, w = shape
    spacing = float(np.sqrt(h * w / max(n_grains, 1))) * display_width / max(w, 1)
    return float(np.clip(spacing / 4.0, 3.0, 7.0))


def display_image(rgb: np.ndarray, max_side: int = MAX_DISPLAY_SIDE) -> tuple[np.ndarray, int]:
    """``rgb`` reduced by a whole factor (block mean) until its longer side is at most
    ``max_side``, and the factor: a screen shows no more, and a smaller picture is sent
    and drawn faster on every rerun."""
    from PIL import Image

    f = int(np.ceil(max(rgb.shape[:2]) / max_side))
    if f <= 1:
        return rgb, 1
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).reduce(f)), f


def map_figure(rgb: np.ndarray, table: pd.DataFrame | None, lines: bool = True,
               height: int | None = None, display_width: float = 560) -> go.Figure:  # fmt: skip
    """The grain map as a plotly image with test lines and one clickable marker per grain,
    for a chart about ``display_width`` screen pixels wide (the height follows the image's
    aspect unless given). Axes are in image pixels; images over 2048 px are shown reduced."""
    h, w = rgb.shape[:2]
    if height is None:
        height = int(np.clip(display_width * h / max(w, 1) + 80, 300, 820))
    shown, f = display_image(rgb)
    fig = go.Figure()
    # pixel i of the reduced picture covers image pixels i*f .. i*f+f-1
    fig.add_trace(go.Image(source=png_data_uri(shown, compress_level=1), x0=(f - 1) / 2,
                           y0=(f - 1) / 2, dx=f, dy=f, hoverinfo="skip", name="grain map"))  # fmt: skip
    if table is not None and len(table) and {"y", "x", "label"} <= set(table.columns):
        size = marker_size((h, w), len(table), display_width)
        fig.add_trace(
            go.Scatter(
                x=table["x"], y=table["y"], mode="markers", name="grains (click to select)",
                customdata=table["label"].to_numpy(),
                marker={"size": size, "color": "rgba(255,255,255,0.55)",
                        "line": {"width": 1 if size > 4 else 0.5, "color": "black"}},
                hovertemplate="grain %{customdata}<extra></extra>",
            )
        )  # fmt: skip
    if lines:
        for kind, pos in test_lines((h, w)):
            if kind == "h":
                fig.add_shape(type="line", x0=0, x1=w, y0=pos, y1=pos,
                              line={"color": "cyan", "width": 1, "dash": "dot"})  # fmt: skip
            else:
                fig.add_shape(type="line", x0=pos, x1=pos, y0=0, y1=h,
                              line={"color": "cyan", "width": 1, "dash": "dot"})  # fmt: skip
    fig.update_xaxes(range=[0, w], showgrid=False, title="x (px)", constrain="domain")
    fig.update_yaxes(range=[h, 0], showgrid=False, title="y (px)", scaleanchor="x")
    fig.update_layout(height=height, margin={"l": 45, "r": 5, "t": 40, "b": 40},
                      showlegend=False)  # fmt: skip
    return fig


def histogram_bins(values: np.ndarray, log: bool, n_max: int = 40) -> np.ndarray:
    """Bin edges (in log10 units when ``log``)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
    if v.size == 0:
        return np.array([0.0, 1.0])
    if log:
        v = np.log10(v)
    edges = np.histogram_bin_edges(v, bins="auto")
    if edges.size - 1 > n_max:
        edges = np.linspace(v.min(), v.max(), n_max + 1)
    if edges.size < 2 or edges[-1] <= edges[0]:
        edges = np.array([v.min() - 0.5, v.max() + 0.5])
    return edges


def grains_in_bins(values: np.ndarray, edges: np.ndarray, bins: list[int], log: bool) -> np.ndarray:
    """Boolean mask of the values that fall in the given bins (last bin closed)."""
    v = np.asarray(values, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log10(v) if log else v
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    ok = np.isfinite(x) & (x >= edges[0]) & (x <= edges[-1])
    return ok & np.isin(idx, np.asarray(bins, dtype=np.int64))


def log_ticks(edges: np.ndarray) -> tuple[list[float], list[str]]:
    """Tick positions (log10 units) and labels at 1, 2 and 5 times the powers of ten."""
    lo, hi = int(np.floor(edges[0])), int(np.ceil(edges[-1]))
    vals, text = [], []
    for e in range(lo, hi + 1):
        for m in (1, 2, 5):
            x = e + np.log10(m)
            if edges[0] - 0.05 <= x <= edges[-1] + 0.05:
                vals.append(float(x))
                text.append(f"{m * 10.0**e:g}")
    return vals, text


def histogram_figure(values: np.ndarray, edges: np.ndarray, log: bool, xtitle: str,
                     name: str = "grains", height: int = 330) -> go.Figure:  # fmt: skip
    """A grain-size histogram as bars (bar i = bin i) with axis titles and a legend."""
    v = np.asarray(values, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log10(v) if log else v
    x = x[np.isfinite(x)]
    counts, _ = np.histogram(x, bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    widths = np.diff(edges)
    lo = 10 ** edges[:-1] if log else edges[:-1]
    hi = 10 ** edges[1:] if log else edges[1:]
    fig = go.Figure(
        go.Bar(
            x=centres, y=counts, width=widths * 0.98, name=name,
            customdata=np.stack([lo, hi], axis=1),
            hovertemplate="%{customdata[0]:.3g} – %{customdata[1]:.3g}: %{y} grains<extra></extra>",
            marker={"color": "#1f77b4"},
        )
    )  # fmt: skip
    fig.update_layout(height=height, margin={"l": 50, "r": 10, "t": 30, "b": 50},
                      showlegend=True, legend={"orientation": "h", "y": 1.12},
                      bargap=0)  # fmt: skip
    fig.update_yaxes(title="number of grains")
    fig.update_xaxes(title=xtitle)
    if log:
        vals, text = log_ticks(edges)
        fig.update_xaxes(tickvals=vals, ticktext=text)
    return fig


def cumulative_figure(values: np.ndarray, xtitle: str, log: bool = True,
                      height: int = 330) -> go.Figure:  # fmt: skip
    """Cumulative grain-size distribution, by number and by area."""
    v = np.sort(np.asarray(values, float))
    v = v[np.isfinite(v) & (v > 0)]
    fig = go.Figure()
    if v.size:
        by_n = np.arange(1, v.size + 1) / v.size
        by_a = np.cumsum(v) / v.sum()
        fig.add_trace(go.Scatter(x=v, y=100 * by_n, mode="lines", name="by number",
                                 line={"shape": "hv"}))  # fmt: skip
        fig.add_trace(go.Scatter(x=v, y=100 * by_a, mode="lines", name="by area",
                                 line={"shape": "hv", "dash": "dash"}))  # fmt: skip
    fig.update_layout(height=height, margin={"l": 50, "r": 10, "t": 30, "b": 50},
                      legend={"orientation": "h", "y": 1.12})  # fmt: skip
    fig.update_xaxes(title=xtitle, type="log" if log else "linear", dtick=1 if log else None)
    fig.update_yaxes(title="cumulative fraction (%)", range=[0, 101])
    return fig


def compare_distribution_figure(
    series: dict[str, np.ndarray], xtitle: str, height: int = 360
) -> go.Figure:
    """Overlaid log-area histograms (probability density) of several grain maps."""
    allv = np.concatenate([np.asarray(v, float) for v in series.values()] or [np.ones(1)])
    edges = histogram_bins(allv, log=True, n_max=30)
    centres = (edges[:-1] + edges[1:]) / 2
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#7f7f7f"]
    fig = go.Figure()
    for i, (name, v) in enumerate(series.items()):
        v = np.asarray(v, float)
        v = v[np.isfinite(v) & (v > 0)]
        counts, _ = (
            np.histogram(np.log10(v), bins=edges) if v.size else (np.zeros(len(centres)), None)
        )
        frac = 100 * counts / max(1, v.size)
        if name == "ground truth":
            fig.add_trace(go.Scatter(x=centres, y=frac, name=f"{name} ({v.size})",
                                     mode="lines+markers", line={"color": "black", "shape": "hvh"}))  # fmt: skip
        else:
            fig.add_trace(go.Bar(x=centres, y=frac, name=f"{name} ({v.size} grains)",
                                 width=np.diff(edges), opacity=0.55,
                                 marker={"color": colours[i % len(colours)]}))  # fmt: skip
    vals, text = log_ticks(edges)
    fig.update_layout(barmode="overlay", height=height, bargap=0,
                      margin={"l": 50, "r": 10, "t": 30, "b": 50},
                      legend={"orientation": "h", "y": 1.15})  # fmt: skip
    fig.update_xaxes(title=xtitle, tickvals=vals, ticktext=text)
    fig.update_yaxes(title="share of grains (%)")
    return fig
