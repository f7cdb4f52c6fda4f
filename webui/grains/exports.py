"""Exports of a grain result, each with its provenance: grain map TIFF, grain table CSV,
summary JSON, report figure PNG and a ZIP of them all."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import streamlit as st

from microseg.errors import MicrosegError
from microseg.image import MicroImage
from microseg.io import jsonable
from webui.grains.corrections import describe_edit
from webui.grains.figures import histogram_bins, log_ticks, overlay_rgb, test_lines
from webui.grains.measure import area_column, fmt_ci, sized_grains, summary_value, unit_labels
from webui.grains.shared import one_sentence


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
                  region=result.get("region"),
                  corrections=[describe_edit(op) for op in result.get("edits", [])])  # fmt: skip
    rec = provenance(
        path, params, image=result.get("image_name"), model_label=result["model_label"]
    )
    rec["model"] = model_id if path is None else rec.get("model", model_id)
    model = result.get("model_meta") or {}
    if model.get("provenance"):
        rec["model_training"] = model["provenance"]
    return rec


def summary_json(result: dict) -> bytes:
    """Summary JSON (with provenance) of a grain result."""
    rec = dict(jsonable(result["summary"]))
    if result.get("region"):
        rec["region"] = jsonable(result["region"])
    rec["provenance"] = jsonable(provenance_record(result))
    return json.dumps(rec, indent=1).encode()


def tiff_bytes(arr: np.ndarray, pixel_size_um: float | None, metadata: dict) -> bytes:
    """``arr`` ``(Y, X)`` as a zlib-compressed ImageJ TIFF with pixel size and metadata."""
    import tempfile
    from pathlib import Path

    from microseg.io import write_tiff

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.tif"
        write_tiff(path, arr, "YX", pixel_size_um=pixel_size_um, metadata=metadata,
                   compression="zlib")  # fmt: skip
        return path.read_bytes()


def label_tiff(labels: np.ndarray, pixel_size_um: float | None, metadata: dict) -> bytes:
    """A label image (uint16, uint32 above 65535 labels) as TIFF bytes, see :func:`tiff_bytes`."""
    arr = labels.astype(np.uint16 if labels.max() <= 65535 else np.uint32)
    return tiff_bytes(arr, pixel_size_um, metadata)


def grain_map_tiff(result: dict) -> bytes:
    """The grain map as an ImageJ TIFF with pixel size and provenance."""
    meta = jsonable(provenance_record(result))
    return label_tiff(result["labels"], result["pixel_size"], meta)


def grain_map_ome_tiff(result: dict) -> bytes:
    """The grain map as an OME-TIFF (physical pixel size, provenance in the Description)."""
    import tempfile
    from pathlib import Path

    from microseg.exports import write_label_stack

    with tempfile.TemporaryDirectory() as tmp:
        path = write_label_stack(Path(tmp) / "grains.ome.tif", result["labels"],
                                 result["pixel_size"], jsonable(provenance_record(result)))  # fmt: skip
        return path.read_bytes()


_ASCII = str.maketrans({"µ": "u", "²": "^2", "–": "-", "§": "par. "})


def geojson_bytes(result: dict) -> bytes:
    """The grains as QuPath detections (GeoJSON), outlines in the whole image's pixels."""
    from microseg.geojson import GRAIN_COLOR
    from microseg.geojson import geojson_bytes as to_geojson

    region = result.get("region") or {}
    offset = (int(region.get("y0", 0)), int(region.get("x0", 0)))
    return to_geojson(result["labels"], class_name="Grain", color=GRAIN_COLOR,
                      table=result["table"], offset=offset, id_seed=str(result.get("image_name")),
                      provenance=jsonable(provenance_record(result)))  # fmt: skip


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


