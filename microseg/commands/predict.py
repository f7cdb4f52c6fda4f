"""``microseg predict``: class maps (and class probabilities) of images with a trained model.

For every input ``IMAGE`` the command writes ``DIR/<stem>_classes.tif`` (class 1..K per
pixel, uint8) and with ``--probabilities`` ``DIR/<stem>_probs.tif`` (float32, one
channel per class). Stacks are predicted frame by frame and slice by slice; the
outputs keep the input's T and Z axes. Provenance (microseg version, model file and
its SHA-256, class names) is stored in each TIFF's metadata.

Single-plane images over :data:`STREAM_ABOVE_PX` pixels, OME-Zarr inputs and every
input with ``--ome-zarr`` or ``--scheduler`` (tiles on a Dask cluster) are predicted
tile by tile (:mod:`microseg.tiled`) with the
memory of one tile: the results go to ``DIR/<stem>.ome.zarr`` (``--ome-zarr``) or a
scratch Zarr, and the TIFFs are written from there as tiled BigTIFFs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.segmenter import Segmenter


def stack_axes(image: MicroImage) -> str:
    """Axes of a per-plane output of ``image``: ``"YX"``, ``"TYX"``, ``"ZYX"`` or ``"TZYX"``."""
    return ("T" if image.n_frames > 1 else "") + ("Z" if image.n_slices > 1 else "") + "YX"


def iter_planes(image: MicroImage) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(t, z, frame)`` for every frame and slice; ``frame`` is ``(Y, X)`` or ``(C, Y, X)``."""
    for t in range(image.n_frames):
        for z in range(image.n_slices):
            yield t, z, image.frame(t, z)


def plane_label(image: MicroImage, t: int, z: int) -> str:
    """Human-readable position of a plane in a stack (empty for a 2-D image)."""
    parts = []
    if image.n_frames > 1:
        parts.append(f"frame {t + 1}/{image.n_frames}")
    if image.n_slices > 1:
        parts.append(f"slice {z + 1}/{image.n_slices}")
    return ", ".join(parts)


def load_model_arg(spec: str, progress: Callable[[str], None]) -> Segmenter:
    """Load ``--model`` (a file or ``builtin:NAME``), reporting what was loaded."""
    from microseg.segmenter import load_segmenter

    model = load_segmenter(spec)
    progress(f"model: {spec} ({model.metadata.get('kind', '?')}, task {model.task}, "
             f"classes {', '.join(model.classes)})")  # fmt: skip
    return model


def model_provenance(spec: str, model: Segmenter, **parameters: Any) -> dict[str, Any]:
    """Provenance record of an output made with ``model`` loaded from ``spec``."""
    from microseg.exports import provenance

    path: str | Path = spec
    if spec.startswith("builtin:"):
        from microseg.zoo import builtin_path

        path = builtin_path(spec.split(":", 1)[1])
    rec = provenance(path, parameters, model_kind=model.metadata.get("kind"), task=model.task,
                     classes=list(model.classes))  # fmt: skip
    rec["model"] = spec
    return rec


def read_input(path: Path) -> MicroImage:
    """Read one input image with a one-sentence error for a missing file."""
    from microseg.io import read_image

    if not Path(path).is_file():
        raise InputError(f"Input image {path} does not exist.")
    return read_image(path)


STREAM_ABOVE_PX = 8192 * 8192
"""Single-plane images with more pixels than this are predicted tile by tile."""


def streams(path: Path, ome_zarr: bool) -> bool:
    """Whether ``path`` is predicted tile by tile (see the module notes)."""
    from microseg.regions import is_ome_zarr

    if ome_zarr or is_ome_zarr(path):
        return True
    from microseg.io import read_header

    header = read_header(path)
    planes = 1
    for role, n in zip(header.roles, header.shape, strict=True):
        if role in "TZ?":
            planes *= n
    ny = header.shape[header.roles.index("Y")]
    nx = header.shape[header.roles.index("X")]
    return planes == 1 and ny * nx > STREAM_ABOVE_PX


