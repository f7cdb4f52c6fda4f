"""Exports of the nuclei result, each with its provenance: label stack, tables, tracks
(TrackMate, napari), ImageJ ROIs, the overlay and a ZIP of everything."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from microseg.errors import InputError
from webui.nuclei.session import NucleiResult, ui


def label_stack(res: NucleiResult, track_ids: bool = False) -> np.ndarray:
    """``(T, Y, X)`` labels (unsegmented frames are 0); track ids when asked and tracked."""
    from microseg.io import label_dtype

    first = next(iter(res.labels.values()))
    top = max(int(v.max(initial=0)) for v in res.labels.values())
    stack = np.zeros((res.n_frames, *first.shape), label_dtype(top))
    for t, lab in res.labels.items():
        stack[t] = lab
    if track_ids and res.tracks is not None:
        stack = res.tracks.relabel(stack)
    return stack if res.n_frames > 1 else stack[0]


def export_bytes(
    res: NucleiResult, kind: str, overlay: np.ndarray | None = None, track_ids: bool = False
) -> bytes:
    """The bytes of one export (TIFF, CSV, ZIP or PNG), with provenance."""
    from microseg import exports
    from microseg.io import write_png

    prov = res.provenance(export=kind, label_ids="track ids" if track_ids else "per frame")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if kind in ("labels", "labels_ome"):
            p = exports.write_label_stack(
                d / ("labels.tif" if kind == "labels" else "labels.ome.tif"),
                label_stack(res, track_ids),
                pixel_size_um=res.pixel_size_um,
                provenance=prov,
            )
            return p.read_bytes()
        if kind == "objects":
            return res.table.to_csv(index=False).encode()
        if kind == "frames":
            from microseg.nuclei import frame_table

            return frame_table(res.table, res.frames_done).to_csv(index=False).encode()
        if kind == "tracks":
            return _tracks_csv(res).to_csv(index=False).encode()
        if kind == "provenance":
            return json.dumps(prov, indent=1, default=str).encode()
        if kind == "rois":
            return exports.write_imagej_rois(label_stack(res), d / "rois.zip").read_bytes()
        if kind == "geojson":
            return _geojson(res, d, prov).read_bytes()
        if kind == "overlay":
            if overlay is None:
                raise InputError("There is no overlay to export.")
            return write_png(d / "overlay.png", overlay, metadata=prov).read_bytes()
        if kind in ("trackmate", "napari", "all"):
            return _zip_export(res, kind, d, prov)
    raise ValueError(kind)


def _geojson(res: NucleiResult, d: Path, prov: dict) -> Path:
    """The nuclei as QuPath detections, every frame's on its plane."""
    from microseg.geojson import NUCLEUS_COLOR, write_geojson

    stack = label_stack(res)
    return write_geojson(d / "nuclei.geojson", stack, class_name="Nucleus", color=NUCLEUS_COLOR,
                         table=res.table, axes="TYX" if stack.ndim == 3 else "YX",
                         provenance=prov)  # fmt: skip


def _tracks_csv(res: NucleiResult) -> pd.DataFrame:
    if res.tracks is None:
        raise InputError("Track the nuclei first.")
    links = res.tracks.links.merge(
        res.table[["frame", "label", "y", "x"]], on=["frame", "label"], how="left"
    )
    return links


def _zip_export(res: NucleiResult, kind: str, d: Path, prov: dict) -> bytes:
    from microseg import exports

    files: list[Path] = []
    if kind in ("trackmate", "all") and res.tracks is not None:
        files += list(
            exports.write_tracks_trackmate_csv(
                res.tracks.links,
                res.table,
                d / "tracks_trackmate.csv",
                pixel_size_um=res.pixel_size_um,
                provenance=prov,
            )
        )
    if kind in ("napari", "all") and res.tracks is not None:
        files += list(
            exports.write_tracks_napari_csv(res.tracks.links, res.table, d / "tracks_napari.csv")
        )
    if kind == "all":
        from microseg.nuclei import frame_table

        files.append(
            exports.write_label_stack(
                d / "labels.tif", label_stack(res), pixel_size_um=res.pixel_size_um, provenance=prov
            )
        )
        files += list(exports.write_table_csv(res.table, d / "objects.csv", prov))
        files += list(
            exports.write_table_csv(frame_table(res.table, res.frames_done), d / "frames.csv", prov)
        )
        if res.tracks is not None:
            files += list(exports.write_table_csv(_tracks_csv(res), d / "tracks.csv", prov))
            files += list(exports.write_table_csv(res.track_table, d / "track_summary.csv", prov))
        files.append(exports.write_imagej_rois(label_stack(res), d / "rois.zip"))
        files.append(_geojson(res, d, prov))
    if not files:
        raise InputError("Track the nuclei first.")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.name)
    return buf.getvalue()


