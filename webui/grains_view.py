"""The Grains and the ML-vs-DL pages: grain maps, measurements, linked plots, corrections,
exports, and the side-by-side comparison of a random forest and a U-Net.

Session state used: ``grains_ui`` (settings, edits, selections of both pages),
``grain_result`` (the current grain map with its table and summary) and
``compare_result`` (the models, maps and scores of the last comparison).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from microseg.errors import InputError, MicrosegError
from microseg.image import MicroImage
from webui import state
from webui.render import display_plane, instance_overlay

TRUTH = "truth"
COMPARE = "compare:"
EDGE_MODES = {
    "exclude": "Exclude them from sizes and histograms",
    "keep": "Keep them in sizes and histograms",
}
METHODS = {"robust": "Watershed from robust seeds", "threshold": "Threshold, close, thin"}
GRAIN_CLASSES = ["grain interior", "grain boundary"]
COMPARE_LABELS = {
    "classical": "Classical ML (random forest)",
    "deep": "Deep learning (U-Net)",
    "scratch": "U-Net from scratch",
}
SELECT_COLOUR = np.array([255, 230, 0], np.float32)


# ----------------------------------------------------------------------------- small helpers


def ui() -> dict:
    """The mutable UI state dict shared by the Grains and ML-vs-DL pages."""
    return state.get("grains_ui")


def one_sentence(exc: BaseException, doing: str) -> str:
    """A one-sentence message for an error raised while ``doing`` something."""
    if isinstance(exc, MicrosegError):
        msg = str(exc).strip() or f"{doing} failed."
    else:
        msg = f"{doing} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no details'})."
    return msg if msg.endswith((".", "!", "?")) else msg + "."


def unit_labels(pixel_size: float | None) -> tuple[str, str]:
    """(length unit, area unit) for display."""
    return ("µm", "µm²") if pixel_size else ("px", "px²")


def frame_picker(image: MicroImage, key: str) -> tuple[int, int]:
    """Frame and slice sliders for stacks; returns (t, z)."""
    t = z = 0
    if image.n_frames > 1:
        t = st.slider("Frame", 0, image.n_frames - 1, 0, key=f"{key}_t")
    if image.n_slices > 1:
        z = st.slider("Slice (z)", 0, image.n_slices - 1, 0, key=f"{key}_z")
    return t, z


def base_rgb(image: MicroImage, t: int, z: int) -> np.ndarray:
    """8-bit RGB rendering of a plane."""
    base = display_plane(image, t=t, z=z)
    return base if base.ndim == 3 else np.repeat(base[..., None], 3, axis=2)


# ----------------------------------------------------------------------------- ground truth


def truth_boundaries(shape: tuple[int, int]) -> np.ndarray | None:
    """Ground-truth boundary mask of the current image (None when there is none)."""
    gt = state.get("ground_truth") or {}
    b = gt.get("boundaries")
    if b is not None and np.ndim(b) == 2 and tuple(np.shape(b)) == tuple(shape):
        return np.asarray(b) != 0
    lab = gt.get("labels")
    if lab is not None and np.ndim(lab) == 2 and tuple(np.shape(lab)) == tuple(shape):
        from skimage.segmentation import find_boundaries

        lab = np.asarray(lab)
        return (lab == 0) | find_boundaries(lab, mode="inner")
    return None


def truth_grain_map(shape: tuple[int, int]) -> np.ndarray | None:
    """Grain map of the ground truth (one-pixel boundaries), cached per image."""
    cache = ui().setdefault("truth_map", {})
    key = state.get("image_id")
    if key not in cache:
        b = truth_boundaries(shape)
        if b is None:
            return None
        from microseg.grains import grain_map_from_boundaries

        cache.clear()
        cache[key] = grain_map_from_boundaries(b, thin=True)
    return cache[key]


def strokes_from_truth(
    boundaries: np.ndarray,
    labels: np.ndarray | None = None,
    seed: int = 0,
    n_interior: int = 40,
    n_boundary: int = 60,
) -> np.ndarray:
    """Short strokes (1 grain interior, 2 grain boundary) on about 2 % of the pixels,
    drawn from a ground-truth boundary mask as a user would paint them.

    Interior strokes are short lines through the middle of ``n_interior`` random
    grains; boundary strokes cover the traced boundary around ``n_boundary`` random
    boundary points.
    """
    from scipy import ndimage as ndi
    from skimage import draw, measure, morphology

    bnd = np.asarray(boundaries) != 0
    rng = np.random.default_rng(seed)
    h, w = bnd.shape
    if labels is None:
        labels = measure.label(~bnd, connectivity=1)
    labels = np.asarray(labels)
    inside = (labels > 0) & ~bnd
    dist = ndi.distance_transform_edt(inside)
    out = np.zeros(bnd.shape, np.uint8)
    ids = np.unique(labels[inside])
    if ids.size:
        peaks = np.asarray(ndi.maximum_position(dist, labels, ids), dtype=np.int64).reshape(-1, 2)
        depth = dist[peaks[:, 0], peaks[:, 1]]
        ok = np.flatnonzero(depth >= 4)
        pick = rng.permutation(ok)[:n_interior]
        lines = np.zeros(bnd.shape, bool)
        for i in pick:
            cy, cx = peaks[i]
            half = int(min(depth[i] - 2, 10))
            ang = rng.uniform(0, np.pi)
            dy, dx = round(half * np.sin(ang)), round(half * np.cos(ang))
            rr, cc = draw.line(int(cy - dy), int(cx - dx), int(cy + dy), int(cx + dx))
            keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            lines[rr[keep], cc[keep]] = True
        lines = ndi.binary_dilation(lines) & (dist >= 2)
        out[lines] = 1
    thin = morphology.skeletonize(bnd) if bnd.any() else bnd
    pts = np.flatnonzero(thin)
    if pts.size:
        chosen = rng.choice(pts, size=min(n_boundary, pts.size), replace=False)
        seeds = np.zeros(bnd.size, bool)
        seeds[chosen] = True
        zone = ndi.binary_dilation(seeds.reshape(bnd.shape), morphology.disk(6))
        out[zone & ndi.binary_dilation(thin) & bnd] = 2
    return out


# ----------------------------------------------------------------------------- models


def boundary_index(classes: list[str]) -> int:
    """Index of the grain-boundary class among a model's classes."""
    from microseg.commands.grains import boundary_class_index

    return boundary_class_index(classes)


