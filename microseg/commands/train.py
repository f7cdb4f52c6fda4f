"""``microseg train``: train a random forest or a U-Net from strokes or dense masks.

Every ``--images`` file is paired with the ``--labels`` (strokes: 0 = unlabelled,
k = class k) or ``--masks`` (dense ground truth, converted to the task's classes)
file at the same position. A stack is used plane by plane: a label stack pairs
with the image's planes one to one; a 2-D label image goes with the first plane.
Masks may also be outlines drawn in other tools (:mod:`microseg.annotations`: QuPath
GeoJSON, ImageJ ROI sets, NumPy label arrays), rasterised to the image's size.
The model is written as one safetensors file whose header records the classes,
the task, the training summary and its provenance.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from microseg.errors import InputError
from microseg.image import MicroImage


def _read(path: Path, what: str, palette: str = "colors") -> MicroImage:
    from microseg.io import read_image

    if not Path(path).is_file():
        raise InputError(f"The {what} file {path} does not exist.")
    return read_image(path, palette=palette)


def _label_planes(image: MicroImage, labels: MicroImage, name: str) -> list[np.ndarray]:
    """Label planes ``(Y, X)`` that pair with the image's planes (see the module notes)."""
    if labels.n_channels != 1:
        raise InputError(
            f"{name} has {labels.n_channels} channels; a label image must hold one integer "
            "class or object id per pixel."
        )
    if labels.shape_yx != image.shape_yx:
        (ly, lx), (iy, ix) = labels.shape_yx, image.shape_yx
        raise InputError(f"{name} is {lx}x{ly} pixels but its image is {ix}x{iy}.")
    data = labels.data[:, :, 0]
    if data.dtype.kind == "f":
        if not np.all(np.equal(np.mod(data, 1), 0)):
            raise InputError(f"{name} holds fractional values; labels must be whole numbers.")
        data = data.astype(np.int64)
    elif data.dtype.kind not in "iub":
        raise InputError(f"{name} must hold integer labels, not {data.dtype}.")
    if data.size and data.min() < 0:
        raise InputError(f"{name} holds negative values; labels must be 0 or positive.")
    n_planes = labels.n_frames * labels.n_slices
    if n_planes == 1:
        return [data[0, 0]]
    if (labels.n_frames, labels.n_slices) != (image.n_frames, image.n_slices):
        raise InputError(
            f"{name} has {n_planes} planes but its image has "
            f"{image.n_frames * image.n_slices}; give one label plane per image plane or one 2-D "
            "label image."
        )
    return [data[t, z] for t in range(labels.n_frames) for z in range(labels.n_slices)]


def _class_names(args: argparse.Namespace, targets: list[np.ndarray]) -> list[str] | None:
    """Class names from ``--classes`` (None: the task's defaults)."""
    if not args.classes:
        if args.task == "semantic":
            top = max(int(t.max()) for t in targets)
            return [f"class {i}" for i in range(1, max(2, top) + 1)]
        return None
    names = [c.strip() for c in str(args.classes).split(",") if c.strip()]
    if len(names) < 2:
        raise InputError("--classes needs at least two comma-separated class names.")
    if len(set(names)) != len(names):
        raise InputError("--classes holds the same class name twice.")
    top = max(int(t.max()) for t in targets)
    if top > len(names):
        raise InputError(
            f"The labels use class {top} but --classes names only {len(names)} classes."
        )
    return names


def load_training_data(
    args: argparse.Namespace, progress: Callable[[str], None]
) -> tuple[list[np.ndarray], list[np.ndarray], float | None]:
    """Image planes and their targets (strokes, or masks converted to the task's classes).

    Returns
    -------
    (images, targets, pixel_size_um)
        Planes ``(Y, X)`` or ``(C, Y, X)``, uint8 targets (0 = unlabelled, k = class k)
        and the first image's pixel size.
    """
    from microseg.annotations import is_annotation_file, read_mask
    from microseg.deep.train import targets_from_masks

    dense = args.masks is not None
    label_files = [Path(p) for p in (args.masks if dense else args.labels)]
    image_files = [Path(p) for p in args.images]
    what = "mask" if dense else "label"
    if len(label_files) != len(image_files):
        raise InputError(
            f"Give one {what} file per image: {len(image_files)} image(s) but "
            f"{len(label_files)} {what} file(s)."
        )
    images: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    pixel_size: float | None = None
    for ipath, lpath in zip(image_files, label_files, strict=True):
        image = _read(ipath, "image")
        if pixel_size is None:
            pixel_size = image.pixel_size_um
        if dense and is_annotation_file(lpath):
            planes = [read_mask(lpath, image.shape_yx, args.task)]
        else:
            planes = _label_planes(image, _read(lpath, what, palette="index"), lpath.name)
        if len(planes) == 1 and image.n_frames * image.n_slices > 1:
            progress(f"{lpath.name} is 2-D: it labels the first plane of {ipath.name}")
        positions = [(t, z) for t in range(image.n_frames) for z in range(image.n_slices)]
        for (t, z), lab in zip(positions, planes, strict=False):
            if dense:
                tgt = targets_from_masks(lab, args.task)
            else:
                if int(lab.max()) > 255:
                    raise InputError(
                        f"{lpath.name} uses class {int(lab.max())}; strokes hold 0..255."
                    )
                tgt = lab.astype(np.uint8)
            if not tgt.any():
                continue
            images.append(image.frame(t, z))
            targets.append(tgt)
    if not targets:
        raise InputError(f"The {what} files label no pixel (all values are 0).")
    present = np.unique(np.concatenate([np.unique(t) for t in targets]))
    present = present[present > 0]
    if present.size < 2:
        raise InputError(
            f"The {what} files hold only class {int(present[0])}; train needs at least two "
            "classes (e.g. 1 grain interior and 2 grain boundary)."
        )
    n_pix = sum(int((t > 0).sum()) for t in targets)
    progress(f"training data: {len(images)} plane(s), {n_pix} labelled pixels, "
             f"classes {', '.join(str(int(c)) for c in present)}")  # fmt: skip
    return images, targets, pixel_size


