"""``microseg nuclei``: nuclei instances, measurements and tracks of images and time series.

For every input the command writes, in ``--out``:

* ``<stem>_labels.tif`` — instance labels with the input's Y/X (and T, Z) shape,
  0 = background, ids unique per frame; with ``--track`` the id of a nucleus is its
  track id in every frame. Provenance is stored in the TIFF metadata.
* ``<stem>_objects.csv`` — one row per nucleus: ``frame`` (0-based; 0 for a 2-D
  image), ``label`` (its id in the label image), ``y, x`` (centroid, pixels),
  ``area_px``, ``area_um2`` (empty without a pixel size), ``mean_intensity``,
  ``touches_border`` and further measurements.
* ``<stem>_frames.csv`` — one row per frame: count, mean area, mean intensity.
* ``<stem>_summary.json`` — counts and the quality verdict (``"quality"``:
  ``verdict``, ``reasons``, ``checks``; :mod:`microseg.quality`), with the provenance.
* with ``--track``: ``<stem>_tracks.csv`` (``track_id, frame, label,
  parent_track_id, y, x``), ``<stem>_track_summary.csv`` (one row per track),
  ``<stem>_tracks_trackmate.csv`` (+ ``_edges.csv``) and ``<stem>_tracks_napari.csv``
  (+ ``_graph.json``).

Every CSV has a sidecar ``<name>.json`` with the provenance (microseg version,
model file and its SHA-256, parameters). The pipeline itself (model, instances,
measurements, tracks) is :mod:`microseg.nuclei`; this module reads the inputs and
writes the files.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.nuclei import (
    FrameMeasurer,
    FrameSegmenter,
    NucleiRun,
    default_workers,
    empty_objects,
    run_nuclei,
)
from microseg.quality import Quality
from microseg.segmenter import Segmenter


def write_outputs(
    run: NucleiRun,
    image: MicroImage,
    out_dir: Path,
    stem: str,
    pixel_size_um: float | None,
    prov: dict[str, Any],
    geojson: bool = False,
) -> dict[str, str]:
    """Write the label TIFF, the CSVs and their provenance sidecars (``geojson``: also
    ``<stem>.geojson``, one QuPath detection per nucleus); returns the paths."""
    from microseg.commands.predict import stack_axes
    from microseg.exports import (
        write_table_csv,
        write_tracks_napari_csv,
        write_tracks_trackmate_csv,
    )
    from microseg.io import output_folder, write_tiff

    output_folder(out_dir)
    squeeze = tuple(i for i, n in enumerate(run.labels.shape[:2]) if n == 1)
    labels = run.labels.squeeze(squeeze)
    written: dict[str, str] = {}
    lab_prov = dict(
        prov,
        values="0 = background, 1..N = nuclei"
        + (" (id = track id)" if run.tracks is not None else ""),
    )
    written["labels"] = str(
        write_tiff(
            out_dir / f"{stem}_labels.tif",
            labels,
            stack_axes(image),
            pixel_size_um=pixel_size_um,
            metadata=lab_prov,
            compression="zlib",
        )
    )
    csv_prov = dict(prov, units={"y, x": "pixel", "area_px": "pixel²", "area_um2": "µm²"})
    written["objects"] = str(
        write_table_csv(run.objects, out_dir / f"{stem}_objects.csv", csv_prov)[0]
    )
    written["frames"] = str(write_table_csv(run.frames, out_dir / f"{stem}_frames.csv", prov)[0])
    if geojson:
        from microseg.geojson import NUCLEUS_COLOR, write_geojson

        written["geojson"] = str(
            write_geojson(
                out_dir / f"{stem}.geojson",
                labels,
                class_name="Nucleus",
                color=NUCLEUS_COLOR,
                table=run.objects,
                axes=stack_axes(image),
                provenance=lab_prov,
            )
        )
    if run.tracks is not None:
        tprov = dict(prov, tracking=run.track_params or {})
        written["tracks"] = str(
            write_table_csv(run.tracks, out_dir / f"{stem}_tracks.csv", tprov)[0]
        )
        if run.track_summary is not None:
            written["track_summary"] = str(
                write_table_csv(run.track_summary, out_dir / f"{stem}_track_summary.csv", tprov)[0]
            )
        if len(run.tracks) and image.n_slices == 1:
            table = run.objects.drop(columns=["track_id"], errors="ignore")
            links = run.tracks[["track_id", "frame", "label", "parent_track_id"]]
            tm = write_tracks_trackmate_csv(
                links,
                table,
                out_dir / f"{stem}_tracks_trackmate.csv",
                pixel_size_um=pixel_size_um,
                provenance=tprov,
            )
            written["trackmate"] = str(tm[0])
            written["napari"] = str(
                write_tracks_napari_csv(links, table, out_dir / f"{stem}_tracks_napari.csv")[0]
            )
    return written


def process_file(
    path: Path,
    model: Segmenter,
    model_spec: str,
    out_dir: Path,
    *,
    pixel_size_um: float | None = None,
    channel: int | None = None,
    track: bool = False,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
    temporal: bool = True,
    augment: bool = False,
    object_diameter_px: float | str | None = "auto",
    threshold: float | None = None,
    h_fraction: float | None = None,
    stem: str | None = None,
    geojson: bool = False,
    ome_zarr: bool = False,
    tile: int | None = None,
) -> dict[str, Any]:
    """Run ``microseg nuclei`` on one input file; returns a summary of what was written
    (``stem``: of the output names, by default the file's :func:`microseg.io.image_stem`;
    ``geojson``: also write ``<stem>.geojson`` for QuPath; ``ome_zarr``: tile by tile,
    see :func:`process_file_tiled`)."""
    from microseg.commands.predict import model_provenance, read_input
    from microseg.io import image_stem

    report = progress or (lambda msg: None)
    from microseg.commands.predict import streams

    if streams(Path(path), ome_zarr):
        if track:
            raise InputError(
                f"{Path(path).name} is processed tile by tile (one plane), so it has no frames "
                "to track; leave out --track."
            )
        return process_file_tiled(
            Path(path),
            model,
            model_spec,
            Path(out_dir),
            pixel_size_um=pixel_size_um,
            channel=channel,
            progress=report,
            augment=augment,
            object_diameter_px=object_diameter_px,
            threshold=threshold,
            h_fraction=h_fraction,
            stem=stem,
            ome_zarr=ome_zarr,
            tile=tile,
        )
    image = read_input(Path(path))
    ps, segmenter = _checked_settings(
        Path(path).name,
        image.n_channels,
        image.pixel_size_um,
        model,
        channel,
        pixel_size_um,
        augment,
        object_diameter_px,
        threshold,
        h_fraction,
    )
    measurer = FrameMeasurer(ps)
    report(
        f"{Path(path).name}: {image.n_frames} frame(s), {image.n_slices} slice(s), "
        f"{image.shape_yx[1]}x{image.shape_yx[0]} px, pixel size "
        f"{f'{ps:.4g} µm' if ps else 'unknown'}"
    )
    run = run_nuclei(
        image,
        segmenter,
        measurer,
        track=track,
        progress=report,
        workers=workers or default_workers(),
        temporal=temporal,
    )
    params = dict(
        segmenter.settings(),
        pixel_size_um=ps,
        track=bool(track),
        temporal_consistency=bool(temporal) and image.n_frames >= 3,
        pixel_size_source="--pixel-size"
        if pixel_size_um
        else image.metadata.get("pixel_size_source"),
    )
    prov = model_provenance(model_spec, model, input=str(path), **params)
    stem = stem or image_stem(path)
    written = write_outputs(run, image, Path(out_dir), stem, ps, prov, geojson=geojson)
    n = len(run.objects)
    counts = run.frames["count"].to_numpy() if len(run.frames) else np.zeros(0)
    report(f"{Path(path).name}: {n} nuclei in {len(run.frames)} frame(s)")
    summary: dict[str, Any] = {
        "input": str(path),
        "frames": int(image.n_frames),
        "nuclei": int(n),
        "mean_per_frame": round(float(counts.mean()), 3) if counts.size else 0.0,
        "outputs": written,
    }
    if run.tracks is not None:
        summary["tracks"] = int(run.tracks["track_id"].nunique()) if len(run.tracks) else 0
    quality = run_quality(run, image, segmenter, ps)
    summary["quality"] = quality.to_json()
    report(
        f"{Path(path).name}: quality: {quality.label}"
        + "".join(f"\n  - {r}" for r in quality.reasons)
    )
    return write_summary(summary, prov, Path(out_dir), stem)


def process_file_tiled(
    path: Path,
    model: Segmenter,
    model_spec: str,
    out_dir: Path,
    *,
    pixel_size_um: float | None = None,
    channel: int | None = None,
    progress: Callable[[str], None] | None = None,
    augment: bool = False,
    object_diameter_px: float | str | None = "auto",
    threshold: float | None = None,
    h_fraction: float | None = None,
    stem: str | None = None,
    ome_zarr: bool = False,
    tile: int | None = None,
) -> dict[str, Any]:
    """``microseg nuclei`` on a single-plane image read by region, window by window
    (:func:`microseg.nuclei.segment_tiled`): ``<stem>_labels.tif`` (tiled BigTIFF,
    uint32), the object and frame tables, the summary and, with ``ome_zarr``,
    ``<stem>.ome.zarr`` (the image and ``labels/nuclei``). The quality verdict is
    taken on the central window; no GeoJSON is written."""
    from microseg.commands.predict import model_provenance
    from microseg.exports import write_table_csv
    from microseg.io import image_stem, output_folder, write_tiled_tiff
    from microseg.nuclei import CENTRAL_WINDOW, frame_table, segment_tiled
    from microseg.omezarr import result_store
    from microseg.regions import central_window, describe, open_regions
    from microseg.tiled import percent_progress

    report = progress or (lambda msg: None)
    image = open_regions(path)
    report(describe(image))
    ps, segmenter = _checked_settings(
        path.name,
        image.n_channels,
        image.pixel_size_um,
        model,
        channel,
        pixel_size_um,
        augment,
        object_diameter_px,
        threshold,
        h_fraction,
    )
    stem = stem or image_stem(path)
    out_dir = output_folder(out_dir)
    windows_done = percent_progress(report, path.name + ": {done}/{total} windows ({pct} %)")

    written: dict[str, str] = {}
    kw = {"label_name": "nuclei", "label_dtype": np.uint32}
    with result_store(out_dir, stem, ome_zarr, image, **kw) as writer:
        found, settings = segment_tiled(
            image, segmenter, writer.classes, ps, tile=int(tile or 1024), progress=windows_done
        )
        params = dict(
            settings,
            pixel_size_um=ps,
            track=False,
            tiled=True,
            pixel_size_source="--pixel-size"
            if pixel_size_um
            else image.metadata.get("pixel_size_source"),
        )
        prov = model_provenance(model_spec, model, input=str(path), **params)
        lab_prov = dict(prov, values="0 = background, 1..N = nuclei")
        if ome_zarr:
            report(f"{path.name}: writing the OME-Zarr pyramid ...")
            writer.copy_image(image)
            writer.finish([], [], ps, stem, lab_prov)
            written["ome_zarr"] = str(writer.path)
        written["labels"] = str(
            write_tiled_tiff(out_dir / f"{stem}_labels.tif", writer.classes, "YX", ps, lab_prov)
        )
        # the quality verdict of the central window (the whole image is not in memory)
        ys, xs = central_window(image.shape_yx, CENTRAL_WINDOW)
        centre = image.read(ys, xs)
        centre = centre[0] if centre.shape[0] == 1 else centre
        quality = _central_quality(np.asarray(writer.classes[ys, xs]), centre, segmenter, ps)
    table = found.table if len(found.table) else empty_objects()
    csv_prov = dict(prov, units={"y, x": "pixel", "area_px": "pixel²", "area_um2": "µm²"})
    written["objects"] = str(write_table_csv(table, out_dir / f"{stem}_objects.csv", csv_prov)[0])
    frames = frame_table(table, [0])
    written["frames"] = str(write_table_csv(frames, out_dir / f"{stem}_frames.csv", prov)[0])
    report(
        f"{path.name}: {found.n_objects} nuclei in {found.windows} windows"
        + (f"; {found.cut} larger than the {settings['margin_px']} px margin" if found.cut else "")
    )
    summary: dict[str, Any] = {
        "input": str(path),
        "frames": 1,
        "nuclei": int(found.n_objects),
        "mean_per_frame": float(found.n_objects),
        "outputs": written,
        "tiled": {
            "windows": found.windows,
            "margin_px": settings["margin_px"],
            "cut_by_margin": found.cut,
            "read_by": image.access,
            "quality_measured_on": f"the central {CENTRAL_WINDOW} px window",
        },
        "quality": quality.to_json(),
    }
    return write_summary(summary, prov, out_dir, stem)


def write_summary(summary: dict[str, Any], prov: dict, out_dir: Path, stem: str) -> dict[str, Any]:
    """Write ``<stem>_summary.json`` (the summary without its output paths, with the
    provenance) and add its path to ``summary["outputs"]``."""
    from microseg.io import jsonable

    spath = out_dir / f"{stem}_summary.json"
    record = {k: v for k, v in summary.items() if k != "outputs"}
    spath.write_text(
        json.dumps(jsonable({**record, "provenance": prov}), indent=1), encoding="utf-8"
    )
    summary["outputs"]["summary"] = str(spath)
    return summary


def _checked_settings(
    name: str,
    n_channels: int,
    image_pixel_size: float | None,
    model: Segmenter,
    channel: int | None,
    pixel_size_um: float | None,
    augment: bool,
    object_diameter_px: float | str | None,
    threshold: float | None,
    h_fraction: float | None,
) -> tuple[float | None, FrameSegmenter]:
    """The pixel size to measure with and the frame segmenter, after checking the
    channel and the pixel size against the image."""
    if channel is not None and not 0 <= int(channel) < n_channels:
        raise InputError(
            f"--channel {channel} does not exist; {name} has {n_channels} channel(s) (0-based)."
        )
    if pixel_size_um is not None:
        from microseg.pixel_size import check_pixel_size

        pixel_size_um = check_pixel_size(pixel_size_um, "--pixel-size")
    ps = float(pixel_size_um) if pixel_size_um else image_pixel_size
    segmenter = FrameSegmenter(
        model,
        channel=channel,
        augment=augment,
        object_diameter_px=object_diameter_px,
        threshold=threshold,
        h_fraction=h_fraction,
    )
    return ps, segmenter


def _central_quality(
    labels: np.ndarray, frame: np.ndarray, segmenter: FrameSegmenter, pixel_size_um: float | None
) -> Quality:
    from microseg.quality import model_unfamiliarity, nuclei_quality

    x = segmenter.model_input(frame)
    u = model_unfamiliarity(segmenter.model, x, zoom=segmenter.network_zoom(labels))
    diameter = None
    if segmenter.object_diameter_px is None:
        diameter = segmenter.model.metadata.get("object_diameter_px")
    return nuclei_quality(
        labels, model_diameter_px=diameter, pixel_size_um=pixel_size_um, unfamiliarity=u, image=x
    )


def run_quality(
    run: NucleiRun, image: MicroImage, segmenter: FrameSegmenter, pixel_size_um: float | None
) -> Quality:
    """The worst quality verdict over the frames and slices of a run
    (:func:`microseg.quality.nuclei_quality`); how unfamiliar the image is to the model
    is measured on the first, middle and last frame."""
    from microseg.quality import combine, model_unfamiliarity, nuclei_quality

    nt = run.labels.shape[0]
    probe = sorted({0, nt // 2, nt - 1})
    unfam = [model_unfamiliarity(segmenter.model, segmenter.model_input(image.frame(t)),
                                 zoom=segmenter.network_zoom(run.labels[t, 0]))
             for t in probe]  # fmt: skip
    known = [u for u in unfam if u is not None]
    u = max(known) if known else None
    diameter = None
    if segmenter.object_diameter_px is None:  # no rescaling: sizes should match training
        diameter = segmenter.model.metadata.get("object_diameter_px")
    per_plane = [
        nuclei_quality(
            run.labels[t, z],
            model_diameter_px=diameter,
            pixel_size_um=pixel_size_um,
            unfamiliarity=u,
            image=segmenter.model_input(image.frame(t, z)),
        )  # fmt: skip
        for t in range(nt)
        for z in range(run.labels.shape[1])
    ]
    return combine(per_plane)


def _diameter_arg(value: str | None) -> float | str | None:
    """``--diameter``: "auto" (default), "none" or a positive number of pixels."""
    text = "auto" if value is None else str(value).strip().lower()
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        d = float(text)
    except ValueError:
        d = float("nan")
    if not np.isfinite(d) or d <= 0:
        raise InputError(
            f"--diameter must be a positive number of pixels, 'auto' or 'none', got {value}."
        )
    return d


def cmd_nuclei(args: argparse.Namespace, progress: Callable[[str], None]) -> dict:
    """Write labels, object and frame tables (and tracks) for every input."""
    from microseg.commands.predict import load_model_arg
    from microseg.io import output_stems
    from microseg.regions import is_ome_zarr

    images = [Path(p) for p in args.images]
    for p in images:
        if not (p.is_file() or is_ome_zarr(p)):
            raise InputError(f"Input image {p} does not exist.")
    if args.pixel_size is not None:
        from microseg.pixel_size import check_pixel_size

        check_pixel_size(args.pixel_size, "--pixel-size")
    if args.channel is not None and args.channel < 0:
        raise InputError("--channel must be 0 or a positive channel index.")
    model = load_model_arg(args.model, progress)
    if model.task != "nuclei" and "nucleus" not in [c.lower() for c in model.classes]:
        raise InputError(
            f"{args.model} is a {model.task} model without a 'nucleus' class; give a nuclei model."
        )
    results = [
        process_file(
            path,
            model,
            args.model,
            Path(args.out),
            pixel_size_um=args.pixel_size,
            channel=args.channel,
            track=bool(args.track),
            progress=progress,
            temporal=not getattr(args, "independent_frames", False),
            augment=bool(getattr(args, "augment", False)),
            object_diameter_px=_diameter_arg(getattr(args, "diameter", None)),
            threshold=getattr(args, "threshold", None),
            h_fraction=getattr(args, "split_depth", None),
            stem=stem,
            geojson=bool(getattr(args, "geojson", False)),
            ome_zarr=bool(getattr(args, "ome_zarr", False)),
            tile=getattr(args, "tile", None),
        )
        for path, stem in zip(images, output_stems(images), strict=True)
    ]
    return {"model": args.model, "outputs": results}