def grain_model_choices(shape: tuple[int, int]) -> dict[str, str]:
    """Label → model id for the Grains page (session, built-in, comparison, ground truth)."""
    from webui.models import model_choices

    choices = dict(model_choices("grains"))
    cmp = state.get("compare_result")
    if cmp and cmp.get("image_id") == state.get("image_id"):
        for key in cmp.get("models", {}):
            choices[f"From the ML vs DL page: {COMPARE_LABELS[key]}"] = COMPARE + key
    if truth_boundaries(shape) is not None:
        choices["Ground-truth boundaries of the sample"] = TRUTH
    return choices


def _prediction_key(model_id: str, t: int, z: int, model: Any = None) -> tuple:
    """Key of a model's probabilities in ``predictions`` (the Annotate page's convention
    for session models; comparison models are told apart by identity)."""
    key: tuple = (model_id, state.get("image_id"), t)
    if z:
        key += (z,)
    if model_id.startswith(COMPARE):
        key += (id(model),)
    return key


def boundary_probability(model_id: str, image: MicroImage, t: int, z: int) -> np.ndarray:
    """Grain-boundary probability ``(Y, X)`` float32 of a plane (cached per model and plane)."""
    if model_id == TRUTH:
        cached = ui().get("truth_prob")
        if cached is None or cached[0] != state.get("image_id"):
            b = truth_boundaries(image.shape_yx)
            if b is None:
                raise InputError("This image has no ground-truth boundaries.")
            cached = (state.get("image_id"), b.astype(np.float32))
            ui()["truth_prob"] = cached
        return cached[1]
    if model_id.startswith(COMPARE):
        cmp = state.get("compare_result") or {}
        key = model_id[len(COMPARE) :]
        if (cmp.get("t"), cmp.get("z")) == (t, z) and key in cmp.get("boundary", {}):
            return cmp["boundary"][key]
        model = cmp["models"][key]
    else:
        from webui.models import get_model

        model = get_model(model_id)
    idx = boundary_index(list(model.classes))
    preds = state.get("predictions")
    pkey = _prediction_key(model_id, t, z, model)
    proba = preds.get(pkey)
    if proba is None or proba.shape[-2:] != image.shape_yx:
        with st.spinner("Predicting grain boundaries ..."):
            proba = np.asarray(model.predict_proba(image.frame(t, z)), np.float32)
        preds[pkey] = proba
    return proba[idx]


def class_fractions(model_id: str, image: MicroImage, t: int, z: int) -> pd.DataFrame | None:
    """Area fraction of each class when the model has more than two classes."""
    if model_id == TRUTH or model_id.startswith(COMPARE):
        return None
    from webui.models import get_model

    model = get_model(model_id)
    if len(model.classes) <= 2:
        return None
    proba = state.get("predictions").get(_prediction_key(model_id, t, z))
    if proba is None:
        return None
    cls = np.argmax(proba, axis=0)
    frac = np.bincount(cls.ravel(), minlength=len(model.classes)) / cls.size
    return pd.DataFrame({"class": list(model.classes), "area fraction (%)": 100 * frac})


# ----------------------------------------------------------------------------- measurements


def make_grain_map(boundary: np.ndarray, settings: dict, from_truth: bool = False) -> np.ndarray:
    """Grain map of a boundary probability with the page's settings."""
    from microseg import grains

    min_px = settings.get("min_area_px")
    if from_truth:
        return grains.grain_map_from_boundaries(boundary > 0.5, thin=True,
                                                min_grain_area_px=int(min_px or 0))  # fmt: skip
    return grains.grain_map(
        boundary,
        threshold=float(settings.get("threshold", 0.5)),
        min_grain_area_px=int(min_px) if min_px else None,
        close_gaps_px=int(settings.get("gaps", 2)),
        seeds=settings.get("method", "robust"),
    )


def measure_grains(
    labels: np.ndarray, pixel_size: float | None, edge: str = "exclude"
) -> tuple[pd.DataFrame, dict]:
    """Per-grain table and ASTM summary of a grain map."""
    from microseg.astm import grain_summary
    from microseg.measure import grain_table

    table = grain_table(labels, pixel_size_um=pixel_size)
    summary = grain_summary(labels, pixel_size_um=pixel_size, exclude_edge=edge == "exclude")
    return table, dict(summary)


def sized_grains(table: pd.DataFrame, edge: str) -> pd.DataFrame:
    """The rows that enter the size statistics: interior grains when edge grains are
    excluded (and there are interior grains), else all."""
    if edge == "exclude" and "touches_border" in table.columns:
        inner = table[~table["touches_border"].astype(bool)]
        if len(inner):
            return inner
    return table


def summary_value(summary: dict, key: str) -> float | None:
    """A finite float from the summary, else None."""
    v = summary.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def fmt_ci(summary: dict, key: str) -> str:
    """'G ± half-width (95 % CI lo–hi)' or an explanation when G is undefined."""
    g = summary_value(summary, key)
    if g is None:
        return "—"
    ci = summary.get(f"{key}_ci")
    if ci is not None and len(ci) == 2 and ci[0] is not None and ci[1] is not None:
        return f"{g:.2f} (95 % CI {float(ci[0]):.2f} – {float(ci[1]):.2f})"
    return f"{g:.2f}"


def area_column(table: pd.DataFrame, pixel_size: float | None) -> str:
    """Name of the area column in the display unit."""
    if pixel_size and "area_um2" in table.columns:
        return "area_um2"
    return "area_px" if "area_px" in table.columns else "area"


def ecd_column(table: pd.DataFrame, pixel_size: float | None) -> str:
    """Name of the equivalent-circle-diameter column in the display unit."""
    if pixel_size and "ecd_um" in table.columns:
        return "ecd_um"
    return "ecd_px" if "ecd_px" in table.columns else "ecd"


# ----------------------------------------------------------------------------- figures


def _png_uri(rgb: np.ndarray) -> str:
    import base64

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


N_TEST_LINES = 10


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


