"""What every trained model offers, and loading one by file or built-in name."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from microseg.errors import ModelFileError


@runtime_checkable
class Segmenter(Protocol):
    """A trained pixel classifier (random forest or U-Net).

    Attributes
    ----------
    classes : list of str
        Class names; class k (1..K) is ``classes[k-1]``.
    task : str
        ``"nuclei"``, ``"grains"`` or ``"semantic"``.
    metadata : dict
        What is stored in the model file's header.
    """

    classes: list[str]
    task: str
    metadata: dict

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities ``(K, Y, X)`` float32 for a ``(Y, X)`` or ``(C, Y, X)`` image."""
        ...

    def save(self, path: str | Path) -> Path:
        """Write the model to one safetensors file."""
        ...


def predict_classes(model: Segmenter, image: np.ndarray) -> np.ndarray:
    """Most probable class per pixel, values 1..K (uint8)."""
    proba = model.predict_proba(image)
    return (np.argmax(proba, axis=0) + 1).astype(np.uint8)


def load_segmenter(spec: str | Path) -> Segmenter:
    """Load a model from a file path or ``builtin:NAME``.

    Raises
    ------
    ModelFileError
        For a missing, unsafe, damaged or unknown model.
    """
    from microseg.modelfile import read_metadata

    spec_s = str(spec)
    if spec_s.startswith("builtin:"):
        from microseg.zoo import builtin_path

        path = builtin_path(spec_s.split(":", 1)[1])
    else:
        path = Path(spec_s)
    if path.suffix.lower() == ".zip":
        from microseg.deep.bioimageio import read_bioimageio

        if not path.is_file():
            raise ModelFileError(f"The model file {path} does not exist.")
        return read_bioimageio(path)
    kind = read_metadata(path).get("kind")
    if kind == "rf":
        from microseg.classical import RandomForestSegmenter

        return RandomForestSegmenter.load(path)
    if kind == "unet":
        from microseg.deep import UNetSegmenter

        return UNetSegmenter.load(path)
    raise ModelFileError(f"{path.name} holds a model of unknown kind '{kind}'.")
