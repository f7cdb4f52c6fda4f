"""RGB arrays as PNG data URIs, the image layer of the pages' plotly figures."""

from __future__ import annotations

import base64
import io

import numpy as np


def png_data_uri(rgb: np.ndarray, compress_level: int | None = None) -> str:
    """``data:image/png;base64,...`` of an 8-bit RGB (or grey) image.

    Parameters
    ----------
    rgb : ndarray
        ``(Y, X, 3)`` or ``(Y, X)`` uint8 pixels.
    compress_level : int or None
        zlib level 0-9 (1: fast, for images redrawn on every rerun); ``None``: Pillow's default.

    Returns
    -------
    str
        The data URI.
    """
    from PIL import Image

    options = {} if compress_level is None else {"compress_level": int(compress_level)}
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", **options)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
