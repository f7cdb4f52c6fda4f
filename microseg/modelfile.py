"""One model file for every model: safetensors weights plus JSON metadata.

Loading runs no code from the file: safetensors holds raw arrays only, and the
metadata is plain JSON in the file header under the key ``"microseg"``.
A pickle (or anything else that is not safetensors) is refused with a clear
message.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from microseg.errors import InputError, ModelFileError

FORMAT_VERSION = 1
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


def save_model(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    """Write arrays and metadata to one safetensors file.

    Parameters
    ----------
    path : str or Path
        Destination file (parent folders are created).
    tensors : dict of str to ndarray
        Named arrays (weights, forest nodes, ...). Stored contiguous, as given.
    metadata : dict
        JSON-serialisable description: ``kind`` (``"rf"`` or ``"unet"``), classes,
        task, normalisation, training pixel size, training summary, ...

    Returns
    -------
    Path
        The written path.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"The model file {path} cannot be written: its folder cannot be made "
            f"({exc.strerror or 'it is a file'})."
        ) from exc
    meta = dict(metadata)
    meta.setdefault("format_version", FORMAT_VERSION)
    from microseg import __version__

    meta.setdefault("microseg_version", __version__)
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    save_file(arrays, str(path), metadata={"microseg": json.dumps(meta)})
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read only the JSON metadata of a model file (no arrays are loaded)."""
    path = Path(path)
    raw = _check_header(path)
    try:
        header = json.loads(raw)
        meta = json.loads(header["__metadata__"]["microseg"])
    except RecursionError as exc:  # hostile nesting: [[[[...]]]]
        raise ModelFileError(
            f"{path.name} is not a usable microseg model: its metadata is nested too deeply."
        ) from exc
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{path.name} is a safetensors file but not a microseg model."
        ) from exc
    if not isinstance(meta, dict):
        raise ModelFileError(
            f"{path.name} is not a usable microseg model: its metadata is not a mapping."
        )
    return meta


def load_model(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load arrays and metadata from a model file written by :func:`save_model`.

    Raises
    ------
    ModelFileError
        When the file is missing, empty, a pickle, truncated, or not a microseg model.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    meta = read_metadata(path)
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(
            f"{path.name} is not a usable microseg model: its format version is {version!r}."
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path.name} was written by a newer microseg (format {meta['format_version']}); "
            "update microseg to load it."
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path.name} is damaged and cannot be loaded ({exc}).") from exc
    return tensors, meta


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file, for provenance records."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_header(path: Path) -> bytes:
    if not path.is_file():
        raise ModelFileError(f"Model file {path} does not exist.")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path.name} is empty or truncated, not a model file.")
        if head.startswith(_PICKLE_MAGIC):
            raise ModelFileError(
                f"{path.name} looks like a pickle or zip archive; microseg only loads "
                "safetensors model files, because loading a pickle can run code."
            )
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or n > min(size - 8, 100_000_000):
            raise ModelFileError(f"{path.name} is not a safetensors model file.")
        raw = fh.read(n)
    if not raw.lstrip().startswith(b"{"):
        raise ModelFileError(f"{path.name} is not a safetensors model file.")
    return raw
