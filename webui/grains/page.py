"""The Grains page: boundary model and grain-map settings in the sidebar, then the grain
map with its ASTM summary, linked histograms, selection, corrections and exports.

Session state used: ``grains_ui`` (see :mod:`webui.grains.shared`), ``grain_result``
(the current grain map with its table and summary) and ``grain_fields`` (see
:mod:`webui.grains.specimen`).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from microseg.errors import MicrosegError
from microseg.image import MicroImage
from webui import state, workspace
from webui.grains.boundary import (
    COMPARE,
    TRUTH,
    boundary_probability,
    class_fractions,
    grain_model_choices,
    plane_unfamiliarity,
)
from webui.grains.corrections import corrections_panel
from webui.grains.exports import exports_panel
from webui.grains.figures import (
    cumulative_figure,
    grains_in_bins,
    histogram_bins,
    histogram_figure,
    map_figure,
    overlay_rgb,
)
from webui.grains.measure import (
    area_column,
    ecd_column,
    make_grain_map,
    measure_grains,
    sized_grains,
    summary_panel,
    unit_labels,
)
from webui.grains.region import region_controls
from webui.grains.retrain import finish_retraining, retrain_panel
from webui.grains.selection import selected_ids, selection_panel, selection_points, update_selection
from webui.grains.shared import base_rgb, frame_picker, one_sentence, ui
from webui.grains.specimen import specimen_panel
from webui.quality_panel import quality_panel
from webui.widgets import ignored_calibration_note

EDGE_MODES = {
    "exclude": "Exclude them from sizes and histograms",
    "keep": "Keep them in sizes and histograms",
}
METHODS = {"robust": "Watershed from robust seeds", "threshold": "Threshold, close, thin"}


def pixel_size_controls(image: MicroImage) -> float | None:
    """Pixel size: metadata, typed in, or from a scale bar; returns µm/px or None."""
    st.subheader("Pixel size")
    meta = image.pixel_size_um
    st.caption(f"From the file: {meta:.4g} µm/px" if meta else "No pixel size in the file.")
    ignored_calibration_note(image)
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
    workspace.save_pixel_size()
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
    image = require_image("grains")
    shape = image.shape_yx
    finish_retraining()  # a model trained on the corrections becomes the map's model
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
        region, region_source = region_controls(image)
        settings = grain_settings(ps, from_truth=model_id == TRUTH)
    progress_slot = st.empty()  # on every run, so the elements below keep their places
    try:
        boundary = boundary_probability(model_id, image, t, z, progress_slot, region)
        base_key = (state.get("image_id"), t, z, model_id, settings["method"],
                    settings["threshold"], settings["gaps"], settings["min_area_px"],
                    region, id(boundary))  # fmt: skip
        labels = _current_labels(base_key, lambda: _build_map(boundary, settings, model_id))
        where = region.record(region_source, image.shape_yx)
        result = _grain_result(image, t, z, model_id, label, labels, ps, settings, where)
        if "quality" not in result:
            result["quality"] = _verdict(result, boundary, image, region)
            result["summary"]["quality"] = result["quality"].to_json()
    except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
        st.error(one_sentence(exc, "Making the grain map"))
        return
    if ui().get("notice"):
        st.info(ui().pop("notice"))
    _grains_body(image, t, z, result, boundary, model_id, region)


def _build_map(boundary: np.ndarray, settings: dict, model_id: str) -> np.ndarray:
    with st.spinner("Building the grain map ..."):
        return make_grain_map(boundary, settings, from_truth=model_id == TRUTH)


def _grain_result(image, t, z, model_id, label, labels, ps, settings, where) -> dict:  # noqa: ANN001
    """Measure the current grain map (cached in ``grain_result``); ``where``: the
    measured region as the CLI's summary records it."""
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
        "region": where,
    }  # fmt: skip
    state.put("grain_result", res)
    return res


def _verdict(result: dict, boundary: np.ndarray, image: MicroImage, region):  # noqa: ANN001, ANN202
    """The quality verdict of the measured grain map (:func:`microseg.quality.grain_quality`)."""
    from microseg.quality import grain_quality

    t, z, model_id = result["t"], result["z"], result["model_id"]
    u = plane_unfamiliarity(model_id, image, t, z, region)
    proba = None if model_id == TRUTH or boundary.shape != result["labels"].shape else boundary
    return grain_quality(result["labels"], result["summary"], proba, result["pixel_size"], u)


def _pixel_size_action() -> None:
    """The verdict's "set the pixel size", done where it is said (the sidebar's value)."""
    with st.container(key="grains_set_px"):
        c1, c2, _ = st.columns([1, 1, 2], vertical_alignment="bottom")
        value = c1.number_input("Pixel size of this image (µm/px)", min_value=0.0, step=0.01,
                                format="%.4f", key="grains_verdict_px")  # fmt: skip
        if c2.button("Set the pixel size", key="grains_verdict_px_set", disabled=value <= 0):
            ui()["pending_px"] = value
            ui()["bar_message"] = f"Pixel size set to {value:.4g} µm/px."
            st.rerun()