def _deferred(res: NucleiResult, kind: str, **kw: Any) -> Callable[[], bytes]:
    def make() -> bytes:
        return export_bytes(res, kind, **kw)

    return make


def exports_tab(res: NucleiResult, stem: str) -> None:
    """Download buttons: labels, tables, tracks, ImageJ ROIs, overlay PNG, everything."""
    tracked = res.tracks is not None
    track_ids = st.toggle(
        "Label ids = track ids",
        value=False,
        key="nuc_export_track_ids",
        disabled=not tracked,
        help="Otherwise ids are per frame, as in the objects table.",
    )
    rows = [
        ("Label stack (TIFF)", "labels", f"{stem}_labels.tif", "image/tiff", True),
        ("Label stack (OME-TIFF)", "labels_ome", f"{stem}_labels.ome.tif", "image/tiff", True),
        ("Objects (CSV)", "objects", f"{stem}_objects.csv", "text/csv", True),
        ("Frames (CSV)", "frames", f"{stem}_frames.csv", "text/csv", True),
        ("Tracks (CSV)", "tracks", f"{stem}_tracks.csv", "text/csv", tracked),
        (
            "Tracks for TrackMate (ZIP: spots + edges)",
            "trackmate",
            f"{stem}_tracks_trackmate.zip",
            "application/zip",
            tracked,
        ),
        (
            "Tracks for napari (ZIP: CSV + graph)",
            "napari",
            f"{stem}_tracks_napari.zip",
            "application/zip",
            tracked,
        ),
        ("ImageJ ROIs (ZIP)", "rois", f"{stem}_rois.zip", "application/zip", True),
        ("QuPath objects (GeoJSON)", "geojson", f"{stem}.geojson", "application/geo+json", True),
        ("Overlay of this frame (PNG)", "overlay", f"{stem}_overlay.png", "image/png", True),
        ("Provenance (JSON)", "provenance", f"{stem}_provenance.json", "application/json", True),
        (
            "Everything (ZIP, with provenance sidecars)",
            "all",
            f"{stem}_nuclei.zip",
            "application/zip",
            True,
        ),
    ]
    cols = st.columns(2)
    for i, (label, kind, name, mime, enabled) in enumerate(rows):
        kw: dict[str, Any] = {}
        if kind in ("labels", "labels_ome"):
            kw["track_ids"] = bool(track_ids and tracked)
        if kind == "overlay":
            kw["overlay"] = ui().get("overlay")
        cols[i % 2].download_button(
            label,
            data=_deferred(res, kind, **kw),
            file_name=name,
            mime=mime,
            disabled=not enabled,
            key=f"nuc_dl_{kind}",
            on_click="ignore",
        )
    st.caption(
        "Which tool reads what: the label stack opens in Fiji with its pixel size, the "
        "OME-TIFF in napari, OMERO and QuPath with its physical pixel size; "
        "the CSVs in CellProfiler-style analysis (pandas, R, a spreadsheet); the ROI ZIP in "
        "Fiji's ROI Manager; the GeoJSON in QuPath (File > Import objects: one detection per "
        "nucleus, with its measurements); the TrackMate ZIP in TrackMate; the napari ZIP as a "
        "napari tracks layer."
    )
    if not tracked:
        st.caption("Track exports appear after tracking (Tracks tab).")
