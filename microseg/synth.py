"""Seeded synthetic micrographs with exact ground truth.

Two kinds of sample, both realistic rather than easy:

* :func:`synth_grains` — an etched polycrystal seen in bright field: grains of
  varying tone and texture, dark boundaries of varying width and contrast (some
  nearly invisible), pores, polishing scratches, uneven illumination, blur and
  noise; ground truth grain labels and boundary mask.
* :func:`synth_nuclei_series` — a fluorescence time-lapse of nuclei that touch,
  move, divide, enter and leave the field, under a drifting, bleaching excitation;
  ground truth instance labels per frame (label = track id) and the lineage table.

The same seed always gives the same pixels. :func:`write_sample` writes a sample
and its ground truth as files (the ``microseg synth`` command).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.interpolate import PchipInterpolator
from scipy.spatial import cKDTree
from skimage.measure import label as cc_label
from skimage.segmentation import relabel_sequential

from microseg.errors import InputError

SAMPLE_FILES: dict[str, list[str]] = {
    "grains": ["image.tif", "grain_labels.tif", "boundaries.tif", "truth.json"],
    "nuclei-series": ["image.tif", "labels.tif", "man_track.txt", "truth.json"],
}

TRACK_DTYPE = np.dtype(
    [
        ("track_id", np.int32),
        ("start_frame", np.int32),
        ("end_frame", np.int32),
        ("parent_track_id", np.int32),
    ]
)


# ----------------------------------------------------------------------------- helpers


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise with zero mean and unit standard deviation (float32)."""
    factor = max(1, int(sigma // 4))
    small = (shape[0] // factor + 3, shape[1] // factor + 3)
    field = ndi.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma / factor)
    if factor > 1:
        field = ndi.zoom(field, factor, order=1)
    field = field[: shape[0], : shape[1]]
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _shot_noise(rng: np.random.Generator, lam: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Photon counts for mean ``lam`` (float32): Poisson below 10, its normal limit above.

    ``scale`` multiplies the deviation from the mean (1 = physical shot noise).
    """
    lam = np.maximum(lam, 0, dtype=np.float32)
    out = lam + np.sqrt(lam) * rng.standard_normal(lam.shape, dtype=np.float32)
    low = lam < 10
    out[low] = rng.poisson(lam[low])
    if scale != 1.0:
        out = lam + np.float32(scale) * (out - lam)
    return out


def _illumination(
    rng: np.random.Generator, shape: tuple[int, int], vignette: float, gradient: float
) -> np.ndarray:
    """Smooth multiplicative illumination: an off-centre vignette times a linear ramp."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * rng.uniform(0.3, 0.7), w * rng.uniform(0.3, 0.7)
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (0.5 * (h**2 + w**2))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5)) * 2 * gradient
    field = (1.0 - vignette * r2) * (1.0 + ramp)
    return (field / field.max()).astype(np.float32)


def _check_shape(shape: tuple[int, int], minimum: int = 16) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < minimum:
        raise InputError(f"A synthetic image needs a (Y, X) shape of at least {minimum} pixels.")
    return int(shape[0]), int(shape[1])


def _dart_throw(
    rng: np.random.Generator, n: int, lo: np.ndarray, hi: np.ndarray, min_dist: float
) -> np.ndarray:
    """Up to ``n`` points in the box ``[lo, hi)`` no closer than ``min_dist`` to each other."""
    cand = rng.uniform(lo, hi, size=(n * 30, 2))
    pts = np.empty((n, 2))
    k = 0
    for p in cand:
        if k and np.min(np.sum((pts[:k] - p) ** 2, axis=1)) < min_dist**2:
            continue
        pts[k] = p
        k += 1
        if k == n:
            break
    return pts[:k]


# ----------------------------------------------------------------------------- grains


@dataclass
class GrainSample:
    """A synthetic polycrystal micrograph and its exact ground truth.

    Attributes
    ----------
    image : ndarray
        ``(Y, X)`` uint8 bright-field micrograph (dark boundaries).
    labels : ndarray
        ``(Y, X)`` uint16 grain ids ``1..N``; 0 on boundaries.
    boundaries : ndarray
        ``(Y, X)`` bool, True on boundary pixels (exactly ``labels == 0``).
    pixel_size_um : float
        Pixel edge length in micrometres.
    seed : int
        Seed it was generated from.
    """

    image: np.ndarray
    labels: np.ndarray
    boundaries: np.ndarray
    pixel_size_um: float
    seed: int = 0

    @property
    def n_grains(self) -> int:
        """Number of grains (highest label)."""
        return int(self.labels.max())


def synth_grains(
    shape: tuple[int, int] = (512, 512),
    n_grains: int = 150,
    seed: int = 0,
    *,
    pixel_size_um: float = 0.5,
    elongation: float = 1.0,
    faint_fraction: float = 0.25,
    n_pores: int = 40,
    n_scratches: int = 2,
    noise: float = 1.0,
) -> GrainSample:
    """Generate an etched polycrystal micrograph with its grain map.

    Grains are cells of a power diagram computed in noise-warped coordinates (so
    boundaries curve and sizes vary), optionally stretched along x. Each boundary
    has its own contrast and width, modulated along its length; about
    ``faint_fraction`` of them are nearly invisible. Ground truth: a pixel is on a
    boundary when its 3x3 neighbourhood spans two or more grains (boundaries are
    2 px wide, centred on the true interface); grains are the 4-connected regions
    of the rest, numbered 1..N (pieces under 8 px count as boundary).

    Parameters
    ----------
    shape : tuple of int
        Image height and width in pixels.
    n_grains : int
        Approximate number of grains in the field of view.
    seed : int
        Seed of the random generator; equal seeds give identical samples.
    pixel_size_um : float
        Pixel size stored with the sample.
    elongation : float
        Grain aspect ratio along x (1 = equiaxed, 2 = rolled grains twice as long).
    faint_fraction : float
        Fraction of boundaries with a contrast of only a few percent.
    n_pores : int
        Number of small dark inclusions and pores inside grains.
    n_scratches : int
        Number of faint straight polishing scratches.
    noise : float
        Noise scale (1 = a typical camera; 0 = noise free).

    Returns
    -------
    GrainSample
    """
    h, w = _check_shape(shape)
    if n_grains < 2:
        raise InputError("A synthetic polycrystal needs at least 2 grains.")
    rng = np.random.default_rng(seed)
    cells = grain_cells(rng, (h, w), n_grains, elongation=elongation)
    raw, d_iface, n_seeds = cells.raw, cells.d_iface, cells.n_seeds
    pair_lo, pair_hi = cells.pair_lo, cells.pair_hi
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    labels, boundaries = grain_labels(raw)

    # --- rendering: reflectance of each grain, then boundaries, pores, scratches.
    tone = rng.normal(0.84, 0.025, n_seeds + 1)
    etched = rng.random(n_seeds + 1) < 0.18
    tone[etched] -= rng.uniform(0.06, 0.16, etched.sum())
    slope = rng.normal(0.0, 0.0007, (n_seeds + 1, 2))
    tex_amp = rng.uniform(0.004, 0.03, n_seeds + 1)
    counts = np.bincount(raw.ravel(), minlength=n_seeds + 1).astype(np.float64)
    cy = np.bincount(raw.ravel(), yy.ravel(), n_seeds + 1) / np.maximum(counts, 1)
    cx = np.bincount(raw.ravel(), xx.ravel(), n_seeds + 1) / np.maximum(counts, 1)
    texture = 0.6 * _smooth_noise(rng, (h, w), 1.2) + 0.8 * _smooth_noise(rng, (h, w), 4.0)
    refl = (
        tone[raw]
        + slope[raw, 0] * (yy - cy[raw])
        + slope[raw, 1] * (xx - cx[raw])
        + tex_amp[raw] * texture
    ).astype(np.float32)

    # Each pair of neighbouring cells gets its own boundary contrast and width.
    _, pair = np.unique(pair_lo.astype(np.int64) * n_seeds + pair_hi, return_inverse=True)
    pair = pair.reshape(h, w)
    n_pairs = int(pair.max()) + 1
    contrast = rng.uniform(0.35, 0.9, n_pairs)
    faint = rng.random(n_pairs) < faint_fraction
    contrast[faint] = rng.uniform(0.015, 0.07, faint.sum())
    width = rng.uniform(0.45, 1.2, n_pairs)
    along = np.clip(1.0 + 0.45 * _smooth_noise(rng, (h, w), 6.0), 0.15, 1.8)
    c_pix = contrast[pair] * along
    s_pix = width[pair]
    dark = np.clip(c_pix * np.exp(-0.5 * (d_iface / s_pix) ** 2), 0.0, 0.92)

    pits = np.zeros((h, w), np.float32)
    on_b = np.flatnonzero(boundaries.ravel())
    if on_b.size:
        for pos in rng.choice(on_b, size=min(on_b.size, max(1, n_grains // 6)), replace=False):
            _add_blob(pits, divmod(int(pos), w), rng.uniform(1.0, 2.2), rng.uniform(0.3, 0.7))
    for _ in range(n_pores):
        centre = (rng.uniform(0, h), rng.uniform(0, w))
        _add_blob(pits, centre, rng.uniform(0.6, 1.8), rng.uniform(0.25, 0.75))
    scratch = np.zeros((h, w), np.float32)
    for _ in range(n_scratches):
        a = rng.uniform(0, np.pi)
        offset = rng.uniform(-0.4, 0.4) * min(h, w)
        d = np.cos(a) * (xx - w / 2) + np.sin(a) * (yy - h / 2) - offset
        scratch += rng.uniform(0.025, 0.06) * np.exp(-0.5 * (d / 0.8) ** 2)

    refl *= (1.0 - dark) * (1.0 - np.clip(pits, 0, 0.85)) * (1.0 - scratch)
    refl *= _illumination(rng, (h, w), vignette=rng.uniform(0.15, 0.3), gradient=0.12)
    refl = ndi.gaussian_filter(refl, 0.7)

    full_well = 2500.0
    photons = np.clip(refl, 0, None) * full_well
    if noise > 0:
        photons = _shot_noise(rng, photons.astype(np.float32), noise)
        photons += rng.standard_normal((h, w), dtype=np.float32) * np.float32(8.0 * noise)
    image = np.clip(photons * (268.0 / full_well) + 4.0, 0, 255).round().astype(np.uint8)
    return GrainSample(image, labels, boundaries, float(pixel_size_um), int(seed))


@dataclass
class GrainCells:
    """The cells of a polycrystal before rendering (see :func:`grain_cells`).

    Attributes
    ----------
    raw : ndarray
        ``(Y, X)`` int32 cell id ``1..n_seeds`` of every pixel (one piece per cell).
    d_iface : ndarray
        ``(Y, X)`` float32 distance in pixels to the interface with the next-nearest cell.
    pair_lo, pair_hi : ndarray
        ``(Y, X)`` ids (from 0) of the two nearest cells: together they name the interface.
    n_seeds : int
        Number of cells, including those outside the image.
    """

    raw: np.ndarray
    d_iface: np.ndarray
    pair_lo: np.ndarray
    pair_hi: np.ndarray
    n_seeds: int


def grain_cells(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n_grains: int,
    *,
    elongation: float = 1.0,
    angle: float = 0.0,
) -> GrainCells:
    """Cells of a power diagram in noise-warped coordinates: curved boundaries, varied sizes.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (consumed in a fixed order: equal states give equal cells).
    shape : tuple of int
        Image height and width in pixels.
    n_grains : int
        Approximate number of cells that meet the image.
    elongation : float
        Cell aspect ratio (1 = equiaxed).
    angle : float
        Direction of the long axis in radians, from the x axis (0 = along x).

    Returns
    -------
    GrainCells
    """
    h, w = shape
    spacing = float(np.sqrt(h * w / n_grains))
    stretch = float(np.sqrt(max(elongation, 0.1)))

    # Seeds in the (warped, rotated, stretched) plane, over a margin so edge grains are cut.
    margin = spacing
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        cy, cx = h / 2, w / 2
        corners = np.array([[0, 0], [0, w], [h, 0], [h, w]], float) - [cy, cx]
        u = corners[:, 0] * c + corners[:, 1] * s + cy
        v = -corners[:, 0] * s + corners[:, 1] * c + cx
        ext = (u.min(), u.max(), v.min(), v.max())
    else:
        ext = (0.0, float(h), 0.0, float(w))
    lo = np.array([(ext[0] - margin) * stretch, (ext[2] - margin) / stretch])
    hi = np.array([(ext[1] + margin) * stretch, (ext[3] + margin) / stretch])
    # Cells cut by the edge count too: aim the density so about n_grains meet the image.
    density = n_grains / ((h + 0.75 * spacing) * (w + 0.75 * spacing))
    area = (ext[1] - ext[0] + 2 * margin) * (ext[3] - ext[2] + 2 * margin)
    n_total = int(round(density * area))
    seeds = _dart_throw(rng, n_total, lo, hi, 0.62 * spacing)
    n_seeds = len(seeds)
    weights = (0.32 * spacing) ** 2 * rng.uniform(-1.0, 1.0, n_seeds)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wy = 0.16 * spacing * _smooth_noise(rng, (h, w), 0.7 * spacing)
    wx = 0.16 * spacing * _smooth_noise(rng, (h, w), 0.7 * spacing)
    wy += 0.035 * spacing * _smooth_noise(rng, (h, w), 0.12 * spacing)
    wx += 0.035 * spacing * _smooth_noise(rng, (h, w), 0.12 * spacing)
    py, px = yy + wy, xx + wx
    if angle:
        py, px = (
            (py - cy) * np.float32(c) + (px - cx) * np.float32(s) + np.float32(cy),
            -(py - cy) * np.float32(s) + (px - cx) * np.float32(c) + np.float32(cx),
        )
    pts = np.stack([py * stretch, px / stretch], axis=-1).reshape(-1, 2)

    k = min(8, n_seeds)
    dist, idx = cKDTree(seeds).query(pts, k=k, workers=1)
    power = dist**2 - weights[idx]
    order = np.argsort(power, axis=1)[:, :2]
    rows = np.arange(len(pts))
    i1, i2 = idx[rows, order[:, 0]], idx[rows, order[:, 1]]
    p1, p2 = power[rows, order[:, 0]], power[rows, order[:, 1]]
    sep = np.linalg.norm(seeds[i1] - seeds[i2], axis=1)
    # Distance to the interface between the two nearest cells, in pixels.
    d_iface = ((p2 - p1) / (2 * np.maximum(sep, 1e-6))).reshape(h, w).astype(np.float32)
    raw = (i1 + 1).reshape(h, w).astype(np.int32)
    pair_lo = np.minimum(i1, i2).reshape(h, w)
    pair_hi = np.maximum(i1, i2).reshape(h, w)
    return GrainCells(_merge_fragments(raw), d_iface, pair_lo, pair_hi, n_seeds)


def grain_labels(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grain ids and boundary mask of a cell map ``raw``.

    A pixel is on a boundary when its 3x3 neighbourhood spans two or more cells
    (boundaries 2 px wide, centred on the interface); grains are the 4-connected
    regions of the rest, numbered ``1..N`` (pieces under 8 px count as boundary).

    Returns
    -------
    labels : ndarray
        ``(Y, X)`` uint16 grain ids, 0 on boundaries.
    boundaries : ndarray
        ``(Y, X)`` bool, exactly ``labels == 0``.
    """
    boundaries = ndi.maximum_filter(raw, size=3) != ndi.minimum_filter(raw, size=3)
    pieces = cc_label(~boundaries, connectivity=1)
    sizes = np.bincount(pieces.ravel())
    small = sizes < 8
    small[0] = True
    pieces[small[pieces]] = 0
    labels, _, _ = relabel_sequential(pieces)
    labels = labels.astype(np.uint16)
    return labels, labels == 0


def _merge_fragments(raw: np.ndarray) -> np.ndarray:
    """Give every piece of a cell but its largest to the nearest other cell."""
    comps = cc_label(raw, connectivity=1, background=-1)
    n = int(comps.max())
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    owner = np.zeros(n + 1, np.int64)
    owner[comps.ravel()] = raw.ravel()
    order = np.lexsort((sizes[1:], owner[1:])) + 1
    last = np.r_[owner[order][1:] != owner[order][:-1], True]
    keep = np.zeros(n + 1, bool)
    keep[order[last]] = True
    lost = ~keep[comps]
    if not lost.any():
        return raw
    _, (iy, ix) = ndi.distance_transform_edt(lost, return_indices=True)
    return raw[iy, ix]


def _add_blob(img: np.ndarray, centre: tuple[float, float], radius: float, depth: float) -> None:
    """Add a Gaussian blob (in place) within a small window around ``centre``."""
    h, w = img.shape
    r = int(np.ceil(3 * radius)) + 1
    y0, y1 = max(0, int(centre[0]) - r), min(h, int(centre[0]) + r + 1)
    x0, x1 = max(0, int(centre[1]) - r), min(w, int(centre[1]) + r + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    img[y0:y1, x0:x1] += depth * np.exp(-0.5 * d2 / radius**2).astype(np.float32)


# ----------------------------------------------------------------------------- nuclei


@dataclass
class NucleiSeries:
    """A synthetic fluorescence time-lapse of nuclei and its exact ground truth.

    Attributes
    ----------
    frames : ndarray
        ``(T, Y, X)`` uint16 camera counts.
    labels : ndarray
        ``(T, Y, X)`` uint16 instance labels; a nucleus' label is its track id.
    tracks : ndarray
        Structured array with fields ``track_id, start_frame, end_frame,
        parent_track_id`` (the Cell Tracking Challenge ``L B E P`` table; parent 0
        when a track starts in the first frame or enters the field).
    pixel_size_um : float
        Pixel edge length in micrometres.
    seed : int
        Seed it was generated from.
    """

    frames: np.ndarray
    labels: np.ndarray
    tracks: np.ndarray
    pixel_size_um: float
    seed: int = 0

    @property
    def counts(self) -> np.ndarray:
        """Number of nuclei in each frame."""
        return np.array([np.unique(f[f > 0]).size for f in self.labels])

    @property
    def divisions(self) -> int:
        """Number of tracks that have a parent."""
        return int((self.tracks["parent_track_id"] > 0).sum())


class _Nuclei:
    """Growable per-nucleus state of the simulation (one row per nucleus ever born)."""

    def __init__(self, rng: np.random.Generator, radius: float, n_frames: int) -> None:
        self.rng, self.radius, self.n_frames = rng, radius, n_frames
        self.rows: list[dict] = []

    def add(self, pos, vel, frame: int, *, parent: int = -1, scale: float = 1.0, **kw) -> int:
        rng = self.rng
        r_eq = kw.get("r_eq", self.radius * float(np.clip(rng.lognormal(0.0, 0.14), 0.7, 1.45)))
        aspect = kw.get("aspect", rng.uniform(1.0, 1.5))
        n_tex = 6
        freq = (
            2 * np.pi * rng.uniform(1.0, 5.5, n_tex) * np.exp(1j * rng.uniform(0, 2 * np.pi, n_tex))
        )
        n_nucleoli = rng.integers(1, 4)
        row = {
            "pos": np.asarray(pos, float),
            "vel": np.asarray(vel, float),
            "r_eq": r_eq,
            "aspect": aspect,
            "theta": kw.get("theta", rng.uniform(0, np.pi)),
            "omega": rng.normal(0, 0.01),
            "scale": scale,
            "bright": kw.get("bright", float(np.clip(rng.lognormal(-0.45, 0.4), 0.28, 1.3))),
            "flicker": (rng.uniform(40, 120), rng.uniform(0, 2 * np.pi)),
            "tex": tuple(
                np.asarray(v, np.float32)
                for v in (
                    freq.real,
                    freq.imag,
                    rng.uniform(0, 2 * np.pi, n_tex),
                    rng.uniform(0.03, 0.08, n_tex),
                )
            ),
            "nucleoli": tuple(
                np.asarray(v, np.float32)
                for v in (
                    rng.uniform(-0.45, 0.45, (n_nucleoli, 2)),
                    -0.5 / rng.uniform(0.1, 0.2, n_nucleoli) ** 2,
                    rng.uniform(0.25, 0.55, n_nucleoli),
                )
            ),
            "dip": rng.uniform(0.0, 0.5),
            "birth": frame,
            "end": None,
            "parent": parent,
            "partner": -1,
            "stick_until": -1,
            "div_time": frame + int(rng.uniform(1.8, 4.0) * self.n_frames) if parent >= 0 else None,
        }
        if row["div_time"] is None:
            row["div_time"] = int(rng.integers(8, max(int(2.5 * self.n_frames), 10)))
        self.rows.append(row)
        return len(self.rows) - 1


def synth_nuclei_series(
    n_frames: int = 170,
    shape: tuple[int, int] = (256, 256),
    n_nuclei: int | None = None,
    seed: int = 0,
    *,
    pixel_size_um: float = 0.65,
    radius_px: float = 9.0,
    drift: tuple[float, float] = (0.4, 1.6),
    bleach: float = 0.25,
    noise: float = 1.0,
) -> NucleiSeries:
    """Generate a fluorescence time-lapse of moving, touching and dividing nuclei.

    Nuclei are textured ellipses (chromatin texture, dark nucleoli) of varying size
    and brightness that follow persistent random walks, push each other apart, stick
    together in touching pairs, divide (the parent rounds up and brightens, two
    smaller daughters appear side by side and grow) and enter or leave the field at
    its edges; divisions are held back while the field is crowded, so the count
    stays near ``n_nuclei``. The excitation drifts by a smooth factor spanning
    ``drift`` over the series and bleaches by ``bleach``; the field is unevenly lit,
    blurred by the optics, and recorded with shot noise, read noise and a camera
    offset. Ground truth labels: a pixel belongs to the nucleus whose normalised
    elliptic radius there is smallest and below 1; label = track id.

    Parameters
    ----------
    n_frames : int
        Number of time points.
    shape : tuple of int
        Frame height and width in pixels.
    n_nuclei : int or None
        Nuclei in the field at a time; ``None`` gives 40 per 256x256 pixels.
    seed : int
        Seed of the random generator; equal seeds give identical series.
    pixel_size_um : float
        Pixel size stored with the series.
    radius_px : float
        Typical nucleus radius in pixels.
    drift : tuple of float
        Lowest and highest excitation factor reached over the series.
    bleach : float
        Fraction of the signal lost to photobleaching by the last frame.
    noise : float
        Noise scale (1 = a typical camera; 0 = noise free).

    Returns
    -------
    NucleiSeries
    """
    h, w = _check_shape(shape, minimum=32)
    if n_frames < 1:
        raise InputError("A synthetic series needs at least one frame.")
    rng = np.random.default_rng(seed)
    target = int(n_nuclei) if n_nuclei is not None else max(1, round(40 * h * w / 256**2))
    nuc = _Nuclei(rng, radius_px, n_frames)

    # Initial field: about a third of the nuclei in touching pairs.
    lo, hi = np.array([radius_px, radius_px]), np.array([h - radius_px, w - radius_px])
    for p in _dart_throw(rng, target, lo - radius_px, hi + radius_px, 2.4 * radius_px):
        if len(nuc.rows) >= target:
            break
        i = nuc.add(p, rng.normal(0, 0.4, 2), 0)
        if rng.random() < 0.4 and len(nuc.rows) < target:
            ang = rng.uniform(0, 2 * np.pi)
            j = nuc.add(p, nuc.rows[i]["vel"], 0)
            d = 0.92 * (nuc.rows[i]["r_eq"] + nuc.rows[j]["r_eq"])
            nuc.rows[j]["pos"] = p + d * np.array([np.sin(ang), np.cos(ang)])
            _pair(nuc, i, j, int(rng.integers(40, max(41, 4 * n_frames))))

    excitation = _drift_curve(rng, n_frames, drift, bleach)
    signal = np.zeros((n_frames, h, w), np.float32)
    owners = np.zeros((n_frames, h, w), np.int32)
    alive = list(range(len(nuc.rows)))
    for t in range(n_frames):
        if t > 0:
            alive = _step(nuc, alive, t, target, (h, w))
        present = _render(nuc, alive, t, signal[t], owners[t])
        for i in alive:
            if i not in present:
                nuc.rows[i]["end"] = t - 1
        alive = [i for i in alive if i in present]
    for i in alive:
        nuc.rows[i]["end"] = n_frames - 1

    # Track ids in order of birth; nuclei never seen are dropped.
    seen = [i for i, r in enumerate(nuc.rows) if r["end"] is not None and r["end"] >= r["birth"]]
    lut = np.zeros(len(nuc.rows) + 1, np.int64)
    lut[np.array(seen, int) + 1] = np.arange(1, len(seen) + 1)
    tracks = np.zeros(len(seen), TRACK_DTYPE)
    for k, i in enumerate(seen):
        r = nuc.rows[i]
        parent = int(lut[r["parent"] + 1]) if r["parent"] >= 0 else 0
        tracks[k] = (k + 1, r["birth"], r["end"], parent)
    labels = lut[owners].astype(np.uint16)

    # Touching nuclei: a thin, sometimes absent, dimmer seam where they meet.
    dip = np.array([0.0] + [r["dip"] for r in nuc.rows], np.float32)
    seam = _seam(owners)
    signal *= 1.0 - seam * dip[owners]
    frames = _camera(rng, signal, excitation, noise)
    return NucleiSeries(frames, labels, tracks, float(pixel_size_um), int(seed))


def _pair(nuc: _Nuclei, i: int, j: int, until: int) -> None:
    for a, b in ((i, j), (j, i)):
        nuc.rows[a]["partner"], nuc.rows[a]["stick_until"] = b, until


def _drift_curve(
    rng: np.random.Generator, n: int, span: tuple[float, float], bleach: float
) -> np.ndarray:
    """Excitation factor per frame: a smooth curve over ``span`` times bleaching and flicker."""
    if n == 1:
        return np.ones(1, np.float32)
    ctrl = rng.uniform(0.0, 1.0, 5)
    first_high = rng.random() < 0.5
    ctrl[0] = rng.uniform(0.7, 1.0) if first_high else rng.uniform(0.0, 0.3)
    ctrl[2] = rng.uniform(0.0, 0.2) if first_high else rng.uniform(0.8, 1.0)
    knots = np.linspace(0, n - 1, 5)
    s = PchipInterpolator(knots, ctrl)(np.arange(n))
    s = (s - s.min()) / max(s.max() - s.min(), 1e-9)
    lo, hi = span
    curve = lo * (hi / lo) ** s
    curve *= (1.0 - bleach) ** (np.arange(n) / (n - 1))
    curve *= 1.0 + 0.02 * rng.standard_normal(n)
    return curve.astype(np.float32)


def _step(nuc: _Nuclei, alive: list[int], t: int, target: int, shape: tuple[int, int]) -> list[int]:
    """Advance the simulation to frame ``t``: divisions, entries, motion."""
    rng, rows, h, w = nuc.rng, nuc.rows, shape[0], shape[1]
    out: list[int] = []
    born = 0
    for i in alive:
        r = rows[i]
        if r["div_time"] > t:
            out.append(i)
            continue
        y, x = r["pos"]
        margin = 2.5 * r["r_eq"]
        crowded = len(alive) + born >= target + 3
        if crowded or not (margin < y < h - margin and margin < x < w - margin):
            r["div_time"] = t + int(rng.integers(5, 25))
            out.append(i)
            continue
        r["end"] = t - 1
        ang = rng.uniform(0, np.pi)
        axis = np.array([np.sin(ang), np.cos(ang)])
        kids = []
        for sign in (-1, 1):
            k = nuc.add(
                r["pos"] + sign * 0.55 * r["r_eq"] * axis,
                r["vel"] + sign * 0.3 * axis,
                t,
                parent=i,
                scale=0.72,
                r_eq=r["r_eq"] * rng.uniform(0.95, 1.05),
                theta=ang + np.pi / 2,
                bright=r["bright"] * rng.uniform(0.85, 1.15),
            )
            kids.append(k)
        _pair(nuc, kids[0], kids[1], t + int(rng.integers(20, 80)))
        out.extend(kids)
        born += 1
    alive = out
    if len(alive) < target - 1 and rng.random() < 0.25:
        side = rng.integers(4)
        along = rng.uniform(0.1, 0.9)
        pos = [(0, along * w), (h, along * w), (along * h, 0), (along * h, w)][side]
        inward = [(1, 0), (-1, 0), (0, 1), (0, -1)][side]
        vel = 0.8 * np.array(inward, float) + rng.normal(0, 0.2, 2)
        alive.append(nuc.add(pos, vel, t))

    # Motion: persistent random walk, pairs move together, overlaps pushed apart.
    n = len(alive)
    pos = np.array([rows[i]["pos"] for i in alive])
    vel = np.array([rows[i]["vel"] for i in alive])
    rad = np.array([rows[i]["r_eq"] * rows[i]["scale"] for i in alive])
    vel = 0.92 * vel + 0.2 * rng.standard_normal((n, 2))
    index = {i: k for k, i in enumerate(alive)}
    partner = np.array(
        [index.get(rows[i]["partner"], -1) if rows[i]["stick_until"] >= t else -1 for i in alive]
    )
    has = partner >= 0
    vel[has] = 0.5 * (vel[has] + vel[partner[has]])
    pos = pos + vel
    diff = pos[:, None, :] - pos[None, :, :]
    dist = np.sqrt((diff**2).sum(-1)) + np.eye(n) * 1e9
    reach = rad[:, None] + rad[None, :]
    push = np.clip(0.84 * reach - dist, 0, None) * 0.5
    force = (push[..., None] * diff / dist[..., None]).sum(1)
    if has.any():
        k = np.flatnonzero(has)
        d = pos[partner[k]] - pos[k]
        dn = np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
        gap = dn[:, 0] - 0.9 * reach[k, partner[k]]
        force[k] += 0.3 * np.clip(gap, 0, None)[:, None] * d / dn
    pos = pos + force
    for k, i in enumerate(alive):
        r = rows[i]
        r["pos"], r["vel"] = pos[k], vel[k]
        r["theta"] += r["omega"]
        r["scale"] = min(1.0, r["scale"] + 0.007)
    return alive


def _render(nuc: _Nuclei, alive: list[int], t: int, out: np.ndarray, owner: np.ndarray) -> set[int]:
    """Draw the nuclei of frame ``t`` into ``out`` and ``owner``; return those visible."""
    h, w = out.shape
    rmin = np.ones((h, w), np.float32)
    tail = np.zeros((h, w), np.float32)
    for i in alive:
        r = nuc.rows[i]
        to_div = r["div_time"] - t
        age = t - r["birth"] if r["parent"] >= 0 else 99
        mitosis = min(max((5 - to_div) / 5, 0.0), 1.0) if to_div > 0 else 0.0
        r_eq = float(r["r_eq"] * r["scale"] * (1 - 0.15 * mitosis))
        aspect = 1 + (r["aspect"] - 1) * (1 - mitosis) * min(1.0, 0.3 + age / 10)
        a, b = r_eq * math.sqrt(aspect), r_eq / math.sqrt(aspect)
        period, phase = r["flicker"]
        bright = r["bright"] * (1 + 0.1 * math.sin(2 * math.pi * t / period + phase))
        bright *= (1 + 0.7 * mitosis) * (1 + 0.5 * max(0.0, 1 - age / 6))
        cy, cx = float(r["pos"][0]), float(r["pos"][1])
        half = math.ceil(a) + 3
        y0, y1 = max(0, int(cy) - half), min(h, int(cy) + half + 2)
        x0, x1 = max(0, int(cx) - half), min(w, int(cx) + half + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        # float32 throughout: Python scalars keep the arrays in single precision.
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        ct, st = math.cos(r["theta"]), math.sin(r["theta"])
        un, vn = (ct * dx + st * dy) * (1 / a), (ct * dy - st * dx) * (1 / b)
        rr = np.sqrt(un * un + vn * vn)
        fy, fx, ph, amp = r["tex"]
        waves = np.cos(fy[:, None, None] * vn + fx[:, None, None] * un + ph[:, None, None])
        tex = 1 + np.tensordot(amp, waves, 1)
        centres, inv_var, depth = r["nucleoli"]
        d2 = (un - centres[:, 1, None, None]) ** 2 + (vn - centres[:, 0, None, None]) ** 2
        tex *= np.prod(1 - depth[:, None, None] * np.exp(d2 * inv_var[:, None, None]), axis=0)
        tex *= 1 - (0.2 - 0.15 * mitosis) * rr * rr
        edge = 1 / (1 + np.exp((rr - 1) * (r_eq / 0.7)))
        value = (bright * edge) * tex
        win = (slice(y0, y1), slice(x0, x1))
        m = rr < rmin[win]
        rmin[win][m] = rr[m]
        owner[win][m] = i + 1
        out[win][m] = value[m]
        np.maximum(tail[win], np.where(rr >= 1, value, np.float32(0)), out=tail[win])
    inside = owner > 0
    out[~inside] = tail[~inside]
    return {int(v) - 1 for v in np.unique(owner[inside])}


def _seam(owners: np.ndarray) -> np.ndarray:
    """Pixels of a nucleus 4-adjacent to another nucleus, per frame (float32 0/1)."""
    seam = np.zeros(owners.shape, bool)
    for axis in (1, 2):
        a = np.swapaxes(owners, 0, axis)[:-1]
        b = np.swapaxes(owners, 0, axis)[1:]
        touch = (a != b) & (a > 0) & (b > 0)
        np.swapaxes(seam, 0, axis)[:-1] |= touch
        np.swapaxes(seam, 0, axis)[1:] |= touch
    return seam.astype(np.float32)


def _camera(
    rng: np.random.Generator, signal: np.ndarray, excitation: np.ndarray, noise: float
) -> np.ndarray:
    """Excite, blur, light unevenly and record ``signal`` (T, Y, X) with a camera -> uint16."""
    t, h, w = signal.shape
    illum = _illumination(rng, (h, w), vignette=rng.uniform(0.25, 0.4), gradient=0.15)
    autofluor = 0.04 * (1 + 0.3 * _smooth_noise(rng, (h, w), 20.0)).astype(np.float32)
    peak_photons, gain, offset, read = 600.0, 1.6, 100.0, 3.0
    lam = ndi.gaussian_filter(signal, (0, 1.1, 1.1))
    lam += autofluor
    lam *= illum
    lam *= excitation[:, None, None] * peak_photons
    if noise > 0:
        lam = _shot_noise(rng, lam, noise)
    counts = lam * gain + offset
    if noise > 0:
        counts += rng.standard_normal(counts.shape, dtype=np.float32) * np.float32(read * noise)
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


# ----------------------------------------------------------------------------- files


def _imwrite(path: Path, data: np.ndarray, pixel_size_um: float, axes: str) -> None:
    import tifffile

    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1.0 / pixel_size_um, 1.0 / pixel_size_um),
        metadata={"axes": axes, "unit": "um"},
    )


def write_sample(kind: str, out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write a synthetic sample and its ground truth into ``out_dir``.

    Files (ImageJ TIFFs carry the pixel size in micrometres):

    ``grains`` (512x512, 0.5 um/px)
        ``image.tif`` uint8 micrograph; ``grain_labels.tif`` uint16 grain ids 1..N,
        0 on boundaries; ``boundaries.tif`` uint8, 255 = boundary; ``truth.json``.
    ``nuclei-series`` (170 frames of 256x256, 0.65 um/px)
        ``image.tif`` uint16 ``TYX`` stack; ``labels.tif`` uint16 ``TYX`` instance
        labels, label = track id; ``man_track.txt`` lineage, one ``L B E P`` line per
        track (Cell Tracking Challenge format: id, first frame, last frame, parent id
        or 0); ``truth.json``.

    ``truth.json`` holds the kind, seed, pixel size, shape, counts and microseg version.

    Parameters
    ----------
    kind : str
        ``"grains"`` or ``"nuclei-series"``.
    out_dir : str or Path
        Folder to write into (created if missing; files in it are replaced).
    seed : int
        Seed of the sample.

    Returns
    -------
    dict of str to Path
        Each written file by its name without extension (``"image"``, ``"truth"``...).
    """
    from microseg import __version__

    if kind not in SAMPLE_FILES:
        raise InputError(f"Unknown sample kind '{kind}'; choose one of {', '.join(SAMPLE_FILES)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {Path(name).stem: out / name for name in SAMPLE_FILES[kind]}
    truth: dict = {"kind": kind, "seed": int(seed), "microseg_version": __version__}
    if kind == "grains":
        g = synth_grains(seed=seed)
        px = g.pixel_size_um
        _imwrite(paths["image"], g.image, px, "YX")
        _imwrite(paths["grain_labels"], g.labels, px, "YX")
        _imwrite(paths["boundaries"], g.boundaries.astype(np.uint8) * 255, px, "YX")
        truth.update(n_grains=g.n_grains, shape=list(g.image.shape))
    else:
        s = synth_nuclei_series(seed=seed)
        px = s.pixel_size_um
        _imwrite(paths["image"], s.frames, px, "TYX")
        _imwrite(paths["labels"], s.labels, px, "TYX")
        paths["man_track"].write_text(
            "".join(f"{r[0]} {r[1]} {r[2]} {r[3]}\n" for r in s.tracks.tolist())
        )
        truth.update(
            n_frames=int(s.frames.shape[0]),
            shape=list(s.frames.shape),
            n_tracks=len(s.tracks),
            n_divisions=s.divisions,
            nuclei_per_frame=s.counts.tolist(),
        )
    truth.update(pixel_size_um=px, unit="um", files=SAMPLE_FILES[kind])
    paths["truth"].write_text(json.dumps(truth, indent=2) + "\n")
    return paths
