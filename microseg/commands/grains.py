"""``microseg grains``: grain maps, grain tables and ASTM E112 grain size of micrographs.

For every input ``IMAGE`` the command predicts the grain-boundary probability with
the model, turns it into a grain map (:func:`microseg.grains.grain_map`), measures
every grain and writes:

* ``DIR/<stem>_grains.tif`` — grain ids 1..N, boundary pixels 0 (uint16, uint32
  above 65535 grains); stacks keep their T and Z axes, ids are unique per plane;
* ``DIR/<stem>_grains.csv`` — one row per grain (``frame`` and ``slice`` columns
  for stacks), ``touches_border`` marks grains cut by the image edge; its
  provenance is in ``DIR/<stem>_grains.json``;
* ``DIR/<stem>_summary.json`` — n_grains, mean/median area and ECD, mean_intercept
  (Heyn, horizontal and vertical test lines over the whole image),
  astm_g_planimetric, astm_g_intercept, astm_g_mean_area with 95 % confidence
  intervals, unit ("um" or "px"; G values are null without a pixel size) and the
  provenance. For a stack, ``planes`` holds the summary of each frame/slice and the
  top-level values pool all planes as fields of one specimen (E112 §15).
  ``quality`` holds the verdict — ``verdict`` ("ok", "check", "do_not_trust"),
  ``reasons`` (one sentence each), ``notes``, ``next_steps`` and the numbers behind
  them in ``checks`` (:mod:`microseg.quality`; for a stack the worst plane's).

With ``--region Y0:Y1,X0:X1`` (or ``--drop-data-bar``, which finds the strip of text
and scale bar that SEM and camera software burn into the bottom or top of an image,
:func:`microseg.roi.find_data_bar`) only that part of each image is measured: the
grain map, the table's coordinates and the summary are in the region's pixels, and
the summary's ``region`` gives its rows and columns in the image.

With ``--specimen NAME`` every plane of every input is a field of one specimen, and
``DIR/NAME_specimen.json`` holds their pooled summary (G with the field-to-field
95 % CI) and one line per field.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from microseg.astm import pooled_summary, specimen_summary
from microseg.commands.predict import (
    iter_planes,
    load_model_arg,
    model_provenance,
    plane_label,
    read_input,
    stack_axes,
)
from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.roi import WHOLE_IMAGE, Region, parse_region, without_data_bar


def boundary_class_index(classes: Sequence[str]) -> int:
    """Index of the grain-boundary class among a model's class names.

    Raises
    ------
    InputError
        When no class is named like a boundary.
    """
    names = [str(c).lower() for c in classes]
    if "grain boundary" in names:
        return names.index("grain boundary")
    hits = [i for i, n in enumerate(names) if "boundar" in n]
    if hits:
        return hits[0]
    raise InputError(
        f"The model's classes ({', '.join(map(str, classes))}) have no grain boundary class; "
        "use a grains model (classes grain interior and grain boundary)."
    )


def _pixel_size(arg: float | None, image_ps: float | None) -> float | None:
    if arg is not None:
        from microseg.pixel_size import check_pixel_size

        return check_pixel_size(arg, "--pixel-size")
    return float(image_ps) if image_ps else None


def grain_map_options(args: argparse.Namespace) -> dict[str, Any]:
    """The grain-map settings of ``--threshold`` and ``--min-grain-area`` (checked)."""
    threshold = float(getattr(args, "threshold", 0.5))
    if not 0.0 < threshold < 1.0:
        raise InputError(f"--threshold must lie between 0 and 1, got {threshold:g}.")
    min_area = getattr(args, "min_grain_area", None)
    if min_area is not None and min_area < 1:
        raise InputError(f"--min-grain-area must be a positive number of pixels, got {min_area}.")
    return {"threshold": threshold, "min_grain_area_px": min_area}


def measurement_region(
    image: MicroImage, region: str | None, drop_data_bar: bool
) -> tuple[Region, str]:
    """The part of ``image`` to measure and where it came from: ``--region`` text,
    the image without its data bar (found on the first plane), or the whole image.
    Returns ``(region, source)``, source one of ``"--region"``, ``"the data bar at
    the bottom (rows 896-959) left out"``, ``"whole image"``; ``region`` wins over
    ``drop_data_bar``."""
    if region:
        return parse_region(region, image.shape_yx), "--region"
    if drop_data_bar:
        found, bar = without_data_bar(image.frame(0, 0))
        if bar is not None:
            return found, bar.left_out
    return Region.full(image.shape_yx), WHOLE_IMAGE


def measure_plane(
    boundary: np.ndarray, pixel_size: float | None, **grain_map_kw: Any
) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Grain map, grain table and summary of one boundary-probability plane
    (``grain_map_kw`` go to :func:`microseg.grains.grain_map`)."""
    from microseg.astm import grain_summary
    from microseg.grains import grain_map
    from microseg.measure import grain_table

    labels = grain_map(boundary, **grain_map_kw)
    table = grain_table(labels, pixel_size_um=pixel_size)
    summary = grain_summary(labels, pixel_size_um=pixel_size)
    return labels, table, dict(summary)