def _train_rf(args, images, targets, classes, progress) -> Any:  # noqa: ANN001, ANN401
    from microseg.classical import RandomForestSegmenter

    progress("computing features and fitting the random forest ...")
    model = RandomForestSegmenter()
    model.fit(images, targets, classes=classes, task=args.task, seed=int(args.seed))
    return model


def _init_model(args: argparse.Namespace, progress: Callable[[str], None]) -> Any:  # noqa: ANN401
    """The U-Net to fine-tune, or None to train from scratch."""
    from microseg.errors import ModelFileError
    from microseg.segmenter import load_segmenter

    spec = args.init
    if spec is not None and str(spec).lower() == "none":
        progress("training a new U-Net from scratch (--init none)")
        return None
    if spec is None:
        if args.task not in ("nuclei", "grains"):
            progress("training a new U-Net from scratch (no built-in model for this task)")
            return None
        try:
            from microseg.zoo import builtin_path

            builtin_path(args.task)
        except ModelFileError:
            progress(f"the built-in {args.task} model is not installed: training from scratch")
            return None
        spec = f"builtin:{args.task}"
    model = load_segmenter(spec)
    if model.metadata.get("kind") != "unet":
        raise InputError(f"--init {spec} is not a U-Net model; give a U-Net file or 'none'.")
    if model.task != args.task:
        raise InputError(f"--init {spec} is a {model.task} model, not a {args.task} model.")
    progress(f"fine-tuning {spec}")
    return model


def _train_unet(args, images, targets, classes, progress) -> Any:  # noqa: ANN001, ANN401
    from microseg.deep import TrainConfig, train_unet
    from microseg.deep.train import check_seconds

    check_seconds(args.seconds, "--seconds")
    init = _init_model(args, progress)
    if init is not None:
        top = max(int(t.max()) for t in targets)
        if top > len(init.classes):
            raise InputError(
                f"The labels use class {top} but the initial model has {len(init.classes)} classes."
            )
    last = [0.0]

    def report(p) -> None:  # noqa: ANN001
        if p.seconds - last[0] >= 5 or p.eta <= 0:
            last[0] = p.seconds
            score = f", validation {p.val_score:.3f}" if p.val_score is not None else ""
            progress(
                f"step {p.step}: {p.seconds:.0f}/{args.seconds:.0f} s, loss {p.loss:.4f}{score}"
            )

    cfg = TrainConfig(seconds=float(args.seconds), seed=int(args.seed))
    progress(f"training the U-Net for {args.seconds:g} s ...")
    return train_unet(images, targets, cfg, init=init, progress=report, task=args.task,
                      classes=classes)  # fmt: skip


def cmd_train(args: argparse.Namespace, progress: Callable[[str], None]) -> dict:
    """Train ``--method`` on the images and labels and write the model file ``--out``."""
    from microseg.exports import provenance

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give the model file to write.")
    images, targets, pixel_size = load_training_data(args, progress)
    classes = _class_names(args, targets)
    start = time.perf_counter()
    if args.method == "rf":
        model = _train_rf(args, images, targets, classes, progress)
    else:
        model = _train_unet(args, images, targets, classes, progress)
    seconds = time.perf_counter() - start
    params = {
        "method": args.method,
        "task": args.task,
        "images": [str(p) for p in args.images],
        ("masks" if args.masks is not None else "labels"): [
            str(p) for p in (args.masks if args.masks is not None else args.labels)
        ],
        "classes": list(model.classes),
        "seed": int(args.seed),
    }
    if args.method == "unet":
        params["seconds"] = float(args.seconds)
        params["init"] = args.init or "task default"
    model.metadata["provenance"] = provenance(None, params, training_seconds=round(seconds, 2))
    if pixel_size and not model.metadata.get("pixel_size_um") and args.method == "rf":
        model.metadata["pixel_size_um"] = float(pixel_size)
    path = model.save(out)
    progress(f"wrote {path}")
    return {
        "model": str(path),
        "method": args.method,
        "task": model.task,
        "classes": list(model.classes),
        "training_seconds": round(seconds, 2),
    }
