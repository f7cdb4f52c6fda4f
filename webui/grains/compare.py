"""The ML-vs-DL page: a random forest and one or two U-Nets trained on the same strokes,
their boundary maps, grain maps, size distributions and scores side by side.

Session state used: ``grains_ui`` (see :mod:`webui.grains.shared`) and ``compare_result``
(the models, maps and scores of the last comparison).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from microseg.errors import InputError
from microseg.image import MicroImage
from webui import state
from webui.grains.boundary import COMPARE_LABELS, boundary_index
from webui.grains.compare_exports import compare_exports_panel
from webui.grains.figures import compare_distribution_figure, overlay_rgb
from webui.grains.measure import (
    make_grain_map,
    measure_grains,
    sized_grains,
    summary_value,
    unit_labels,
)
from webui.grains.shared import base_rgb, frame_picker, one_sentence, ui
from webui.grains.truth import strokes_from_truth, truth_boundaries, truth_grain_map

GRAIN_CLASSES = ["grain interior", "grain boundary"]


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
    from microseg.astm import grain_summary
    from microseg.quality import grain_quality, model_unfamiliarity

    boundary: dict[str, np.ndarray] = {}
    maps: dict[str, np.ndarray] = {}
    quality = {}
    for key, model in models.items():
        proba = np.asarray(model.predict_proba(frame), np.float32)
        boundary[key] = proba[boundary_index(list(model.classes))]
        maps[key] = make_grain_map(boundary[key], settings)
        ps = state.pixel_size()
        quality[key] = grain_quality(maps[key], grain_summary(maps[key], ps), boundary[key], ps,
                                     unfamiliarity=model_unfamiliarity(model, frame))  # fmt: skip
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
        "areas": areas, "truth": truth_map is not None, "quality": quality,
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
    image = require_image("grains")
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
            state.switch_task("grains")
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
    from webui.quality_panel import quality_panel

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
            if key in res.get("quality", {}):
                quality_panel(res["quality"][key], f"cmp_{key}", annotate_link=False)
    st.subheader("Size distributions")
    areas = dict(res["areas"])
    order = ["ground truth"] + [COMPARE_LABELS[k] for k in keys]
    series = {k: np.asarray(areas[k]) * (ps**2 if ps else 1.0) for k in order if k in areas}
    st.plotly_chart(compare_distribution_figure(series, f"grain area ({au}, log scale; edge "
                                                        "grains excluded)"), key="cmp_dist")  # fmt: skip
    st.subheader("Scores")
    df = res["scores"].copy().round(3)
    if not ps:  # no G without a pixel size: the caption below says so
        df = df.drop(columns=["G planimetric", "G intercept"], errors="ignore")
    df = df.rename(columns={"mean intercept": f"mean intercept ({lu})"})
    st.dataframe(df, hide_index=True, key="cmp_scores")
    if not ps:
        st.caption("G values need the pixel size (set it on the Grains or Image page).")
    if res["truth"]:
        st.caption("Boundary F1 counts a boundary pixel as found when the other map has one "
                   "within 2 px; KS and Wasserstein distances compare each model's log grain-area "
                   "distribution with the ground truth's (0 = identical).")  # fmt: skip
    compare_exports_panel(res, base, image.name)
    st.page_link("pages/5_Grains.py", label="Measure and correct these grain maps on the "
                 "Grains page", icon=":material/grain:")  # fmt: skip