def cmd_grains(args: argparse.Namespace, progress: Callable[[str], None]) -> dict:
    """Write the grain map, grain table and summary of every input image; each summary
    carries its quality verdict (:mod:`microseg.quality`)."""
    from microseg.exports import write_table_csv
    from microseg.io import jsonable, output_folder, output_stems, write_tiff
    from microseg.quality import VERDICT_TEXT, combine, grain_quality, model_unfamiliarity
    from microseg.regions import is_ome_zarr

    images = [Path(p) for p in args.images]
    for p in images:
        if not (p.is_file() or is_ome_zarr(p)):
            raise InputError(f"Input image {p} does not exist.")
    if args.pixel_size is not None:
        _pixel_size(args.pixel_size, None)
    options = grain_map_options(args)
    augment = bool(getattr(args, "augment", False))
    region_arg = getattr(args, "region", None)
    drop_bar = bool(getattr(args, "drop_data_bar", False))
    if region_arg and drop_bar:
        raise InputError("Give --region or --drop-data-bar, not both.")
    model = load_model_arg(args.model, progress)
    bidx = boundary_class_index(model.classes)
    if augment and model.metadata.get("kind") != "unet":
        raise InputError("Test-time augmentation needs a deep-learning (U-Net) model.")
    predict_kw = {"augment": True} if augment else {}
    specimen = _specimen_name(getattr(args, "specimen", None))
    out_dir = output_folder(args.out)
    results: list[dict[str, Any]] = []
    fields: list[tuple[str, dict, pd.DataFrame, float | None]] = []
    stems = getattr(args, "stems", None) or output_stems(images)
    want_tiles = bool(getattr(args, "ome_zarr", False))
    for path, stem in zip(images, stems, strict=True):
        from microseg.commands.predict import streams

        if streams(path, want_tiles):
            if region_arg or drop_bar:
                raise InputError(
                    f"{path.name} is measured tile by tile, over the whole image; --region and "
                    "--drop-data-bar are not available there (crop the image first)."
                )
            entry, field = grains_tiled_file(
                path, stem, model, bidx, args, options, out_dir, progress
            )
            results.append(entry)
            fields.append(field)
            continue
        image = read_input(path)
        ps = _pixel_size(args.pixel_size, image.pixel_size_um)
        region, region_source = measurement_region(image, region_arg, drop_bar)
        if region_source != WHOLE_IMAGE:
            progress(f"{path.name}: measuring {region.describe()} ({region_source})")
        h, w = region.shape
        nt, nz = image.n_frames, image.n_slices
        stack = nt * nz > 1
        maps = np.zeros((nt, nz, h, w), np.uint32)
        tables, summaries, qualities = [], [], []
        for t, z, frame in iter_planes(image):
            where = plane_label(image, t, z)
            progress(f"{path.name}: grains{' of ' + where if where else ''} ...")
            crop = region.crop(frame)
            proba = np.asarray(model.predict_proba(crop, **predict_kw), np.float32)
            labels, table, summary = measure_plane(proba[bidx], ps, **options)
            quality = grain_quality(labels, summary, proba[bidx], ps,
                                    unfamiliarity=model_unfamiliarity(model, crop))  # fmt: skip
            qualities.append(quality)
            summary["quality"] = quality.to_json()
            maps[t, z] = labels
            if stack:
                table.insert(0, "slice", z)
                table.insert(0, "frame", t)
                summary = {"frame": t, "slice": z, **summary}
            tables.append(table)
            summaries.append(summary)
            fields.append((f"{path.name}{' ' + where if where else ''}", summary, table, ps))
        table = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
        summary = pooled_summary(summaries, table, ps) if stack else dict(summaries[0])
        if stack:
            summary["planes"] = summaries
            summary["quality"] = combine(qualities).to_json()
        verdict = summary["quality"]
        where_measured = region.record(region_source, image.shape_yx)
        prov = model_provenance(args.model, model, input=str(path), pixel_size_um=ps,
                                pixel_size_source="--pixel-size" if args.pixel_size is not None
                                else (_file_source(image.metadata) if ps else None),
                                grain_map={"function": "microseg.grains.grain_map", **options},
                                test_time_augmentation=augment,
                                region=where_measured)  # fmt: skip
        summary["region"] = where_measured
        top = int(maps.max())
        dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
        squeeze = tuple(i for i, n in enumerate((nt, nz)) if n == 1)
        gpath = write_tiff(out_dir / f"{stem}_grains.tif", maps.astype(dtype).squeeze(squeeze),
                           stack_axes(image), pixel_size_um=ps, metadata=prov,
                           compression="zlib")  # fmt: skip
        cpath, _ = write_table_csv(table, out_dir / f"{stem}_grains.csv", prov)
        written = {"input": str(path), "grains": str(gpath), "table": str(cpath)}
        if getattr(args, "geojson", False):
            from microseg.geojson import GRAIN_COLOR, write_geojson

            written["geojson"] = str(write_geojson(
                out_dir / f"{stem}.geojson", maps.squeeze(squeeze), class_name="Grain",
                color=GRAIN_COLOR, table=table, axes=stack_axes(image),
                offset=(region.y0, region.x0), provenance=prov,
            ))  # fmt: skip
        summary["provenance"] = prov
        spath = out_dir / f"{stem}_summary.json"
        spath.write_text(json.dumps(jsonable(summary), indent=1), encoding="utf-8")
        g_p, g_i = summary.get("astm_g_planimetric"), summary.get("astm_g_intercept")
        progress(
            f"{path.name}: {summary['n_grains']} grains"
            + (f", G planimetric {g_p:.2f}, G intercept {g_i:.2f}" if g_p and g_i else "")
            + f"; quality: {VERDICT_TEXT[verdict['verdict']]}"
            + "".join(f"\n  - {r}" for r in verdict["reasons"])
        )
        results.append({
            **written, "summary": str(spath),
            "n_grains": summary["n_grains"], "astm_g_planimetric": g_p, "astm_g_intercept": g_i,
            "quality": verdict,
        })  # fmt: skip
    out: dict[str, Any] = {"model": args.model, "outputs": results}
    if specimen:
        prov = model_provenance(args.model, model, inputs=[str(p) for p in images],
                                grain_map={"function": "microseg.grains.grain_map", **options},
                                test_time_augmentation=augment)  # fmt: skip
        path = out_dir / f"{specimen}_specimen.json"
        rec = {**specimen_summary(fields), "provenance": prov}
        path.write_text(json.dumps(jsonable(rec), indent=1), encoding="utf-8")
        out["specimen"] = str(path)
        progress(f"specimen {specimen}: {len(fields)} field(s) written to {path.name}")
    return out


