"""Render helpers: image planes, overlays and image information."""

from __future__ import annotations

import numpy as np
import streamlit as st

from microseg.image import MicroImage


def display_plane(
    image: MicroImage,
    t: int = 0,
    z: int | str = 0,
    channel: int | None = None,
    low: float = 0.5,
    high: float = 99.8,
    manual: tuple[float, float] | None = None,
) -> np.ndarray:
    """An 8-bit (Y, X) or (Y, X, 3) rendering of one plane with contrast applied."""
    from microseg.io import to_display_uint8

    plane = image.plane(t, z)
    if channel is not None:
        plane = plane[channel : channel + 1]
    arr = plane[0] if plane.shape[0] == 1 else plane
    return to_display_uint8(arr, low_pct=low, high_pct=high, manual=manual)


def show_plane(image: MicroImage, t: int = 0, width: int | None = None, **kw) -> None:
    """Show one plane of ``image`` with automatic contrast."""
    st.image(display_plane(image, t=t, **kw), width=width or "content", clamp=True)


def image_info(image: MicroImage, pixel_size_um: float | None) -> str:
    """Markdown summary: shape, dtype, pixel size, value range."""
    first = image.plane(0, 0)
    finite = first[np.isfinite(first)] if first.dtype.kind == "f" else first
    lo, hi = (finite.min(), finite.max()) if finite.size else (float("nan"),) * 2
    size = f"{pixel_size_um:.4g} µm/px" if pixel_size_um else "unknown (type it in)"
    t, z, c, y, x = image.data.shape
    return (
        f"**{image.name}** — {x} × {y} px, {t} frame(s), {z} slice(s), {c} channel(s), "
        f"dtype {image.dtype}, pixel size {size}, values {lo:.4g} … {hi:.4g} (first plane)"
    )


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """'#rrggbb' → (r, g, b)."""
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def class_overlay(
    base: np.ndarray, class_map: np.ndarray, colours: list[str], opacity: float = 0.45
) -> np.ndarray:
    """Blend a class map (1..K) over an 8-bit image; returns (Y, X, 3) uint8."""
    rgb = base if base.ndim == 3 else np.repeat(base[..., None], 3, axis=2)
    lut = np.zeros((len(colours) + 1, 3), np.float32)
    for k, col in enumerate(colours, start=1):
        lut[k] = hex_to_rgb(col)
    colour = lut[np.clip(class_map, 0, len(colours))]
    mask = (class_map > 0)[..., None]
    out = np.where(mask, (1 - opacity) * rgb + opacity * colour, rgb)
    return out.astype(np.uint8)


def label_colours(n: int, seed: int = 7) -> np.ndarray:
    """A random but stable colour per label id (row 0 black)."""
    rng = np.random.default_rng(seed)
    lut = rng.integers(60, 256, size=(n + 1, 3)).astype(np.uint8)
    lut[0] = 0
    return lut


def instance_overlay(
    base: np.ndarray,
    labels: np.ndarray,
    fill_opacity: float = 0.25,
    highlight: np.ndarray | None = None,
) -> np.ndarray:
    """Outlines (and a light fill) in a distinct colour per object; ``highlight`` ids in white."""
    from skimage.segmentation import find_boundaries

    rgb = (base if base.ndim == 3 else np.repeat(base[..., None], 3, axis=2)).astype(np.float32)
    lut = label_colours(int(labels.max()) if labels.size else 0).astype(np.float32)
    if highlight is not None and len(highlight):
        hl = np.asarray(highlight, dtype=np.int64)
        lut[hl[(hl > 0) & (hl < len(lut))]] = 255.0
    colour = lut[labels]
    inside = (labels > 0)[..., None]
    out = np.where(inside, (1 - fill_opacity) * rgb + fill_opacity * colour, rgb)
    edges = find_boundaries(labels, mode="inner")
    out[edges] = colour[edges]
    return out.astype(np.uint8)
