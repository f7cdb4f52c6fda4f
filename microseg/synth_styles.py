"""Grain micrographs in the styles users bring, for training a generalist grain model.

:func:`synth_grain_style` renders one polycrystal (cells from
:func:`microseg.synth.grain_cells`) in a randomly drawn imaging style — domain
randomisation: the network sees many looks of the same kind of object, so that
a look it never saw is less foreign. Styles:

* ``optical``  bright-field etched: bright grains, dark boundaries, a few etched grains;
* ``sem_bse``  backscattered electrons: grain tones differ by orientation (channelling),
  boundaries weak, either polarity; low-count shot noise and scan streaks;
* ``sem_se``   secondary electrons: grey grains, bright (edge-effect) or dark (grooved)
  boundaries, charging glow, pores with bright rims, bright particles;
* ``tint``     tint-etched colour: every grain its own hue, dark boundaries (RGB);
* ``lamellar`` colonies of elongated grains in a few directions, a boundary phase of
  random width and polarity (Widmanstätten / basket-weave looks);
* ``nano``     very fine grains a few pixels across, blurred, noisy.

Every style also draws its boundary width, contrast (some boundaries nearly invisible),
polarity, texture inside grains, shading, blur and noise at random. Ground truth is
the same in every style: boundaries 2 px wide on the interface
(:func:`microseg.synth.grain_labels`), whatever width they are drawn with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from microseg.errors import InputError
from microseg.synth import (
    GrainSample,
    _add_blob,
    _check_shape,
    _illumination,
    _shot_noise,
    _smooth_noise,
    grain_cells,
    grain_labels,
)

STYLES = ("optical", "sem_bse", "sem_se", "tint", "lamellar", "nano")


@dataclass
class StyledGrainSample(GrainSample):
    """A :class:`~microseg.synth.GrainSample` drawn in one imaging style.

    ``image`` is ``(Y, X)`` uint8, or ``(Y, X, 3)`` uint8 for the ``tint`` style;
    ``style`` names the style and ``settings`` the values drawn for it.
    """

    style: str = "optical"
    settings: dict = field(default_factory=dict)


def synth_grain_style(
    shape: tuple[int, int] = (320, 320),
    seed: int = 0,
    style: str | None = None,
) -> StyledGrainSample:
    """A polycrystal micrograph in an imaging style, with its grain map.

    Parameters
    ----------
    shape : tuple of int
        Image height and width in pixels.
    seed : int
        Seed of the random generator; equal seeds (and styles) give identical samples.
    style : str, optional
        One of :data:`STYLES`; drawn from them at random (by ``seed``) when omitted.

    Returns
    -------
    StyledGrainSample
    """
    h, w = _check_shape(shape, minimum=32)
    rng = np.random.default_rng(seed)
    if style is None:
        style = str(rng.choice(STYLES))
    if style not in STYLES:
        raise InputError(f"Unknown grain style '{style}'; choose one of {', '.join(STYLES)}.")

    # --- geometry: grain size, shape and (for lamellar) colonies of directions
    if style == "nano":
        spacing = rng.uniform(7.0, 13.0)
    else:
        spacing = float(np.exp(rng.uniform(np.log(14.0), np.log(60.0))))
    n_grains = max(4, int(round(h * w / spacing**2)))
    if style == "lamellar":
        raw = _colonies(rng, (h, w), n_grains)
    else:
        elongation = 1.0 if rng.random() < 0.6 else float(rng.uniform(1.3, 3.0))
        raw = grain_cells(
            rng, (h, w), n_grains, elongation=elongation, angle=float(rng.uniform(0, np.pi))
        ).raw
    labels, boundaries = grain_labels(raw)
    n_cells = int(raw.max()) + 1

    # --- what is drawn: drawn per style, then randomised around it
    polarity = {
        "optical": -1.0,
        "tint": -1.0,
        "nano": float(rng.choice([-1.0, 1.0])),
        "sem_bse": float(rng.choice([-1.0, 1.0])),
        "sem_se": 1.0 if rng.random() < 0.7 else -1.0,
        "lamellar": float(rng.choice([-1.0, 1.0])),
    }[style]
    tone_mean, tone_spread = {
        "optical": (0.8, 0.03),
        "tint": (0.7, 0.1),
        "nano": (0.5, 0.12),
        "sem_bse": (0.5, 0.14),
        "sem_se": (0.45, 0.04),
        "lamellar": (0.45, 0.08),
    }[style]
    width = {"lamellar": rng.uniform(0.8, 4.0), "nano": rng.uniform(0.4, 0.9)}.get(
        style, rng.uniform(0.5, 2.5)
    )
    contrast = {"sem_bse": rng.uniform(0.05, 0.3)}.get(style, rng.uniform(0.15, 0.6))
    faint_fraction = rng.uniform(0.0, 0.25)
    settings = {
        "grain_spacing_px": round(spacing, 1),
        "boundary_polarity": "bright" if polarity > 0 else "dark",
        "boundary_width_px": round(float(width), 2),
        "boundary_contrast": round(float(contrast), 3),
    }

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tone = np.clip(rng.normal(tone_mean, tone_spread, n_cells), 0.05, 0.95)
    if style == "optical":
        etched = rng.random(n_cells) < 0.18
        tone[etched] -= rng.uniform(0.06, 0.2, etched.sum())
    counts = np.bincount(raw.ravel(), minlength=n_cells).astype(np.float64)
    cy = np.bincount(raw.ravel(), yy.ravel(), n_cells) / np.maximum(counts, 1)
    cx = np.bincount(raw.ravel(), xx.ravel(), n_cells) / np.maximum(counts, 1)
    slope = rng.normal(0.0, 0.001, (n_cells, 2))
    tex_amp = rng.uniform(0.0, 0.05) * rng.random(n_cells)
    texture = _smooth_noise(rng, (h, w), rng.uniform(0.8, 4.0))
    grain = (
        tone[raw]
        + slope[raw, 0] * (yy - cy[raw])
        + slope[raw, 1] * (xx - cx[raw])
        + tex_amp[raw] * texture
    ).astype(np.float32)

    # boundary profile: distance to the 2-px boundary, a Gaussian of the drawn width,
    # its contrast modulated along the boundary and nearly zero on faint stretches
    dist = ndi.distance_transform_edt(~boundaries).astype(np.float32)
    along = np.clip(1.0 + 0.45 * _smooth_noise(rng, (h, w), max(3.0, spacing / 3)), 0.1, 1.8)
    faint = _smooth_noise(rng, (h, w), max(3.0, spacing / 2)) < _quantile_z(faint_fraction)
    c_pix = contrast * along * np.where(faint, rng.uniform(0.15, 0.35), 1.0)
    profile = np.exp(-0.5 * (dist / width) ** 2).astype(np.float32)

    if style == "tint":
        image = _tint(rng, raw, grain, profile * c_pix)
    else:
        img = grain + polarity * c_pix * profile * (1.0 if polarity < 0 else 0.8)
        img = _defects(rng, img, style, boundaries, spacing)
        img *= _illumination(rng, (h, w), vignette=rng.uniform(0.0, 0.3), gradient=0.15)
        if style in ("sem_se", "sem_bse") and rng.random() < 0.5:  # charging glow
            glow = np.clip(_smooth_noise(rng, (h, w), min(h, w) / 6), 0, None)
            img += rng.uniform(0.05, 0.2) * glow / max(float(glow.max()), 1e-6)
        img = ndi.gaussian_filter(img, rng.uniform(0.3, 1.4 if style == "nano" else 1.0))
        image = _detect(rng, img, style)
        settings["noise"] = "sem" if style.startswith("sem") or style == "nano" else "camera"
    return StyledGrainSample(
        image=image,
        labels=labels,
        boundaries=boundaries,
        pixel_size_um=float(np.exp(rng.uniform(np.log(0.01), np.log(2.0)))),
        seed=int(seed),
        style=style,
        settings=settings,
    )


def _quantile_z(fraction: float) -> float:
    """The standard-normal value below which ``fraction`` of the values lie."""
    from scipy.stats import norm

    return float(norm.ppf(min(max(fraction, 1e-6), 1 - 1e-6)))


def _colonies(rng: np.random.Generator, shape: tuple[int, int], n_grains: int) -> np.ndarray:
    """Cells of 2-4 colonies, each of grains elongated along its own direction."""
    h, w = shape
    n_col = int(rng.integers(2, 5))
    _, colony = np.unique(grain_cells(rng, shape, n_col).raw, return_inverse=True)
    colony = colony.reshape(h, w)
    n_col = int(colony.max()) + 1
    raw = np.zeros(shape, np.int32)
    offset = 0
    for k in range(n_col):
        cells = grain_cells(
            rng,
            shape,
            n_grains,
            elongation=float(rng.uniform(3.0, 8.0)),
            angle=float(rng.uniform(0, np.pi)),
        ).raw
        inside = colony == k
        raw[inside] = cells[inside] + offset
        offset += int(cells.max())
    # renumber 1..N so that each (colony, cell) piece is a cell
    _, raw = np.unique(raw, return_inverse=True)
    return raw.reshape(h, w).astype(np.int32) + 1


def _defects(
    rng: np.random.Generator, img: np.ndarray, style: str, boundaries: np.ndarray, spacing: float
) -> np.ndarray:
    """Pores (dark, with bright rims in SE), bright particles and polishing scratches."""
    h, w = img.shape
    pits = np.zeros((h, w), np.float32)
    bumps = np.zeros((h, w), np.float32)
    n_pores = int(rng.integers(0, max(2, int(h * w / spacing**2 / 3))))
    for _ in range(n_pores):
        centre = (rng.uniform(0, h), rng.uniform(0, w))
        r = rng.uniform(0.6, 2.5)
        _add_blob(pits, centre, r, rng.uniform(0.3, 0.8))
        if style == "sem_se":
            _add_blob(bumps, centre, 1.6 * r, rng.uniform(0.1, 0.3))
    if style in ("sem_se", "sem_bse") and rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 30))):
            _add_blob(bumps, (rng.uniform(0, h), rng.uniform(0, w)), rng.uniform(0.8, 3.0), 0.4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scratch = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(0, 6))):
        a = rng.uniform(0, np.pi)
        off = rng.uniform(-0.5, 0.5) * min(h, w)
        d = np.cos(a) * (xx - w / 2) + np.sin(a) * (yy - h / 2) - off
        scratch += rng.choice([-1.0, 1.0]) * rng.uniform(0.01, 0.05) * np.exp(-0.5 * (d / 0.8) ** 2)
    return (img * (1.0 - np.clip(pits, 0, 0.9)) + bumps + scratch * img).astype(np.float32)


def _tint(
    rng: np.random.Generator, raw: np.ndarray, grain: np.ndarray, dark: np.ndarray
) -> np.ndarray:
    """RGB tint etching: a random hue per grain, value from its tone, dark boundaries."""
    from skimage.color import hsv2rgb

    n = int(raw.max()) + 1
    hue = (rng.uniform(0, 1) + rng.normal(0, rng.uniform(0.08, 0.3), n)) % 1.0
    sat = rng.uniform(0.25, 0.8, n)
    hsv = np.stack([hue[raw], sat[raw], np.clip(grain, 0, 1)], axis=-1)
    rgb = hsv2rgb(hsv).astype(np.float32) * (1.0 - np.clip(dark, 0, 0.9))[..., None]
    rgb *= _illumination(rng, raw.shape, vignette=rng.uniform(0.0, 0.3), gradient=0.1)[..., None]
    rgb = ndi.gaussian_filter(rgb, (0.7, 0.7, 0))
    photons = _shot_noise(rng, np.clip(rgb, 0, None) * 2000.0)
    return np.clip(photons / 2000.0 * 255, 0, 255).round().astype(np.uint8)


def _detect(rng: np.random.Generator, img: np.ndarray, style: str) -> np.ndarray:
    """Detector noise (low-count shot noise and scan streaks for SEM; a camera otherwise)
    and a random contrast stretch to uint8."""
    h, w = img.shape
    img = np.clip(img, 0, None)
    if style.startswith("sem") or style == "nano":
        counts = float(np.exp(rng.uniform(np.log(15.0), np.log(300.0))))
        out = _shot_noise(rng, img * counts) / counts
        streak = rng.uniform(0.0, 0.04) * rng.standard_normal(h).astype(np.float32)
        out += ndi.gaussian_filter1d(streak, rng.uniform(0.0, 1.0) + 1e-3)[:, None]
    else:
        full_well = float(rng.uniform(500.0, 3000.0))
        out = _shot_noise(rng, img * full_well) / full_well
        out += rng.standard_normal((h, w), dtype=np.float32) * np.float32(rng.uniform(0, 0.01))
    lo, hi = np.percentile(out, [rng.uniform(0, 1.0), 100 - rng.uniform(0, 1.0)])
    span = max(float(hi - lo), 1e-6)
    gain = rng.uniform(0.7, 1.0)
    base = rng.uniform(0.0, 1.0 - gain)
    scaled = (out - lo) / span * gain + base
    return np.clip(scaled * 255, 0, 255).round().astype(np.uint8)