def grains_tiled_file(
    path: Path,
    stem: str,
    model: Any,
    bidx: int,
    args: argparse.Namespace,
    options: dict[str, Any],
    out_dir: Path,
    progress: Callable[[str], None],
) -> tuple[dict[str, Any], tuple[str, dict, pd.DataFrame, float | None]]:
    """``microseg grains`` on a single-plane image read by region, tile by tile
    (:mod:`microseg.tiled_grains`): ``<stem>_grains.tif`` (tiled BigTIFF, uint32),
    ``<stem>_grains.csv``, ``<stem>_summary.json`` and, with ``--ome-zarr``,
    ``<stem>.ome.zarr`` (the image and ``labels/grains``). The quality verdict is
    taken on the central window; no GeoJSON is written. Returns the result entry
    and the specimen field."""
    from microseg.astm import grain_summary
    from microseg.exports import write_table_csv
    from microseg.io import jsonable, write_tiled_tiff
    from microseg.omezarr import result_store
    from microseg.quality import VERDICT_TEXT, grain_quality, model_unfamiliarity
    from microseg.regions import describe, open_regions
    from microseg.tiled_grains import grains_tiled

    if getattr(args, "augment", False):
        raise InputError(
            "Test-time augmentation is not available tile by tile; leave out --augment."
        )
    image = open_regions(path)
    progress(describe(image))
    ps = _pixel_size(args.pixel_size, image.pixel_size_um)
    keep = bool(getattr(args, "ome_zarr", False))
    tile = int(getattr(args, "tile", None) or 1024)
    written: dict[str, Any] = {"input": str(path)}
    kw = {"label_name": "grains", "label_dtype": np.uint32}
    with result_store(out_dir, stem, keep, image, **kw) as writer:
        found, summary, settings, centre = grains_tiled(
            model,
            image,
            bidx,
            writer.classes,
            out_dir / f".{stem}.probabilities.zarr",
            ps,
            options=options,
            tile=tile,
            progress=progress,
        )
        prov = model_provenance(
            args.model,
            model,
            input=str(path),
            pixel_size_um=ps,
            pixel_size_source="--pixel-size"
            if args.pixel_size is not None
            else (_file_source(image.metadata) if ps else None),
            grain_map={"function": "microseg.grains.grain_map", **settings},
            tiled=True,
            region=None,
        )
        if keep:
            progress(f"{path.name}: writing the OME-Zarr pyramid ...")
            writer.copy_image(image)
            writer.finish([], [], ps, stem, prov)
            written["ome_zarr"] = str(writer.path)
        written["grains"] = str(
            write_tiled_tiff(out_dir / f"{stem}_grains.tif", writer.classes, "YX", ps, prov)
        )
    centre_frame = centre["image"][0] if centre["image"].shape[0] == 1 else centre["image"]
    centre_summary = grain_summary(centre["labels"], pixel_size_um=ps)
    quality = grain_quality(
        centre["labels"],
        centre_summary,
        centre["proba"],
        ps,
        unfamiliarity=model_unfamiliarity(model, centre_frame),
    )
    table = found.table
    cpath, _ = write_table_csv(table, out_dir / f"{stem}_grains.csv", prov)
    written["table"] = str(cpath)
    summary["quality"] = quality.to_json()
    summary["tiled"] = {
        "windows": found.windows,
        "margin_px": settings["margin_px"],
        "cut_by_margin": found.cut,
        "read_by": image.access,
        "quality_measured_on": "the central window",
    }
    summary["region"] = None
    summary["provenance"] = prov
    spath = out_dir / f"{stem}_summary.json"
    spath.write_text(json.dumps(jsonable(summary), indent=1), encoding="utf-8")
    g_p, g_i = summary.get("astm_g_planimetric"), summary.get("astm_g_intercept")
    verdict = summary["quality"]
    progress(
        f"{path.name}: {summary['n_grains']} grains"
        + (f", G planimetric {g_p:.2f}, G intercept {g_i:.2f}" if g_p and g_i else "")
        + f"; quality: {VERDICT_TEXT[verdict['verdict']]}"
        + "".join(f"\n  - {r}" for r in verdict["reasons"])
    )
    entry = {
        **written,
        "summary": str(spath),
        "n_grains": summary["n_grains"],
        "astm_g_planimetric": g_p,
        "astm_g_intercept": g_i,
        "quality": verdict,
    }
    return entry, (path.name, summary, table, ps)


def _file_source(metadata: dict) -> str:
    """``file`` and the metadata the pixel size was read from, e.g. ``file (FEI SEM)``."""
    src = (metadata or {}).get("pixel_size_source")
    return f"file ({src})" if src else "file"


def _specimen_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not name.strip() or any(c in name for c in '/\\:*?"<>|'):
        raise InputError(f"--specimen must be a plain name (no path characters), got '{name}'.")
    return name.strip()
