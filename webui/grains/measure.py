"""Grain maps and their measurements: the per-grain table, the ASTM summary with its
confidence intervals, display units, and the summary panel of the Grains page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st


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


def unit_labels(pixel_size: float | None) -> tuple[str, str]:
    """(length unit, area unit) for display."""
    return ("µm", "µm²") if pixel_size else ("px", "px²")


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


def summary_panel(summary: dict, ps: float | None) -> None:
    """Metrics of the grain summary: count, sizes, mean intercept and G with 95 % CIs."""
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
