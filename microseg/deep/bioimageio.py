"""A trained U-Net as a bioimage.io model package (spec 0.5): ONNX weights, the
normalisation as ``scale_range`` pre-processing, softmax post-processing, a test input
with its expected output, a cover image and a README, zipped. Tools of the bioimage.io
family (ilastik, bioimageio.core, QuPath's and Fiji's bioimage.io support) run it.

``rdf.yaml`` is written as JSON, which every YAML reader reads. The package also holds
the model's own safetensors file, so :func:`read_bioimageio` opens microseg's packages
again; weights that can run code when loaded (PyTorch pickles, TorchScript, Keras and
TensorFlow programs) are never loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from microseg.deep.segmenter import UNetSegmenter
from microseg.errors import InputError, ModelFileError

FORMAT_VERSION = "0.5.4"
TEST_SIDE = 256
WEIGHTS_NAME = "microseg.safetensors"
"""The model file itself, attached so that microseg opens its own packages again."""
MAX_RDF_BYTES = 4 * 1024**2
MAX_WEIGHTS_BYTES = 2 * 1024**3
UNSAFE_WEIGHTS = ("pytorch_state_dict", "torchscript", "keras_hdf5", "keras_v3",
                  "tensorflow_saved_model_bundle", "tensorflow_js")  # fmt: skip


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file(folder: Path, name: str) -> dict[str, str]:
    """A file of the package as the spec describes it: its name and checksum."""
    return {"source": name, "sha256": _sha256(folder / name)}


def _test_input(model: UNetSegmenter, image: np.ndarray | None) -> np.ndarray:
    """``(1, C, Y, X)`` float32 raw test image (a synthetic one without ``image``)."""
    c = model.net.config.in_channels
    if image is None:
        from microseg.synth import synth_grains, synth_nuclei_series

        side = (TEST_SIDE, TEST_SIDE)
        if model.task == "nuclei":
            image = synth_nuclei_series(n_frames=1, shape=side, seed=0).frames[0]
        else:
            image = synth_grains(side, n_grains=40, seed=0).image
    arr = np.asarray(image, np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 3, 4):
        arr = np.moveaxis(arr[..., :3], -1, 0)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape[0] != c:
        arr = np.repeat(arr.mean(axis=0, keepdims=True), c, axis=0)
    m = model.net.config.multiple
    sy, sx = (min(TEST_SIDE, n) // m * m for n in arr.shape[1:])
    if min(sy, sx) < 4 * m:
        raise InputError(f"The test image must be at least {4 * m} x {4 * m} pixels.")
    return np.ascontiguousarray(arr[None, :, :sy, :sx])


def _expected_output(onnx_path: Path, raw: np.ndarray, low: float, high: float) -> np.ndarray:
    """What a bioimage.io runner computes: scale_range per channel, the network, softmax."""
    import onnxruntime as ort

    lo = np.percentile(raw, low, axis=(2, 3), keepdims=True)
    hi = np.percentile(raw, high, axis=(2, 3), keepdims=True)
    x = ((raw - lo) / (hi - lo + 1e-6)).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"image": x})[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _cover(raw: np.ndarray, proba: np.ndarray, path: Path) -> None:
    from PIL import Image

    img = raw[0].mean(axis=0)
    lo, hi = np.percentile(img, [1, 99.8])
    grey = np.clip((img - lo) / (hi - lo + 1e-6), 0, 1)
    top = proba[0, -1]
    left = (np.stack([grey] * 3, -1) * 255).astype(np.uint8)
    right = left.copy()
    right[..., 0] = np.maximum(right[..., 0], (top * 255).astype(np.uint8))
    both = np.concatenate([left, right], axis=1)
    Image.fromarray(both).resize((both.shape[1] * 2, both.shape[0] * 2)).save(path)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "microseg-unet"


def export_bioimageio(
    model: UNetSegmenter,
    path: str | Path,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | None = None,
    license_id: str = "BSD-3-Clause",
    test_image: np.ndarray | None = None,
) -> Path:
    """Write ``model`` as a bioimage.io model package (a ZIP) at ``path``.

    Parameters
    ----------
    model : UNetSegmenter
    path : path
        The ``.zip`` to write.
    name, description : str, optional
        Default: the model's recorded name and description.
    authors : list of str, optional
        Default: "microseg user".
    license_id : str
        SPDX licence identifier of the weights.
    test_image : ndarray, optional
        The test input (``(Y, X)``, ``(Y, X, 3)`` or ``(C, Y, X)``); a crop of at most
        256 x 256 pixels is used. Default: a synthetic image of the model's task.

    Returns
    -------
    Path
    """
    from microseg import __version__
    from microseg.deep.onnx_export import export_onnx

    meta = model.metadata
    norm = meta.get("normalisation") or {}
    if norm and norm.get("method") not in (None, "percentile"):
        raise InputError(f"A model normalised by '{norm.get('method')}' cannot be described.")
    low, high = float(norm.get("low", 1.0)), float(norm.get("high", 99.8))
    name = name or str(meta.get("name") or f"microseg {model.task} U-Net")
    # bioimage.io names hold letters, digits, spaces and _+-() only
    name = re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", name.replace("builtin:", "microseg builtin "))
    name = re.sub(r" +", " ", name).strip() or "microseg U-Net"
    description = description or str(
        meta.get("description") or f"U-Net for {model.task} segmentation trained in microseg."
    )
    classes = list(model.classes)
    cfg = model.net.config
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        onnx_path = export_onnx(model, d / "weights.onnx")
        raw = _test_input(model, test_image)
        expected = _expected_output(onnx_path, raw, low, high)
        np.save(d / "test_input.npy", raw, allow_pickle=False)
        np.save(d / "test_output.npy", expected, allow_pickle=False)
        model.save(d / WEIGHTS_NAME)
        _cover(raw, expected, d / "cover.png")
        import tifffile

        tifffile.imwrite(d / "sample_input.tif", raw[0], photometric="minisblack")
        tifffile.imwrite(d / "sample_output.tif", expected[0], photometric="minisblack")
        (d / "README.md").write_text(_readme(name, description, classes, meta, low, high))
        space = {"min": cfg.multiple * 4, "step": cfg.multiple}
        channel_names = (
            ["grey"] if cfg.in_channels == 1 else [f"channel{i}" for i in range(cfg.in_channels)]
        )
        rdf: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "type": "model",
            "name": name[:128],
            "description": description[:1024],
            "authors": [{"name": a} for a in (authors or ["microseg user"])],
            "cite": [
                {
                    "text": "Ronneberger, Fischer, Brox: U-Net: Convolutional Networks for "
                    "Biomedical Image Segmentation (MICCAI 2015)",
                    "doi": "10.1007/978-3-319-24574-4_28",
                }
            ],
            "license": license_id,
            "documentation": "README.md",
            "covers": ["cover.png"],
            "tags": ["microseg", "unet", "segmentation", model.task, "2d"],
            "timestamp": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "inputs": [
                {
                    "id": "image",
                    "description": "raw image, channels first",
                    "axes": [
                        {"type": "batch"},
                        {"type": "channel", "channel_names": channel_names},
                        {"type": "space", "id": "y", "size": space},
                        {"type": "space", "id": "x", "size": space},
                    ],
                    "test_tensor": _file(d, "test_input.npy"),
                    "sample_tensor": _file(d, "sample_input.tif"),
                    "data": {"type": "float32"},
                    "preprocessing": [
                        {
                            "id": "scale_range",
                            "kwargs": {
                                "axes": ["y", "x"],
                                "min_percentile": low,
                                "max_percentile": high,
                            },
                        }
                    ],
                }
            ],
            "outputs": [
                {
                    "id": "probabilities",
                    "description": "class probabilities: " + ", ".join(classes),
                    "axes": [
                        {"type": "batch"},
                        {"type": "channel", "channel_names": [_slug(c) for c in classes]},
                        {
                            "type": "space",
                            "id": "y",
                            "size": {"tensor_id": "image", "axis_id": "y"},
                        },
                        {
                            "type": "space",
                            "id": "x",
                            "size": {"tensor_id": "image", "axis_id": "x"},
                        },
                    ],
                    "test_tensor": _file(d, "test_output.npy"),
                    "sample_tensor": _file(d, "sample_output.tif"),
                    "data": {"type": "float32"},
                    "postprocessing": [{"id": "softmax", "kwargs": {"axis": "channel"}}],
                }
            ],
            "weights": {
                "onnx": {
                    "source": "weights.onnx",
                    "sha256": _sha256(onnx_path),
                    "opset_version": 17,
                }
            },
            "attachments": [_file(d, WEIGHTS_NAME)],
            "config": {
                "microseg": {
                    "version": __version__,
                    "weights": _file(d, WEIGHTS_NAME),
                    "task": model.task,
                    "classes": classes,
                    "architecture": cfg.__dict__ if hasattr(cfg, "__dict__") else {},
                    "pixel_size_um": meta.get("pixel_size_um"),
                    "object_diameter_px": meta.get("object_diameter_px"),
                }
            },
        }
        (d / "rdf.yaml").write_text(json.dumps(rdf, indent=1, default=str), encoding="utf-8")
        tmp_zip = out.with_name(out.name + ".part")
        with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in ("rdf.yaml", "weights.onnx", "test_input.npy", "test_output.npy",
                      "sample_input.tif", "sample_output.tif", "cover.png", "README.md",
                      WEIGHTS_NAME):  # fmt: skip
                zf.write(d / f, f)
        tmp_zip.replace(out)
    return out


def _readme(
    name: str, description: str, classes: list[str], meta: dict, low: float, high: float
) -> str:
    lines = [
        f"# {name}",
        "",
        description,
        "",
        "Exported from microseg. Input: the raw image, channels first; each channel is scaled "
        f"so its {low:g} and {high:g} percentiles map to 0 and 1. Output: the probability of each "
        "class (softmax over the channel axis): " + ", ".join(classes) + ".",
    ]
    if meta.get("pixel_size_um"):
        lines.append(f"\nTrained at {meta['pixel_size_um']:g} µm per pixel.")
    if meta.get("object_diameter_px"):
        lines.append(f"\nTypical object diameter in training: {meta['object_diameter_px']:g} px.")
    if meta.get("data"):
        lines.append(f"\nTraining data: {meta['data']}")
    lines += ["", "# Validation", ""]
    if meta.get("held_out"):
        lines.append(f"Held out of training: {meta['held_out']}.")
    score = (meta.get("training") or {}).get("best_val_score")
    if score is not None:
        lines.append(f"Best validation score (macro pixel F1) during training: {score:.3f}.")
    lines.append(
        "The test output is this package's own result on its test input; microseg's "
        "benchmarks (benchmarks/ in the microseg repository) measure it against ground truth."
    )
    return "\n".join(lines) + "\n"


def read_bioimageio(path: str | Path) -> UNetSegmenter:
    """Open a bioimage.io model package that microseg wrote.

    Only the attached safetensors file is loaded (its checksum checked against the
    ``rdf.yaml``); nothing in the package runs.

    Raises
    ------
    ModelFileError
        One sentence for a file that is not a package, a package of another tool, one
        whose weights could run code, or one changed since it was written.
    """
    import yaml

    p = Path(path)
    name = p.name
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError):
        raise ModelFileError(f"'{name}' is not a bioimage.io package (not a ZIP file).") from None
    with zf:
        names = zf.namelist()
        rdf_name = "rdf.yaml" if "rdf.yaml" in names else None
        if rdf_name is None:
            rdf_name = next((n for n in names if n.endswith(("rdf.yaml", "bioimageio.yaml"))), None)
        if rdf_name is None:
            raise ModelFileError(f"'{name}' is a ZIP without rdf.yaml, not a bioimage.io package.")
        if zf.getinfo(rdf_name).file_size > MAX_RDF_BYTES:
            raise ModelFileError(f"'{name}' has an rdf.yaml of more than 4 MB.")
        try:
            rdf = yaml.safe_load(zf.read(rdf_name))
        except (yaml.YAMLError, RecursionError, UnicodeDecodeError):
            raise ModelFileError(f"'{name}' has an rdf.yaml that is not valid YAML.") from None
        except (zipfile.BadZipFile, OSError, EOFError):
            raise ModelFileError(f"'{name}' is damaged (its rdf.yaml cannot be read).") from None
        if not isinstance(rdf, dict) or rdf.get("type") != "model":
            kind = rdf.get("type") if isinstance(rdf, dict) else None
            raise ModelFileError(f"'{name}' describes {kind or 'something'} , not a model.")
        config = rdf.get("config") if isinstance(rdf.get("config"), dict) else {}
        ours = config.get("microseg") if isinstance(config.get("microseg"), dict) else {}
        att = ours.get("weights") if isinstance(ours.get("weights"), dict) else None
        if att is None:
            weights = rdf.get("weights") if isinstance(rdf.get("weights"), dict) else {}
            unsafe = [k for k in weights if k in UNSAFE_WEIGHTS]
            if unsafe:
                raise ModelFileError(
                    f"'{name}' holds {' and '.join(unsafe)} weights, which can run code when "
                    "loaded; microseg never loads them and opens only the bioimage.io packages "
                    "it writes."
                )
            raise ModelFileError(
                f"'{name}' was not written by microseg (it has no microseg model inside); "
                "microseg opens only the bioimage.io packages it writes."
            )
        source = str(att.get("source", ""))
        if source not in names:
            raise ModelFileError(f"'{name}' lacks its model file {source or '(unnamed)'}.")
        if zf.getinfo(source).file_size > MAX_WEIGHTS_BYTES:
            raise ModelFileError(f"'{name}' holds a model file of more than 2 GB.")
        try:
            data = zf.read(source)
        except (zipfile.BadZipFile, OSError, EOFError):
            raise ModelFileError(f"'{name}' is damaged (its model file cannot be read).") from None
    if hashlib.sha256(data).hexdigest() != att.get("sha256"):
        raise ModelFileError(f"'{name}' has been changed since it was written (checksum differs).")
    with tempfile.TemporaryDirectory() as tmp:
        weights_path = Path(tmp) / WEIGHTS_NAME
        weights_path.write_bytes(data)
        return UNetSegmenter.load(weights_path)
