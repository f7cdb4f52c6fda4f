"""The ``microseg`` command line: the same engine as the app, for scripts and batch jobs.

Progress goes to stderr. Errors: one sentence on stderr; exit status 2 for bad
input or arguments, 1 for anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from microseg import __version__
from microseg.errors import InputError

EPILOG = """\
label conventions:
  strokes (--labels)  0 = unlabelled, k = class k (1..K). nuclei: 1 background, 2 nucleus,
                      3 border (optional); grains: 1 grain interior, 2 grain boundary
  masks (--masks)     nuclei: instance labels (0 = background); grains: nonzero = boundary
  outputs             class maps 1..K; instance/grain labels 0 = background/boundary, 1..N objects
                      (uint16, uint32 when N > 65535)
exit status: 0 success, 2 bad input or arguments, 1 anything else
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with one sentence
        self.print_usage(sys.stderr)
        print(f"microseg: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def progress(msg: str) -> None:
    """Write one progress line to stderr."""
    print(msg, file=sys.stderr, flush=True)


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="microseg",
        description="AI segmentation for microscopy: train a random forest or a U-Net from "
        "strokes or masks, segment nuclei and grains, measure and track.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"microseg {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model from images and strokes or dense masks")
    t.add_argument("--method", choices=["rf", "unet"], required=True)
    t.add_argument("--task", choices=["nuclei", "grains", "semantic"], required=True)
    t.add_argument("--out", required=True, type=Path, help="model file to write (.safetensors)")
    t.add_argument("--images", nargs="+", required=True, type=Path)
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--labels", nargs="+", type=Path, help="stroke label images, one per image")
    g.add_argument(
        "--masks",
        nargs="+",
        type=Path,
        help="dense ground-truth masks, one per image: label images (PNG/TIFF, NumPy .npy, "
        "ilastik HDF5 .h5), QuPath GeoJSON (.geojson) or ImageJ ROIs (RoiSet .zip, .roi); "
        "outlines become objects, lines grain boundaries",
    )
    t.add_argument("--classes", help="comma-separated class names (semantic task)")
    t.add_argument(
        "--init",
        default=None,
        help="unet start: MODEL file, builtin:NAME, or none (default: the task's built-in model)",
    )
    t.add_argument("--seconds", type=float, default=120.0, help="unet training budget (s)")
    t.add_argument("--seed", type=int, default=0)

    pr = sub.add_parser(
        "predict",
        help="class maps (and probabilities) for images",
        description="Writes DIR/<stem>_classes.tif (classes 1..K); with --probabilities also "
        "DIR/<stem>_probs.tif (float32, K x Y x X). Stacks are processed frame by frame. "
        "Images over 8192 x 8192 pixels, OME-Zarr folders and every input with --ome-zarr are "
        "predicted tile by tile in the memory of one tile (TIFF outputs as tiled BigTIFF).",
    )
    pr.add_argument("--model", required=True, help="MODEL file or builtin:NAME")
    pr.add_argument("--out", required=True, type=Path)
    pr.add_argument("--probabilities", action="store_true", help="also write <stem>_probs.tif")
    pr.add_argument(
        "--ome-zarr",
        action="store_true",
        help="also write DIR/<stem>.ome.zarr (the image, labels/classes and, with "
        "--probabilities, probabilities, as multiscale pyramids); predicts tile by tile",
    )
    pr.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="PX",
        help="tile side for tiled prediction (default 1024)",
    )
    pr.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="predict the tiles on a Dask cluster (the model, inputs and DIR at the same "
        "paths on its workers); tiles are whole 512-px chunks",
    )
    pr.add_argument("images", nargs="+", type=Path, metavar="IMAGE")

    n = sub.add_parser(
        "nuclei",
        help="nuclei instances, measurements and (optional) tracks",
        description="Writes DIR/<stem>_labels.tif (same Y/X and T shape as the input; ids "
        "unique per frame, track ids with --track), DIR/<stem>_objects.csv (frame, label, y, x, "
        "area_px, area_um2, mean_intensity, touches_border, ...), DIR/<stem>_frames.csv (one row "
        "per frame) and, with --track, DIR/<stem>_tracks.csv (track_id, frame, label, "
        "parent_track_id) plus TrackMate and napari track files. Each CSV has a JSON sidecar "
        "with provenance.",
    )
    n.add_argument("--model", required=True, help="MODEL file or builtin:nuclei")
    n.add_argument("--out", required=True, type=Path)
    n.add_argument("--pixel-size", type=float, default=None, help="µm per pixel")
    n.add_argument("--channel", type=int, default=None, help="channel to segment (0-based)")
    n.add_argument(
        "--ome-zarr",
        action="store_true",
        help="single-plane images tile by tile: also write DIR/<stem>.ome.zarr (the image and "
        "labels/nuclei); images over 8192 x 8192 px and OME-Zarr folders go this way on their own",
    )
    n.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="PX",
        help="core side of the windows of a tiled run (default 1024)",
    )
    n.add_argument("--track", action="store_true", help="link nuclei across frames")
    n.add_argument(
        "--diameter",
        default="auto",
        metavar="PX|auto|none",
        help="typical nucleus diameter in pixels: the image is rescaled to the size the "
        "model was trained at (models that record it, such as builtin:nuclei: 19.5 px); "
        "'auto' (default) measures it and rescales when it differs by more than 1.5x; "
        "'none' runs the image as it is",
    )
    n.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="foreground probability threshold of the nuclei (default: the one the model "
        "records, chosen on validation images; 0.8 for builtin:nuclei; else 0.5)",
    )
    n.add_argument(
        "--split-depth",
        type=float,
        default=None,
        metavar="FRACTION",
        help="touching nuclei are cut at a neck only where it is narrower than both sides "
        "by this fraction of the typical radius: raise it (e.g. 0.3) when single nuclei "
        "come out in pieces, lower it when touching nuclei stay joined (default: the one "
        "the model records; 0.15 for builtin:nuclei)",
    )
    n.add_argument(
        "--augment",
        action="store_true",
        help="test-time augmentation for deep-learning models: average over the 8 flips "
        "and quarter turns (8x slower, usually slightly more accurate)",
    )
    n.add_argument(
        "--independent-frames",
        action="store_true",
        help="segment every frame on its own (by default a nucleus cut in two, or two "
        "nuclei merged, in one frame only is fixed from the frames before and after)",
    )
    n.add_argument(
        "--geojson",
        action="store_true",
        help="also write DIR/<stem>.geojson: one QuPath detection per nucleus (outline, "
        "measurements, class Nucleus; ids as in the label image) for File > Import objects",
    )
    n.add_argument("images", nargs="+", type=Path, metavar="IMAGE_OR_STACK")

    gr = sub.add_parser(
        "grains",
        help="grain maps, grain tables and ASTM E112 grain size",
        description="Writes DIR/<stem>_grains.tif (grain ids 1..N, boundaries 0), "
        "DIR/<stem>_grains.csv (one row per grain, touches_border column) and "
        "DIR/<stem>_summary.json (n_grains, mean_area, mean_ecd, mean_intercept, "
        "astm_g_planimetric, astm_g_intercept, confidence intervals, unit; G is null "
        "without a pixel size). With --region or --drop-data-bar they cover that part of "
        "the image, in its pixels; the summary's region gives its rows and columns.",
    )
    gr.add_argument("--model", required=True, help="MODEL file or builtin:grains")
    gr.add_argument("--out", required=True, type=Path)
    gr.add_argument(
        "--ome-zarr",
        action="store_true",
        help="single-plane images tile by tile: also write DIR/<stem>.ome.zarr (the image and "
        "labels/grains); images over 8192 x 8192 px and OME-Zarr folders go this way on their own",
    )
    gr.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="PX",
        help="core side of the windows of a tiled run (default 1024)",
    )
    gr.add_argument("--pixel-size", type=float, default=None, help="µm per pixel")
    gr.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="boundary probability above which a pixel is boundary evidence (default 0.5); "
        "lower it when faint boundaries are missed and grains merge",
    )
    gr.add_argument(
        "--min-grain-area",
        type=int,
        default=None,
        metavar="PX",
        help="grains smaller than this many pixels are merged into their neighbours "
        "(default: 1 %% of the median grain area, at least 9 px)",
    )
    gr.add_argument(
        "--augment",
        action="store_true",
        help="test-time augmentation for deep-learning models: average over the 8 flips "
        "and quarter turns (8x slower)",
    )
    gr.add_argument(
        "--region",
        default=None,
        metavar="Y0:Y1,X0:X1",
        help="measure only these rows and columns (Python slice rules: ':-64,:' leaves out "
        "the bottom 64 rows)",
    )
    gr.add_argument(
        "--drop-data-bar",
        action="store_true",
        help="find the data bar (text and scale bar in a strip at the bottom or top, as SEM "
        "and camera software write it) and leave it out of the measurement",
    )
    gr.add_argument(
        "--specimen",
        default=None,
        metavar="NAME",
        help="the images are fields of one specimen: also write DIR/NAME_specimen.json, "
        "G pooled over every field with its field-to-field 95 %% CI (ASTM E112 §15)",
    )
    gr.add_argument(
        "--geojson",
        action="store_true",
        help="also write DIR/<stem>.geojson: one QuPath detection per grain (outline in the "
        "whole image's pixels, measurements, class Grain; ids as in the grain map)",
    )
    gr.add_argument("images", nargs="+", type=Path, metavar="IMAGE")

    b = sub.add_parser(
        "batch",
        help="run nuclei, grains or predict over many inputs",
        description="INPUT: files, folders (not recursive) or globs. Writes the same per-input "
        "outputs as the single commands; a failing input is reported and the rest go on "
        "(exit status 2 only when every input failed). --scheduler runs the inputs on a Dask "
        "cluster.",
    )
    b.add_argument("--model", required=True)
    b.add_argument("--task", choices=["nuclei", "grains", "semantic"], required=True)
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--pixel-size", type=float, default=None)
    b.add_argument(
        "--drop-data-bar",
        action="store_true",
        help="grains: leave each image's data bar (text and scale bar strip) out",
    )
    b.add_argument(
        "--geojson",
        action="store_true",
        help="nuclei and grains: also write DIR/<stem>.geojson for QuPath",
    )
    b.add_argument("--scheduler", default=None, help="Dask scheduler address tcp://HOST:PORT")
    b.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")

    s = sub.add_parser(
        "synth",
        help="write a seeded synthetic sample with exact ground truth",
        description="grains: DIR/image.tif, DIR/grain_labels.tif (0 = boundary), "
        "DIR/boundaries.tif (255 = boundary), DIR/truth.json. nuclei-series: DIR/image.tif "
        "(T,Y,X), DIR/labels.tif (T,Y,X, label = track id), DIR/man_track.txt (CTC L B E P), "
        "DIR/truth.json.",
    )
    s.add_argument("--kind", choices=["grains", "nuclei-series"], required=True)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--seed", type=int, default=0)
    e = sub.add_parser(
        "export-model",
        help="write a U-Net as a bioimage.io model package or as ONNX",
        description="--format bioimageio: OUT.zip, a bioimage.io model package (spec 0.5: "
        "rdf.yaml, ONNX weights, percentile normalisation as pre-processing, softmax "
        "post-processing, test input and output, cover, README) for ilastik, bioimageio.core "
        "and the bioimage.io model zoo; --format onnx: OUT.onnx, the network alone (input: "
        "normalised image N,C,H,W; output: logits).",
    )
    e.add_argument("--format", choices=["bioimageio", "onnx"], required=True)
    e.add_argument("--name", default=None, help="package name (default: the model's)")
    e.add_argument("--authors", default=None, help="comma-separated author names")
    e.add_argument("--license", default="BSD-3-Clause", help="SPDX licence id of the weights")
    e.add_argument(
        "--test-image",
        type=Path,
        default=None,
        help="image whose result is the package's test (default: a synthetic one)",
    )
    e.add_argument("model", metavar="MODEL", help="MODEL file or builtin:NAME")
    e.add_argument("output", metavar="OUT", type=Path, help="OUT.zip or OUT.onnx")
    pj = sub.add_parser(
        "project",
        help="list, create, export or import the app's projects",
        description="The projects of the app's Home page. list: slug, name and image count of "
        "each; create NAME; export SLUG FILE.zip: one project file (images, strokes, models, "
        "specimen fields, with a manifest of checksums); import FILE.zip [--name NAME]: a new "
        "project from a project file (a changed or foreign file is refused unread).",
    )
    pj.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="workspace folder (default $MICROSEG_WORKSPACE, else ~/.microseg/workspace)",
    )
    acts = pj.add_subparsers(dest="action", metavar="ACTION", required=True,
                             parser_class=_Parser)  # fmt: skip
    acts.add_parser("list", help="the projects")
    pc = acts.add_parser("create", help="a new, empty project")
    pc.add_argument("name", metavar="NAME")
    pe = acts.add_parser("export", help="one project as a project file")
    pe.add_argument("slug", metavar="SLUG", help="the project's slug (see list; default)")
    pe.add_argument("file", metavar="FILE.zip")
    pi = acts.add_parser("import", help="a new project from a project file")
    pi.add_argument("file", metavar="FILE.zip")
    pi.add_argument("--name", default=None, help="its name (default: the name in the file)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from microseg.commands import get_command

    handler = get_command(args.command)
    start = time.perf_counter()
    try:
        result = handler(args, progress)
    except InputError as exc:
        print(f"microseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("microseg: interrupted.", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
        print(f"microseg: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    progress(f"done in {time.perf_counter() - start:.1f} s")
    if result:
        print(json.dumps(result, indent=1, default=str))
    return 0