def _grains_body(image, t, z, result, boundary, model_id, region) -> None:  # noqa: ANN001
    labels, table, summary, ps = (result["labels"], result["table"], result["summary"],
                                  result["pixel_size"])  # fmt: skip
    if model_id != TRUTH:
        quality_panel(result["quality"], "grains", annotate_link=True)
        if ps is None:
            _pixel_size_action()
    summary_panel(summary, ps)
    fr = class_fractions(model_id, image, t, z, region)
    if fr is not None:
        st.markdown("**Area fraction of each class**")
        st.dataframe(fr, hide_index=True, width="content")

    base = base_rgb(image, t, z)[region.y0 : region.y1, region.x0 : region.x1]
    h, w = labels.shape
    wide = st.toggle("Full-width map", value=w >= 1.2 * h, key="grains_map_wide",
                     help="The map across the page, the histograms below it; on by default "
                     "for images wider than tall.")  # fmt: skip
    if wide:
        box_map, box_plots = st.container(), st.container()
        col_hist, col_cdf = box_plots.columns(2)
    else:
        box_map, box_plots = st.columns([1.35, 1])
        col_hist = col_cdf = box_plots
    # the histograms run first: a bar picked there highlights its grains on the map
    with col_hist:
        _histogram(table, ps, result["settings"]["edge"])
    with col_cdf:
        _cumulative(table, ps, result["settings"]["edge"])
    with box_map:
        _grain_map(base, labels, table, result["settings"]["edge"], 1000 if wide else 560)
    selection_panel(table)
    corrections_panel(labels, ps, base, None if model_id == TRUTH else boundary)
    if model_id != TRUTH:
        retrain_panel(image, t, z, region, model_id)
    specimen_panel(result)
    exports_panel(result, base, image)


def _histogram(table, ps: float | None, edge: str) -> None:  # noqa: ANN001
    """Grain-size histogram; picking bars selects their grains."""
    lu, au = unit_labels(ps)
    kinds = {"logarea": f"Area ({au}, log bins)", "area": f"Area ({au})",
             "ecd": f"Equivalent circle diameter ({lu})"}  # fmt: skip
    kind = st.radio("Histogram", list(kinds), format_func=kinds.get, horizontal=True,
                    key="grains_hist_kind")  # fmt: skip
    acol, ecol = area_column(table, ps), ecd_column(table, ps)
    sized = sized_grains(table, edge)
    values = sized[ecol if kind == "ecd" else acol].to_numpy(float) if len(sized) else np.zeros(0)
    log = kind == "logarea"
    edges = histogram_bins(values, log=log)
    ev = st.plotly_chart(histogram_figure(values, edges, log, kinds[kind]),
                         key=f"grains_hist_{kind}", on_select="rerun",
                         selection_mode=("points", "box"))  # fmt: skip
    bins = sorted({int(p.get("point_index", p.get("point_number", -1)))
                   for p in selection_points(ev)} - {-1})  # fmt: skip
    ids = sized["label"].to_numpy()[grains_in_bins(values, edges, bins, log)] if bins else []
    update_selection(f"hist_{kind}", [int(i) for i in ids])


def _cumulative(table, ps: float | None, edge: str) -> None:  # noqa: ANN001
    """Cumulative size distribution, and which grains the sizes count."""
    _, au = unit_labels(ps)
    sized = sized_grains(table, edge)
    acol = area_column(table, ps)
    st.plotly_chart(cumulative_figure(sized[acol].to_numpy(float) if len(sized) else [],
                                      f"grain area ({au})"), key="grains_cdf")  # fmt: skip
    if len(sized) < len(table):
        st.caption(f"Histograms and sizes: the {len(sized)} grains not cut by the image "
                   "edge. The planimetric count takes an edge grain as 1/2 and a corner "
                   "grain as 1/4 (E112 §11).")  # fmt: skip


def _grain_map(base: np.ndarray, labels: np.ndarray, table, edge: str,  # noqa: ANN001
               display_width: float) -> None:  # fmt: skip
    """The grain map with the largest, selected and excluded grains; clicking or
    box-selecting markers selects grains."""
    n = int(labels.max())
    largest_n = st.slider("Highlight the largest grains", 0, min(20, max(n, 1)), 0,
                          key="grains_largest")  # fmt: skip
    largest = []
    if largest_n and len(table):
        largest = table.nlargest(largest_n, area_column(table, None))["label"]
    excluded = []
    if "touches_border" in table.columns and edge == "exclude":
        excluded = table.loc[table["touches_border"].astype(bool), "label"].to_numpy()
    rgb = overlay_rgb(base, labels, selected=selected_ids(), largest=list(largest),
                      excluded=excluded)  # fmt: skip
    ev = st.plotly_chart(map_figure(rgb, table, display_width=display_width), key="grains_map",
                         on_select="rerun", selection_mode=("points", "box", "lasso"))  # fmt: skip
    picked = []
    for p in selection_points(ev):
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
