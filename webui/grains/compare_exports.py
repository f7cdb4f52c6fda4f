"""Exports of a machine-learning-vs-deep-learning comparison: the scores table, each
model's grain map and boundary probability, the grain areas, and a side-by-side figure,
together in one ZIP with their provenance."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import streamlit as st

from microseg.io import jsonable
from webui.grains.boundary import COMPARE_LABELS
from webui.grains.exports import draw_text, label_tiff, tiff_bytes
from webui.grains.figures import overlay_rgb

FILE_KEYS = {"classical": "random_forest", "deep": "unet", "scratch": "unet_from_scratch"}


def compare_provenance(res: dict, image_name: str | None) -> dict:
    """What produced the comparison: microseg version, image, budget, pixel size, models."""
    from microseg.exports import provenance

    rec = provenance(None, {"deep_learning_seconds": res.get("seconds"),
                            "pixel_size_um": res.get("pixel_size"),
                            "frame": res.get("t"), "slice": res.get("z")},
                     image=image_name, model_label="machine learning vs deep learning")  # fmt: skip
    rec["models"] = {FILE_KEYS[k]: res["info"][k] for k in res["labels"]}
    rec["differences_relative_to"] = res.get("reference")
    return jsonable(rec)


def areas_table(res: dict) -> pd.DataFrame:
    """One row per grain not cut by the image edge: grain map and area (px, and µm² when
    the pixel size is known)."""
    rows = [pd.DataFrame({"grain map": name, "area_px": np.asarray(a, float)})
            for name, a in res["areas"].items()]  # fmt: skip
    df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["grain map"])
    if res.get("pixel_size"):
        df["area_um2"] = df["area_px"] * float(res["pixel_size"]) ** 2
    return df


def compare_png(res: dict, base: np.ndarray, image_name: str | None) -> bytes:
    """Side by side, one column per model: boundary probability, grain map with the grains
    that differ in yellow, and the grain count and G values under it."""
    from PIL import Image, ImageDraw

    keys = list(res["labels"])
    h, w = res["labels"][keys[0]].shape
    side = 420
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    col_w, top = size[0] + 30, 90
    canvas = Image.new("RGB", (30 + col_w * len(keys), top + 2 * size[1] + 210), "white")
    draw = ImageDraw.Draw(canvas)
    draw_text(draw, (20, 12), f"Machine learning vs deep learning: {image_name or 'image'}", 22)
    draw_text(draw, (20, 42), "top: grain-boundary probability (white = boundary)", 14,
              fill=(60, 60, 60))  # fmt: skip
    draw_text(draw, (20, 60), "below: grain map; yellow = grains merged or split relative to "
              f"{res['reference']}", 14, fill=(60, 60, 60))  # fmt: skip
    scores = res["scores"].set_index("grain map")
    if "ground truth" in scores.index:
        gt = scores.loc["ground truth"]
        line = f"ground truth: {int(gt['grains'])} grains"
        for name in ("G planimetric", "G intercept"):
            v = gt.get(name)
            if v is not None and np.isfinite(float(v)):
                line += f", {name} {float(v):.2f}"
        draw_text(draw, (20, canvas.height - 34), line, 15)
    for i, key in enumerate(keys):
        x = 20 + i * col_w
        prob = (np.clip(res["boundary"][key], 0, 1) * 255).astype(np.uint8)
        lab = res["labels"][key]
        ids = np.unique(lab[res["differ"][key]])
        rgb = overlay_rgb(base, lab, selected=ids[ids > 0])
        canvas.paste(Image.fromarray(prob).convert("RGB").resize(size), (x, top + 24))
        canvas.paste(Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST),
                     (x, top + 34 + size[1]))  # fmt: skip
        draw_text(draw, (x, top), COMPARE_LABELS[key], 17)
        row = scores.loc[COMPARE_LABELS[key]]
        lines = [f"{int(row['grains'])} grains, {ids.size} differ"]
        for name in ("G planimetric", "G intercept", "boundary F1 (2 px)"):
            v = row.get(name)
            if v is not None and np.isfinite(float(v)):
                lines.append(f"{name}: {float(v):.2f}" if name.startswith("G")
                             else f"{name}: {float(v):.3f}")  # fmt: skip
        for j, line in enumerate(lines):
            draw_text(draw, (x, top + 44 + 2 * size[1] + 22 * j), line, 15)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def compare_zip(res: dict, base: np.ndarray, stem: str, image_name: str | None) -> bytes:
    """Everything of a comparison in one ZIP (see the module docstring)."""
    prov = compare_provenance(res, image_name)
    ps = res.get("pixel_size")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{stem}_compare_scores.csv", res["scores"].to_csv(index=False))
        zf.writestr(f"{stem}_compare_areas.csv", areas_table(res).to_csv(index=False))
        zf.writestr(f"{stem}_compare.json", json.dumps(prov, indent=1))
        zf.writestr(f"{stem}_compare.png", compare_png(res, base, image_name))
        for key, lab in res["labels"].items():
            meta = dict(prov, grain_map=COMPARE_LABELS[key])
            name = FILE_KEYS[key]
            zf.writestr(f"{stem}_{name}_grains.tif", label_tiff(lab, ps, meta))
            zf.writestr(
                f"{stem}_{name}_boundary.tif",
                tiff_bytes(np.asarray(res["boundary"][key], np.float32), ps, meta),
            )
    return buf.getvalue()


def compare_exports_panel(res: dict, base: np.ndarray, image_name: str | None) -> None:
    """Download buttons: the scores (CSV), the figure (PNG) and everything (ZIP)."""
    from microseg.io import image_stem

    stem = image_stem(image_name or "") or "image"
    st.subheader("Export")
    c = st.columns(3)  # each file is made when its button is clicked
    c[0].download_button("Scores (CSV)", lambda: res["scores"].to_csv(index=False),
                         f"{stem}_compare_scores.csv", "text/csv", key="cmp_dl_csv")  # fmt: skip
    c[1].download_button("Side-by-side figure (PNG)", lambda: compare_png(res, base, image_name),
                         f"{stem}_compare.png", "image/png", key="cmp_dl_png")  # fmt: skip
    c[2].download_button("Everything (ZIP)", lambda: compare_zip(res, base, stem, image_name),
                         f"{stem}_compare.zip", "application/zip", key="cmp_dl_zip")  # fmt: skip
    st.caption("The ZIP holds the scores, every grain's area per map, each model's grain "
               "map (label TIFF) and boundary probability (float TIFF), the figure, and "
               "the provenance (microseg version, models, training budget, pixel size).")  # fmt: skip