def cmd_predict(args: argparse.Namespace, progress: Callable[[str], None]) -> dict:
    """Write ``<stem>_classes.tif`` (and ``<stem>_probs.tif``) for every input image."""
    from microseg.io import output_stems, write_tiff
    from microseg.regions import is_ome_zarr

    images = [Path(p) for p in args.images]
    for p in images:
        if not (p.is_file() or is_ome_zarr(p)):
            raise InputError(f"Input image {p} does not exist.")
    model = load_model_arg(args.model, progress)
    from microseg.io import output_folder

    out_dir = output_folder(args.out)
    k = len(model.classes)
    written: list[dict[str, Any]] = []
    stems = getattr(args, "stems", None) or output_stems(images)
    want_zarr = bool(getattr(args, "ome_zarr", False) or getattr(args, "scheduler", None))
    for path, stem in zip(images, stems, strict=True):
        if streams(path, want_zarr):
            written.append(predict_streamed(path, stem, model, args, out_dir, progress))
            continue
        image = read_input(path)
        h, w = image.shape_yx
        nt, nz = image.n_frames, image.n_slices
        classes = np.zeros((nt, nz, h, w), np.uint8)
        probs = np.zeros((nt, nz, k, h, w), np.float32) if args.probabilities else None
        for t, z, frame in iter_planes(image):
            where = plane_label(image, t, z)
            progress(f"{path.name}: predicting{' ' + where if where else ''} ...")
            p = np.asarray(model.predict_proba(frame), np.float32)
            if p.shape != (k, h, w):
                raise InputError(
                    f"The model returned probabilities of shape {p.shape} for a {h}x{w} image."
                )
            classes[t, z] = np.argmax(p, axis=0).astype(np.uint8) + 1
            if probs is not None:
                probs[t, z] = p
        axes = stack_axes(image)
        squeeze = tuple(i for i, n in enumerate((nt, nz)) if n == 1)
        prov = model_provenance(args.model, model, input=str(path),
                                probabilities=bool(args.probabilities))  # fmt: skip
        prov["values"] = {str(i + 1): name for i, name in enumerate(model.classes)}
        cpath = write_tiff(out_dir / f"{stem}_classes.tif", classes.squeeze(squeeze), axes,
                           pixel_size_um=image.pixel_size_um, metadata=prov,
                           compression="zlib")  # fmt: skip
        entry: dict[str, Any] = {"input": str(path), "classes": str(cpath)}
        if probs is not None:
            paxes = axes[:-2] + "CYX"
            ppath = write_tiff(out_dir / f"{stem}_probs.tif", probs.squeeze(squeeze), paxes,
                               pixel_size_um=image.pixel_size_um, metadata=prov,
                               compression="zlib")  # fmt: skip
            entry["probabilities"] = str(ppath)
        fractions = np.bincount(classes.ravel(), minlength=k + 1)[1:] / classes.size
        entry["area_fractions"] = {
            name: round(float(f), 6) for name, f in zip(model.classes, fractions, strict=True)
        }
        written.append(entry)
        progress(f"{path.name}: wrote {Path(cpath).name}")
    return {"model": args.model, "outputs": written}


def predict_streamed(
    path: Path,
    stem: str,
    model: Segmenter,
    args: argparse.Namespace,
    out_dir: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Predict one single-plane image tile by tile; the outputs of :func:`cmd_predict`
    (as tiled BigTIFFs) and, with ``--ome-zarr``, ``<stem>.ome.zarr``."""
    from microseg.io import write_tiled_tiff
    from microseg.omezarr import result_store
    from microseg.regions import describe, open_regions
    from microseg.tasks import class_colours
    from microseg.tiled import TILE, percent_progress, predict_tiled

    image = open_regions(path)
    progress(describe(image))
    keep_zarr = bool(getattr(args, "ome_zarr", False))
    k = len(model.classes)
    tile = int(getattr(args, "tile", None) or TILE)
    n_probs = k if args.probabilities else None
    with result_store(out_dir, stem, keep_zarr, image, n_classes=n_probs) as writer:
        progress(f"{path.name}: percentiles of the whole image ...")
        reference = image.percentile_sample()
        tiles_done = percent_progress(
            progress, path.name + ": predicted {done}/{total} tiles ({pct} %)"
        )

        scheduler = getattr(args, "scheduler", None)
        if scheduler:
            from microseg.tiled import predict_tiled_on_cluster

            counts = predict_tiled_on_cluster(
                scheduler,
                str(args.model),
                path,
                writer.classes_path,
                writer.probabilities_path,
                model=model,
                tile=tile,
                reference=reference,
                progress=tiles_done,
            )
        else:
            counts = predict_tiled(
                model,
                image,
                writer.classes,
                writer.probabilities,
                tile=tile,
                reference=reference,
                progress=tiles_done,
            )
        prov = model_provenance(
            args.model,
            model,
            input=str(path),
            probabilities=bool(args.probabilities),
            tile=tile,
            streamed=True,
        )
        prov["values"] = {str(i + 1): name for i, name in enumerate(model.classes)}
        entry: dict[str, Any] = {"input": str(path)}
        if keep_zarr:
            progress(f"{path.name}: writing the OME-Zarr pyramid ...")
            writer.copy_image(image)
            colors = class_colours(model.task, model.classes)
            writer.finish(model.classes, colors, image.pixel_size_um, stem, prov)
            entry["ome_zarr"] = str(writer.path)
        cpath = write_tiled_tiff(
            out_dir / f"{stem}_classes.tif", writer.classes, "YX", image.pixel_size_um, prov
        )
        entry["classes"] = str(cpath)
        if writer.probabilities is not None:
            ppath = write_tiled_tiff(
                out_dir / f"{stem}_probs.tif",
                writer.probabilities,
                "CYX",
                image.pixel_size_um,
                prov,
            )
            entry["probabilities"] = str(ppath)
    total = max(1, int(counts.sum()))
    entry["area_fractions"] = {
        name: round(float(c) / total, 6) for name, c in zip(model.classes, counts, strict=True)
    }
    entry["tiled"] = {"tile": tile, "read_by": image.access}
    if getattr(args, "scheduler", None):
        entry["tiled"]["scheduler"] = str(args.scheduler)
    progress(f"{path.name}: wrote {Path(entry['classes']).name}")
    return entry