def map_figure(rgb: np.ndarray, table: pd.DataFrame | None, lines: bool = True,
               height: int = 600) -> go.Figure:  # fmt: skip
    """The grain map as a plotly image with test lines and one clickable marker per grain."""
    h, w = rgb.shape[:2]
    fig = go.Figure()
    fig.add_trace(go.Image(source=_png_uri(rgb), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip",
                           name="grain map"))  # fmt: skip
    if table is not None and len(table) and {"y", "x", "label"} <= set(table.columns):
        fig.add_trace(
            go.Scatter(
                x=table["x"], y=table["y"], mode="markers", name="grains (click to select)",
                customdata=table["label"].to_numpy(),
                marker={"size": 7, "color": "rgba(255,255,255,0.55)",
                        "line": {"width": 1, "color": "black"}},
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


def _log_ticks(edges: np.ndarray) -> tuple[list[float], list[str]]:
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
        vals, text = _log_ticks(edges)
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
    vals, text = _log_ticks(edges)
    fig.update_layout(barmode="overlay", height=height, bargap=0,
                      margin={"l": 50, "r": 10, "t": 30, "b": 50},
                      legend={"orientation": "h", "y": 1.15})  # fmt: skip
    fig.update_xaxes(title=xtitle, tickvals=vals, ticktext=text)
    fig.update_yaxes(title="share of grains (%)")
    return fig


# ----------------------------------------------------------------------------- selection


def _selection_points(event: Any) -> list[dict]:
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


# ----------------------------------------------------------------------------- edits


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
    return f"boundary at ({op['x']}, {op['y']}) removed"


# ----------------------------------------------------------------------------- exports


def provenance_record(result: dict) -> dict:
    """Provenance of the current grain result (version, model, hash, parameters)."""
    from microseg.exports import provenance

    model_id = result["model_id"]
    path = None
    if model_id.startswith("builtin:"):
        try:
            from microseg.zoo import builtin_path

            path = builtin_path(model_id.split(":", 1)[1])
        except MicrosegError:
            path = None
    params = {k: v for k, v in result["settings"].items()}
    params.update(pixel_size_um=result["pixel_size"], frame=result["t"], slice=result["z"],
                  corrections=[describe_edit(op) for op in result.get("edits", [])])  # fmt: skip
    rec = provenance(
        path, params, image=result.get("image_name"), model_label=result["model_label"]
    )
    rec["model"] = model_id if path is None else rec.get("model", model_id)
    model = result.get("model_meta") or {}
    if model.get("provenance"):
        rec["model_training"] = model["provenance"]
    return rec


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return str(obj)


def summary_json(result: dict) -> bytes:
    """Summary JSON (with provenance) of a grain result."""
    rec = dict(_jsonable(result["summary"]))
    rec["provenance"] = _jsonable(provenance_record(result))
    return json.dumps(rec, indent=1).encode()


def grain_map_tiff(result: dict) -> bytes:
    """The grain map as an ImageJ TIFF with pixel size and provenance."""
    import tempfile
    from pathlib import Path

    from microseg.io import write_tiff

    labels = result["labels"]
    arr = labels.astype(np.uint16 if labels.max() <= 65535 else np.uint32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grains.tif"
        write_tiff(path, arr, "YX", pixel_size_um=result["pixel_size"],
                   metadata=_jsonable(provenance_record(result)), compression="zlib")  # fmt: skip
        return path.read_bytes()


_ASCII = str.maketrans({"µ": "u", "²": "^2", "–": "-", "§": "par. "})


def _font(size: int):  # noqa: ANN202
    """A TrueType font with µ and ² when the system has one, else Pillow's default."""
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf"):
        try:
            font = ImageFont.truetype(name, size)
            font.unicode_ok = True
            return font
        except OSError:
            continue
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    font.unicode_ok = False
    return font


def _text(draw, xy: tuple[float, float], text: str, size: int, fill="black") -> None:  # noqa: ANN001
    font = _font(size)
    draw.text(xy, text if font.unicode_ok else text.translate(_ASCII), fill=fill, font=font)


def report_png(result: dict, base: np.ndarray) -> bytes:
    """A PNG report: grain map with test lines, size histogram and the summary."""
    from PIL import Image, ImageDraw

    labels, table, summary = result["labels"], result["table"], result["summary"]
    ps = result["pixel_size"]
    _, au = unit_labels(ps)
    rgb = overlay_rgb(base, labels, largest=None)
    h, w = labels.shape
    side = 620
    scale = side / max(h, w)
    im = Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                     Image.Resampling.NEAREST)  # fmt: skip
    d_im = ImageDraw.Draw(im)
    for kind, pos in test_lines((h, w)):
        if kind == "h":
            d_im.line([(0, pos * scale), (im.width, pos * scale)], fill=(0, 255, 255), width=1)
        else:
            d_im.line([(pos * scale, 0), (pos * scale, im.height)], fill=(0, 255, 255), width=1)
    canvas = Image.new("RGB", (side + 700, max(side, 620) + 90), "white")
    canvas.paste(im, (20, 70))
    draw = ImageDraw.Draw(canvas)
    _text(draw, (20, 15), f"Grain size report: {result.get('image_name') or 'image'}", 24)
    _text(draw, (20, 45), f"model: {result['model_label']}", 15, fill=(60, 60, 60))
    # histogram of log area over the grains that enter the size statistics
    x0, y0, pw, ph = side + 110, 100, 540, 250
    col = area_column(table, ps)
    sized = sized_grains(table, result["settings"].get("edge", "exclude")) if len(table) else table
    area = sized[col].to_numpy(float) if len(sized) else np.zeros(0)
    edges = histogram_bins(area, log=True, n_max=25)
    with np.errstate(divide="ignore"):
        counts, _ = np.histogram(np.log10(area[area > 0]), bins=edges)
    top = max(1, int(counts.max()) if counts.size else 1)
    draw.rectangle([x0, y0, x0 + pw, y0 + ph], outline="black")
    nb = len(counts)
    for i, c in enumerate(counts):
        bx0 = x0 + pw * i / nb
        bx1 = x0 + pw * (i + 1) / nb
        by = y0 + ph - ph * c / top
        draw.rectangle([bx0 + 1, by, bx1 - 1, y0 + ph], fill=(31, 119, 180))
    for val, txt in zip(*_log_ticks(edges), strict=True):
        tx = x0 + pw * (val - edges[0]) / (edges[-1] - edges[0])
        draw.line([(tx, y0 + ph), (tx, y0 + ph + 5)], fill="black")
        _text(draw, (tx - 8, y0 + ph + 8), txt, 13)
    _text(draw, (x0, y0 + ph + 30), f"grain area ({au}, log scale)", 15)
    _text(draw, (x0 - 30, y0 - 6), f"{top}", 13)
    _text(draw, (x0 - 16, y0 + ph - 10), "0", 13)
    what = "grains not cut by the image edge" if len(sized) < len(table) else "all grains"
    _text(draw, (x0, y0 - 30), f"number of grains per size class ({what})", 15)
    ty = y0 + ph + 70
    for line in summary_lines(summary, ps):
        _text(draw, (x0, ty), line, 16)
        ty += 24
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def summary_lines(summary: dict, pixel_size: float | None) -> list[str]:
    """The summary as short lines of text (for the report figure)."""
    lu, au = unit_labels(pixel_size)
    n = summary.get("n_grains")
    inner = summary.get("n_interior_grains")
    out = [f"grains: {n}" + (f" ({inner} not cut by the image edge)" if inner is not None else "")]
    out.append(f"pixel size: {pixel_size:.4g} µm/px" if pixel_size else "pixel size: unknown")
    for key, label, unit in (("mean_area", "mean area", au), ("median_area", "median area", au),
                             ("mean_ecd", "mean ECD", lu),
                             ("mean_intercept", "mean lineal intercept", lu)):  # fmt: skip
        v = summary_value(summary, key)
        if v is not None:
            out.append(f"{label}: {v:.4g} {unit}")
    for key, label in (("astm_g_planimetric", "G planimetric (E112)"),
                       ("astm_g_intercept", "G intercept (E112)"),
                       ("astm_g_mean_area", "G from mean area (E2627)")):  # fmt: skip
        out.append(f"{label}: {fmt_ci(summary, key)}")
    if not pixel_size:
        out.append("G needs the pixel size (µm/px).")
    return out


def export_zip(result: dict, base: np.ndarray, stem: str) -> bytes:
    """All exports in one ZIP: grain map TIFF, table CSV (+ provenance JSON), summary, report."""
    buf = io.BytesIO()
    prov = _jsonable(provenance_record(result))
    table = result["table"]
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{stem}_grains.tif", grain_map_tiff(result))
        zf.writestr(f"{stem}_grains.csv", table.to_csv(index=False))
        side = dict(
            prov, table=f"{stem}_grains.csv", n_rows=len(table), columns=list(table.columns)
        )
        zf.writestr(f"{stem}_grains.json", json.dumps(side, indent=1))
        zf.writestr(f"{stem}_summary.json", summary_json(result))
        zf.writestr(f"{stem}_report.png", report_png(result, base))
    return buf.getvalue()


# ----------------------------------------------------------------------------- Grains page


def pixel_size_controls(image: MicroImage) -> float | None:
    """Pixel size: metadata, typed in, or from a scale bar; returns µm/px or None."""
    st.subheader("Pixel size")
    meta = image.pixel_size_um
    st.caption(f"From the file: {meta:.4g} µm/px" if meta else "No pixel size in the file.")
    pending = ui().pop("pending_px", None)
    if pending is not None:
        state.put("pixel_size_override", pending)
        st.session_state["grains_px_size"] = float(pending)
    elif "grains_px_size" not in st.session_state:
        st.session_state["grains_px_size"] = float(state.get("pixel_size_override") or 0.0)
    value = st.number_input("Pixel size (µm/px), 0 = use the file's", min_value=0.0, step=0.01,
                            format="%.4f", key="grains_px_size")  # fmt: skip
    if (value or None) != state.get("pixel_size_override"):
        state.put("pixel_size_override", value or None)
    with st.expander("From a scale bar"):
        bar_px = st.number_input("Scale bar length (px)", min_value=0.0, value=0.0, step=1.0,
                                 key="grains_bar_px")  # fmt: skip
        bar_um = st.number_input("Scale bar length (µm)", min_value=0.0, value=0.0, step=1.0,
                                 key="grains_bar_um")  # fmt: skip
        if st.button("Use the scale bar", key="grains_bar_use"):
            if bar_px > 0 and bar_um > 0:
                ui()["pending_px"] = bar_um / bar_px
                ui()["bar_message"] = f"Pixel size set to {bar_um / bar_px:.4g} µm/px."
                st.rerun()
            else:
                st.error("Give the scale bar's length in pixels and in µm.")
        if ui().get("bar_message"):
            st.caption(ui()["bar_message"])
    return state.pixel_size()


def grain_settings(pixel_size: float | None, from_truth: bool) -> dict:
    """Sidebar widgets of the grain-map settings."""
    st.subheader("Grain map")
    method = "robust"
    threshold, gaps = 0.5, 2
    if not from_truth:
        method = st.radio("Method", list(METHODS), format_func=METHODS.get, key="grains_method")
        threshold = st.slider("Boundary probability threshold", 0.05, 0.95, 0.5, 0.05,
                              key="grains_threshold")  # fmt: skip
        gaps = st.slider("Close boundary gaps up to (px)", 0, 10, 2, key="grains_gaps")
    _, au = unit_labels(pixel_size)
    min_area = st.number_input(f"Minimum grain area ({au}), 0 = automatic", min_value=0.0,
                               value=0.0, step=1.0, key="grains_min_area")  # fmt: skip
    min_px = None
    if min_area > 0:
        min_px = max(1, round(min_area / (pixel_size**2))) if pixel_size else round(min_area)
    edge = st.radio("Grains cut by the image edge", list(EDGE_MODES), format_func=EDGE_MODES.get,
                    key="grains_edge")  # fmt: skip
    return {"method": method, "threshold": threshold, "gaps": gaps, "min_area_px": min_px,
            "edge": edge}  # fmt: skip


def _current_labels(base_key: tuple, compute) -> np.ndarray:  # noqa: ANN001
    """The base grain map for ``base_key`` with the user's corrections applied."""
    g = ui()
    if g.get("base_key") != base_key:
        if g.get("edits"):
            g["notice"] = (
                f"The settings changed, so {len(g['edits'])} correction(s) were discarded."
            )
        g["base_key"] = base_key
        g["base_labels"] = compute()
        g["labels"] = g["base_labels"]
        g["edits"] = []
        g["history"] = []
        g["selected"] = []
        g["version"] = g.get("version", 0) + 1
    return g["labels"]


def grains_page() -> None:
    """Render the Grains page."""
    from webui.layout import page_setup, require_image

    page_setup("Grains")
    st.title("Grains")
    image = require_image()
    shape = image.shape_yx
    with st.sidebar:
        t, z = frame_picker(image, "grains")
        choices = grain_model_choices(shape)
    if not choices:
        st.info(
            "There is no grain-boundary model yet. Train one on the Annotate page (task "
            "grains: classes grain interior and grain boundary), or compare a random forest "
            "and a U-Net on the ML vs DL page."
        )
        st.page_link("pages/6_ML_vs_DL.py", label="Go to ML vs DL", icon=":material/compare:")
        return
    with st.sidebar:
        labels_list = list(choices)
        label = st.selectbox("Boundary model", labels_list, key="grains_model")
        model_id = choices[label]
        ps = pixel_size_controls(image)
        settings = grain_settings(ps, from_truth=model_id == TRUTH)
    try:
        boundary = boundary_probability(model_id, image, t, z)
        base_key = (state.get("image_id"), t, z, model_id, settings["method"],
                    settings["threshold"], settings["gaps"], settings["min_area_px"],
                    id(boundary))  # fmt: skip
        labels = _current_labels(
            base_key, lambda: make_grain_map(boundary, settings, from_truth=model_id == TRUTH)
        )
        result = _grain_result(image, t, z, model_id, label, labels, ps, settings)
    except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
        st.error(one_sentence(exc, "Making the grain map"))
        return
    if ui().get("notice"):
        st.info(ui().pop("notice"))
    _grains_body(image, t, z, result, boundary, model_id)


def _grain_result(image, t, z, model_id, label, labels, ps, settings) -> dict:  # noqa: ANN001
    """Measure the current grain map (cached in ``grain_result``)."""
    key = (state.get("image_id"), t, z, model_id, ui().get("version"), len(ui().get("edits", [])),
           ps, settings["edge"], id(labels))  # fmt: skip
    res = state.get("grain_result")
    if res is not None and res.get("key") == key:
        return res
    with st.spinner("Measuring grains ..."):
        table, summary = measure_grains(labels, ps, settings["edge"])
    meta = {}
    if not model_id.startswith(TRUTH):
        try:
            if model_id.startswith(COMPARE):
                meta = state.get("compare_result")["models"][model_id[len(COMPARE) :]].metadata
            else:
                from webui.models import get_model

                meta = get_model(model_id).metadata
        except (KeyError, TypeError, MicrosegError):
            meta = {}
    res = {
        "key": key, "labels": labels, "table": table, "summary": summary, "pixel_size": ps,
        "t": t, "z": z, "model_id": model_id, "model_label": label, "settings": dict(settings),
        "edits": list(ui().get("edits", [])), "image_name": image.name,
        "model_meta": {"provenance": meta.get("provenance")} if meta else {},
    }  # fmt: skip
    state.put("grain_result", res)
    return res


def _summary_panel(summary: dict, ps: float | None) -> None:
    lu, au = unit_labels(ps)
    c = st.columns(4)
    c[0].metric("Grains", f"{summary.get('n_grains', 0)}")
    for col, key, name, unit in ((c[1], "mean_area", "Mean area", au),
                                 (c[2], "median_area", "Median area", au),
                                 (c[3], "mean_ecd", "Mean ECD", lu)):  # fmt: skip
        v = summary_value(summary, key)
        col.metric(f"{name} ({unit})", "—" if v is None else f"{v:.4g}")
    c = st.columns(4)
    v = summary_value(summary, "mean_intercept")
    c[0].metric(f"Mean intercept ({lu})", "—" if v is None else f"{v:.4g}")
    for col, key, name in ((c[1], "astm_g_planimetric", "G planimetric (E112)"),
                           (c[2], "astm_g_intercept", "G intercept (E112)"),
                           (c[3], "astm_g_mean_area", "G from mean area (E2627)")):  # fmt: skip
        g = summary_value(summary, key)
        col.metric(name, "—" if g is None else f"{g:.2f}")
        ci = summary.get(f"{key}_ci")
        if g is not None and ci is not None and len(ci) == 2 and None not in ci:
            col.caption(f"95 % CI {float(ci[0]):.2f} – {float(ci[1]):.2f}")
    if not ps:
        st.caption("G needs the pixel size: type it in or use a scale bar (sidebar).")


def _grains_body(image, t, z, result, boundary, model_id) -> None:  # noqa: ANN001
    labels, table, summary, ps = (result["labels"], result["table"], result["summary"],
                                  result["pixel_size"])  # fmt: skip
    lu, au = unit_labels(ps)
    _summary_panel(summary, ps)
    fr = class_fractions(model_id, image, t, z)
    if fr is not None:
        st.markdown("**Area fraction of each class**")
        st.dataframe(fr, hide_index=True, width="content")

    base = base_rgb(image, t, z)
    n = int(labels.max())
    col_map, col_plots = st.columns([1.35, 1])
    with col_plots:
        kinds = {"area": f"Area ({au})", "logarea": f"Area ({au}, log bins)",
                 "ecd": f"Equivalent circle diameter ({lu})"}  # fmt: skip
        kind = st.radio("Histogram", list(kinds), format_func=kinds.get, horizontal=True,
                        key="grains_hist_kind")  # fmt: skip
        acol, ecol = area_column(table, ps), ecd_column(table, ps)
        sized = sized_grains(table, result["settings"]["edge"])
        values = (
            sized[ecol if kind == "ecd" else acol].to_numpy(float) if len(sized) else np.zeros(0)
        )
        log = kind == "logarea"
        edges = histogram_bins(values, log=log)
        fig = histogram_figure(values, edges, log, kinds[kind])
        ev = st.plotly_chart(fig, key=f"grains_hist_{kind}", on_select="rerun",
                             selection_mode=("points", "box"))  # fmt: skip
        bins = sorted({int(p.get("point_index", p.get("point_number", -1)))
                       for p in _selection_points(ev)} - {-1})  # fmt: skip
        ids = sized["label"].to_numpy()[grains_in_bins(values, edges, bins, log)] if bins else []
        update_selection(f"hist_{kind}", [int(i) for i in ids])
        st.plotly_chart(cumulative_figure(sized[acol].to_numpy(float) if len(sized) else [],
                                          f"grain area ({au})"), key="grains_cdf")  # fmt: skip
        if len(sized) < len(table):
            st.caption(f"Histograms and sizes: the {len(sized)} grains not cut by the image "
                       "edge. The planimetric count takes an edge grain as 1/2 and a corner "
                       "grain as 1/4 (E112 §11).")  # fmt: skip
    with col_map:
        largest_n = st.slider("Highlight the largest grains", 0, min(20, max(n, 1)), 0,
                              key="grains_largest")  # fmt: skip
        largest = []
        if largest_n and len(table):
            largest = table.nlargest(largest_n, "area_px" if "area_px" in table else acol)["label"]
        excluded = []
        if "touches_border" in table.columns and result["settings"]["edge"] == "exclude":
            excluded = table.loc[table["touches_border"].astype(bool), "label"].to_numpy()
        selected = selected_ids()
        rgb = overlay_rgb(base, labels, selected=selected, largest=list(largest), excluded=excluded)
        ev = st.plotly_chart(map_figure(rgb, table), key="grains_map", on_select="rerun",
                             selection_mode=("points", "box", "lasso"))  # fmt: skip
        pts = _selection_points(ev)
        picked = []
        for p in pts:
            cd = p.get("customdata")
            if cd is not None:
                picked.append(int(cd[0] if isinstance(cd, (list, tuple)) else cd))
        update_selection("map", picked)
        st.caption(
            f"{n} grains, each in its own colour; dotted cyan: the 10 horizontal and 10 "
            "vertical Heyn test lines of the intercept count; "
            + ("dimmed: edge grains excluded from the statistics; " if len(excluded) else "")
            + "yellow: selected grains. Click a grain's marker, or box-select, to pick grains."
        )
    _selection_panel(table)
    _corrections_panel(labels, ps)
    _exports_panel(result, base, image)


def _selection_panel(table: pd.DataFrame) -> None:
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
        st.dataframe(rows.round(3), hide_index=True, key="grains_sel_table")
    with st.expander(f"Grain table ({len(table)} grains)"):
        ev = st.dataframe(table.round(3), hide_index=True, on_select="rerun",
                          selection_mode="multi-row", key="grains_table")  # fmt: skip
        st.caption("Select rows to highlight their grains. Lengths in px and µm, areas in px² "
                   "and µm², orientation in degrees from the x axis (counter-clockwise).")  # fmt: skip
        try:
            rows = list(ev["selection"]["rows"])
        except (KeyError, TypeError):
            rows = []
        update_selection("table", [int(table.iloc[r]["label"]) for r in rows if r < len(table)])


def _corrections_panel(labels: np.ndarray, ps: float | None) -> None:
    g = ui()
    h, w = labels.shape
    with st.expander("Correct the grain map", expanded=bool(g.get("edits"))):
        st.caption("Add a missing boundary along a line (from boundary to boundary), or remove "
                   "a false one between two grains or at a point. Grains, table and G update.")  # fmt: skip
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
        op = None
        if add:
            op = {"kind": "add", "x0": int(x0), "y0": int(y0), "x1": int(x1), "y1": int(y1)}
        elif rm_ids:
            op = {"kind": "remove_ids", "a": int(a), "b": int(b)}
        elif rm_sel:
            op = {"kind": "remove_ids", "a": int(pair[0]), "b": int(pair[1])}
        elif rm_at:
            op = {"kind": "remove_at", "x": int(px), "y": int(py)}
        if op is not None:
            try:
                new = apply_edit(g["labels"], op)
            except Exception as exc:  # noqa: BLE001
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


def _exports_panel(result: dict, base: np.ndarray, image: MicroImage) -> None:
    from microseg.io import image_stem

    stem = image_stem(image.name) or "image"
    st.subheader("Export")
    try:
        c = st.columns(5)
        c[0].download_button("Grain map (TIFF)", grain_map_tiff(result), f"{stem}_grains.tif",
                             "image/tiff", key="grains_dl_tif")  # fmt: skip
        c[1].download_button("Grain table (CSV)", result["table"].to_csv(index=False),
                             f"{stem}_grains.csv", "text/csv", key="grains_dl_csv")  # fmt: skip
        c[2].download_button("Summary (JSON)", summary_json(result), f"{stem}_summary.json",
                             "application/json", key="grains_dl_json")  # fmt: skip
        report = report_png(result, base)
        c[3].download_button("Report figure (PNG)", report, f"{stem}_report.png", "image/png",
                             key="grains_dl_png")  # fmt: skip
        c[4].download_button("Everything (ZIP)", export_zip(result, base, stem),
                             f"{stem}_grains.zip", "application/zip", key="grains_dl_zip")  # fmt: skip
        st.caption("The TIFF and the JSON files carry the provenance (microseg version, model, "
                   "model file hash, settings, corrections); the ZIP adds the table's provenance "
                   "sidecar.")  # fmt: skip
        with st.expander("Preview the report figure"):
            st.image(report, width="stretch")
    except Exception as exc:  # noqa: BLE001
        st.error(one_sentence(exc, "Preparing the exports"))


# ----------------------------------------------------------------------------- ML vs DL page


def _task_classes() -> list[str]:
    if state.get("task") == "grains":
        names = [c["name"] for c in state.get("classes") or []]
        if len(names) >= 2:
            return names
    return list(GRAIN_CLASSES)


def stroke_counts(strokes: np.ndarray, classes: list[str]) -> str:
    """'name: n px, ...' for the painted classes."""
    cnt = np.bincount(strokes.ravel(), minlength=len(classes) + 1)
    parts = [f"{classes[k - 1] if k - 1 < len(classes) else f'class {k}'}: {int(cnt[k])} px"
             for k in range(1, len(cnt)) if cnt[k]]  # fmt: skip
    share = 100 * float((strokes > 0).mean())
    return ", ".join(parts) + f" ({share:.1f} % of the image)"


def _check_compare_strokes(strokes: np.ndarray | None, classes: list[str]) -> str | None:
    if strokes is None:
        return "There are no strokes on this image yet."
    present = set(np.unique(strokes).tolist()) - {0}
    try:
        bi = boundary_index(classes) + 1
    except InputError as exc:
        return str(exc)
    if bi not in present or len(present) < 2:
        return (f"The strokes need both grain interiors and grain boundaries "
                f"(classes {', '.join(classes[:2])}).")  # fmt: skip
    return None


def train_compare_models(
    frame: np.ndarray, strokes: np.ndarray, classes: list[str], seconds: float,
    scratch: bool, progress=None,  # noqa: ANN001
) -> tuple[dict, dict]:  # fmt: skip
    """Train the random forest and the U-Net(s) on the same strokes.

    Returns (models, info) keyed by "classical", "deep" and (optionally) "scratch".
    """
    from microseg.classical import RandomForestSegmenter
    from microseg.deep import TrainConfig, train_unet
    from webui.models import builtin_available, builtin_model

    models: dict[str, Any] = {}
    info: dict[str, str] = {}
    t0 = time.perf_counter()
    if progress:
        progress("classical", 0.0, "Training the random forest ...")
    rf = RandomForestSegmenter()
    rf.fit(frame, strokes, classes=classes, task="grains")
    models["classical"] = rf
    info["classical"] = (
        f"random forest on engineered features, trained in {time.perf_counter() - t0:.1f} s"
    )
    runs = [("deep", True)] + ([("scratch", False)] if scratch else [])
    for key, from_builtin in runs:
        init = builtin_model("grains") if from_builtin and builtin_available("grains") else None
        kw: dict[str, Any] = {"init": init} if init is not None else {"task": "grains",
                                                                      "classes": list(classes)}  # fmt: skip
        if init is not None:
            top = int(strokes.max())
            if top > len(init.classes):
                init = None
                kw = {"task": "grains", "classes": list(classes)}

        def cb(p, key=key) -> None:  # noqa: ANN001
            if progress:
                progress(key, min(1.0, p.seconds / max(seconds, 1e-6)),
                         f"Training {COMPARE_LABELS[key]}: {p.seconds:.0f}/{seconds:.0f} s, "
                         f"step {p.step}, loss {p.loss:.3f}")  # fmt: skip

        t1 = time.perf_counter()
        model = train_unet([frame], [strokes], TrainConfig(seconds=float(seconds), seed=0),
                           progress=cb, **kw)  # fmt: skip
        models[key] = model
        took = time.perf_counter() - t1
        if key == "deep" and init is not None:
            info[key] = (f"built-in grains model fine-tuned on the strokes ({seconds:g} s budget, "
                         f"{took:.0f} s in all)")  # fmt: skip
        elif key == "deep":
            info[key] = (f"trained from scratch ({seconds:g} s budget, {took:.0f} s in all): the "
                         "built-in grains model is not installed")  # fmt: skip
        else:
            info[key] = (f"trained from scratch on the strokes only ({seconds:g} s budget, "
                         f"{took:.0f} s in all)")  # fmt: skip
    return models, info


def compare_scores(
    labels: dict[str, np.ndarray], boundary_gt: np.ndarray | None,
    truth_map: np.ndarray | None, pixel_size: float | None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:  # fmt: skip
    """One row per grain map: grains, mean intercept, G values and, with ground truth,
    boundary F1 (2 px), grain-count error and distribution distances (log area).

    Returns the table and the areas (px) of each map's grains not cut by the edge.
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    from microseg.metrics import boundary_f1

    maps = dict(labels)
    if truth_map is not None:
        maps = {"ground truth": truth_map, **maps}
    rows = []
    areas: dict[str, np.ndarray] = {}
    for name, lab in maps.items():
        table, summary = measure_grains(lab, pixel_size, "exclude")
        a = sized_grains(table, "exclude")["area_px"].to_numpy(float)
        areas[name] = a[a > 0]
        row = {
            "grain map": name,
            "grains": int(summary.get("n_grains", 0)),
            "mean intercept": summary_value(summary, "mean_intercept"),
            "G planimetric": summary_value(summary, "astm_g_planimetric"),
            "G intercept": summary_value(summary, "astm_g_intercept"),
        }
        if truth_map is not None and name != "ground truth":
            gt_lines = truth_map == 0
            row["boundary F1 (2 px)"] = boundary_f1(gt_lines, lab == 0, tolerance=2).f1
            n_gt = int(truth_map.max())
            row["grain count error (%)"] = 100.0 * (int(lab.max()) - n_gt) / max(1, n_gt)
            ga, pa = np.log10(areas["ground truth"]), np.log10(areas[name])
            if ga.size and pa.size:
                row["KS distance (log area)"] = float(ks_2samp(ga, pa).statistic)
                row["Wasserstein (log10 area)"] = float(wasserstein_distance(ga, pa))
        rows.append(row)
    return pd.DataFrame(rows), areas


def run_comparison(image: MicroImage, t: int, z: int, strokes: np.ndarray, classes: list[str],
                   seconds: float, scratch: bool) -> dict:  # fmt: skip
    """Train, predict, make grain maps and score them; the result goes to ``compare_result``."""
    from microseg.grains import differing_grains

    frame = image.frame(t, z)
    bar = st.progress(0.0, text="Starting ...")

    def progress(key: str, frac: float, text: str) -> None:
        order = ["classical", "deep", "scratch"] if scratch else ["classical", "deep"]
        i = order.index(key)
        bar.progress(min(1.0, (i + frac) / len(order)), text=text)

    models, info = train_compare_models(frame, strokes, classes, seconds, scratch, progress)
    bar.progress(1.0, text="Predicting and measuring ...")
    settings = ui().get("compare_settings") or {"method": "robust", "threshold": 0.5, "gaps": 2,
                                                "min_area_px": None}  # fmt: skip
    boundary: dict[str, np.ndarray] = {}
    maps: dict[str, np.ndarray] = {}
    for key, model in models.items():
        proba = np.asarray(model.predict_proba(frame), np.float32)
        boundary[key] = proba[boundary_index(list(model.classes))]
        maps[key] = make_grain_map(boundary[key], settings)
    bnd_gt = truth_boundaries(image.shape_yx) if (t, z) == (0, 0) else None
    truth_map = truth_grain_map(image.shape_yx) if bnd_gt is not None else None
    named = {COMPARE_LABELS[k]: v for k, v in maps.items()}
    scores, areas = compare_scores(named, bnd_gt, truth_map, state.pixel_size())
    differ: dict[str, np.ndarray] = {}
    for key, lab in maps.items():
        if truth_map is not None:
            ref = truth_map
        else:
            ref = maps["deep"] if key != "deep" else maps["classical"]
        differ[key] = differing_grains(lab, ref)
    bar.empty()
    result = {
        "image_id": state.get("image_id"), "t": t, "z": z, "models": models, "info": info,
        "boundary": boundary, "labels": maps, "differ": differ, "scores": scores,
        "areas": areas, "truth": truth_map is not None,
        "pixel_size": state.pixel_size(), "seconds": seconds,
        "reference": "the ground truth" if truth_map is not None else "the other model",
    }  # fmt: skip
    state.put("compare_result", result)
    return result


def compare_page() -> None:
    """Render the Machine learning vs deep learning page."""
    from webui.layout import page_setup, require_image
    from webui.models import builtin_available

    page_setup("ML vs DL")
    st.title("Machine learning vs deep learning")
    has_builtin = builtin_available("grains")
    st.markdown(
        "The same image and the same strokes train a **random forest on engineered filters** "
        "and a **U-Net** ("
        + ("the built-in grains model fine-tuned on the strokes"
           if has_builtin else "trained on the strokes")
        + "). Compare their boundary maps, grain maps, size distributions and ASTM grain size "
        "numbers."
    )  # fmt: skip
    image = require_image()
    with st.sidebar:
        t, z = frame_picker(image, "cmp")
    classes = _task_classes()
    strokes = state.strokes_for(t)
    b_gt = truth_boundaries(image.shape_yx)
    problem = _check_compare_strokes(strokes, classes)
    c1, c2 = st.columns([2, 1])
    with c1:
        if problem:
            st.info(problem + " Paint grain interiors and boundaries on the Annotate page"
                    + (", or use example strokes taken from the sample's ground truth."
                       if b_gt is not None else "."))  # fmt: skip
        else:
            st.caption(f"Strokes: {stroke_counts(strokes, classes)}")
    with c2:
        if b_gt is not None and st.button("Use example strokes from the ground truth",
                                          key="cmp_example_strokes"):  # fmt: skip
            gt = state.get("ground_truth") or {}
            lab = gt.get("labels") if np.ndim(gt.get("labels")) == 2 else None
            state.set_strokes(t, strokes_from_truth(b_gt, lab))
            if state.get("task") != "grains":
                state.put("task", "grains")
                state.reset_classes("grains")
            st.rerun()
        st.page_link(
            "pages/2_Annotate.py",
            label="Paint strokes on the Annotate page",
            icon=":material/brush:",
        )
    c = st.columns([1, 1, 1])
    seconds = c[0].number_input("Deep-learning training budget (s)", min_value=2, max_value=600,
                                value=30 if has_builtin else 60, step=5,
                                key="cmp_seconds")  # fmt: skip
    scratch = c[1].checkbox("Third column: a U-Net trained from scratch", key="cmp_scratch",
                            help="Shows why deep learning needs large training data.")  # fmt: skip
    if not has_builtin:
        st.caption("The built-in grains model is not installed: the U-Net trains from scratch, "
                   "so give it a minute or more.")  # fmt: skip
    run = c[2].button("Train both models and compare", key="cmp_run", type="primary",
                      disabled=problem is not None)  # fmt: skip
    if run and problem is None:
        try:
            run_comparison(image, t, z, strokes, classes, float(seconds), bool(scratch))
        except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
            st.error(one_sentence(exc, "The comparison"))
    res = state.get("compare_result")
    if res and res.get("image_id") == state.get("image_id") and (res["t"], res["z"]) == (t, z):
        _compare_results(image, res)


def _compare_results(image: MicroImage, res: dict) -> None:
    ps = res["pixel_size"]
    lu, au = unit_labels(ps)
    base = base_rgb(image, res["t"], res["z"])
    keys = list(res["models"])
    cols = st.columns(len(keys))
    for col, key in zip(cols, keys, strict=True):
        with col:
            st.subheader(COMPARE_LABELS[key])
            st.caption(res["info"][key])
            bmap = (np.clip(res["boundary"][key], 0, 1) * 255).astype(np.uint8)
            st.image(bmap, caption="grain-boundary probability (white = boundary)", width="stretch")
            lab = res["labels"][key]
            ids = np.unique(lab[res["differ"][key]])
            rgb = overlay_rgb(base, lab, selected=ids[ids > 0])
            st.image(rgb, width="stretch",
                     caption=f"{int(lab.max())} grains; yellow: the {ids.size} grains merged "
                     f"or split relative to {res['reference']}")  # fmt: skip
            row = res["scores"].set_index("grain map").loc[COMPARE_LABELS[key]]
            m = st.columns(2)
            for mc, name in zip(m, ("G planimetric", "G intercept"), strict=True):
                v = row.get(name)
                mc.metric(name, "—" if v is None or not np.isfinite(v) else f"{v:.2f}")
            if "boundary F1 (2 px)" in row.index:
                m = st.columns(2)
                m[0].metric("Boundary F1", f"{row['boundary F1 (2 px)']:.3f}")
                m[1].metric("Grain count error", f"{row['grain count error (%)']:+.0f} %")
    st.subheader("Size distributions")
    areas = dict(res["areas"])
    order = ["ground truth"] + [COMPARE_LABELS[k] for k in keys]
    series = {k: np.asarray(areas[k]) * (ps**2 if ps else 1.0) for k in order if k in areas}
    st.plotly_chart(compare_distribution_figure(series, f"grain area ({au}, log scale; edge "
                                                        "grains excluded)"), key="cmp_dist")  # fmt: skip
    st.subheader("Scores")
    df = res["scores"].copy().round(3)
    df = df.rename(columns={"mean intercept": f"mean intercept ({lu})"})
    st.dataframe(df, hide_index=True, key="cmp_scores")
    if not ps:
        st.caption("G values need the pixel size (set it on the Grains or Image page).")
    if res["truth"]:
        st.caption("Boundary F1 counts a boundary pixel as found when the other map has one "
                   "within 2 px; KS and Wasserstein distances compare each model's log grain-area "
                   "distribution with the ground truth's (0 = identical).")  # fmt: skip
    st.page_link("pages/5_Grains.py", label="Measure and correct these grain maps on the "
                 "Grains page", icon=":material/grain:")  # fmt: skip