def draw_text(draw, xy: tuple[float, float], text: str, size: int, fill="black") -> None:  # noqa: ANN001
    """Draw ``text`` with a TrueType font when there is one (µ and ² spelled out otherwise)."""
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
    draw_text(draw, (20, 15), f"Grain size report: {result.get('image_name') or 'image'}", 24)
    draw_text(draw, (20, 45), f"model: {result['model_label']}", 15, fill=(60, 60, 60))
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
    for val, txt in zip(*log_ticks(edges), strict=True):
        tx = x0 + pw * (val - edges[0]) / (edges[-1] - edges[0])
        draw.line([(tx, y0 + ph), (tx, y0 + ph + 5)], fill="black")
        draw_text(draw, (tx - 8, y0 + ph + 8), txt, 13)
    draw_text(draw, (x0, y0 + ph + 30), f"grain area ({au}, log scale)", 15)
    draw_text(draw, (x0 - 30, y0 - 6), f"{top}", 13)
    draw_text(draw, (x0 - 16, y0 + ph - 10), "0", 13)
    what = "grains not cut by the image edge" if len(sized) < len(table) else "all grains"
    draw_text(draw, (x0, y0 - 30), f"number of grains per size class ({what})", 15)
    ty = y0 + ph + 70
    for line in summary_lines(summary, ps):
        draw_text(draw, (x0, ty), line, 16)
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
    prov = jsonable(provenance_record(result))
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
        zf.writestr(f"{stem}.geojson", geojson_bytes(result))
    return buf.getvalue()


def exports_panel(result: dict, base: np.ndarray, image: MicroImage) -> None:
    """Download buttons of every export and a preview of the report figure."""
    from microseg.io import image_stem

    stem = image_stem(image.name) or "image"
    st.subheader("Export")
    c = st.columns(4) + st.columns(4)
    # made when clicked (a large map's ZIP or report takes a second to build); a download
    # does not rerun the page
    c[0].download_button("Grain map (TIFF)", lambda: grain_map_tiff(result), f"{stem}_grains.tif",
                         "image/tiff", key="grains_dl_tif", on_click="ignore")  # fmt: skip
    c[1].download_button("Grain table (CSV)", lambda: result["table"].to_csv(index=False),
                         f"{stem}_grains.csv", "text/csv", key="grains_dl_csv", on_click="ignore")  # fmt: skip
    c[2].download_button("Summary (JSON)", lambda: summary_json(result), f"{stem}_summary.json",
                         "application/json", key="grains_dl_json", on_click="ignore")  # fmt: skip
    c[3].download_button("Report figure (PNG)", lambda: report_png(result, base),
                         f"{stem}_report.png", "image/png", key="grains_dl_png", on_click="ignore")  # fmt: skip
    c[6].download_button("Grain map (OME-TIFF)", lambda: grain_map_ome_tiff(result),
                         f"{stem}_grains.ome.tif", "image/tiff", key="grains_dl_ome",
                         on_click="ignore")  # fmt: skip
    c[4].download_button("QuPath objects (GeoJSON)", lambda: geojson_bytes(result),
                         f"{stem}.geojson", "application/geo+json", key="grains_dl_geojson", on_click="ignore")  # fmt: skip
    c[5].download_button("Everything (ZIP)", lambda: export_zip(result, base, stem),
                         f"{stem}_grains.zip", "application/zip", key="grains_dl_zip", on_click="ignore")  # fmt: skip
    st.caption("Which tool reads what: the grain map TIFF opens in Fiji with its pixel size "
               "(grain ids, boundaries 0), the OME-TIFF in napari, OMERO and QuPath with its "
               "physical pixel size; the CSV in any spreadsheet, pandas or R; "
               "the GeoJSON in QuPath (File > Import objects: one detection per grain, with "
               "its measurements) and in any GIS tool. The TIFF and the JSON files carry the "
               "provenance (microseg version, model, model file hash, settings, corrections); "
               "the ZIP adds the table's provenance sidecar.")  # fmt: skip
    if st.toggle("Preview the report figure", key="grains_report_preview"):
        try:
            st.image(report_png(result, base), width="stretch")
        except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
            st.error(one_sentence(exc, "Preparing the report figure"))
