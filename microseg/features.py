"""Engineered multi-scale pixel features: ilastik's feature families and scales.

Six families, each at a choice of Gaussian scales (sigma, in pixels):

========== ======================================= ======= =========
name       feature                                 outputs scales
========== ======================================= ======= =========
gaussian   Gaussian smoothing                      1       0.3 - 10
log        Laplacian of Gaussian                   1       0.7 - 10
gradient   Gaussian gradient magnitude             1       0.7 - 10
dog        difference of Gaussians G(s) - G(0.66s) 1       0.7 - 10
structure  structure-tensor eigenvalues            2       0.7 - 10
hessian    Hessian-of-Gaussian eigenvalues         2       0.7 - 10
========== ======================================= ======= =========

As in ilastik, the structure tensor uses the gradient at scale ``s`` (inner
scale) and smooths its products at ``s / 2`` (outer scale); eigenvalues are
listed largest first. One Gaussian is computed per channel and scale and every
family at that scale is derived from it: first and second derivatives by
central finite differences of the smoothed image (``derivatives="fd"``, the
default; fast) or by Gaussian derivative filters (``derivatives="exact"``).
Boundaries are mirrored (scipy's ``"reflect"`` mode).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from microseg.errors import InputError
from microseg.preprocess import as_channels, normalize_percentile

FEATURES_VERSION = 1
"""Bumped whenever the numbers computed for a feature set change."""

SCALES: tuple[float, ...] = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
FAMILIES: tuple[str, ...] = ("gaussian", "log", "gradient", "dog", "structure", "hessian")
FAMILY_LABELS: dict[str, str] = {
    "gaussian": "Gaussian smoothing",
    "log": "Laplacian of Gaussian",
    "gradient": "Gaussian gradient magnitude",
    "dog": "Difference of Gaussians",
    "structure": "Structure tensor eigenvalues",
    "hessian": "Hessian of Gaussian eigenvalues",
}
FAMILY_OUTPUTS: dict[str, tuple[str, ...]] = {
    "gaussian": ("",),
    "log": ("",),
    "gradient": ("",),
    "dog": ("",),
    "structure": (" max", " min"),
    "hessian": (" max", " min"),
}
MIN_SCALE: dict[str, float] = {f: (0.3 if f == "gaussian" else 0.7) for f in FAMILIES}
DOG_RATIO = 0.66
DERIVATIVES = ("fd", "exact")
TRUNCATE = 4.0

DEFAULT_SCALES: tuple[float, ...] = (0.7, 1.0, 1.6, 3.5)
DEFAULT_FAMILIES: tuple[str, ...] = ("gaussian", "log", "gradient", "structure", "hessian")
DEFAULT_SKIP: tuple[tuple[str, float], ...] = (("structure", 3.5),)
"""Cells left out of the default grid: costly for what they add (measured F1 vs time)."""


def _grid(families: Iterable[str], scales: Iterable[float]) -> tuple[tuple[str, float], ...]:
    scales = tuple(scales)
    return tuple((f, float(s)) for f in families for s in scales if s >= MIN_SCALE.get(f, 0.0))


def _canonical_scale(s: float) -> float:
    for ref in SCALES:
        if abs(float(s) - ref) < 1e-6:
            return ref
    raise InputError(
        f"Feature scale {s} is not offered; choose from {', '.join(str(x) for x in SCALES)}."
    )


@dataclass(frozen=True)
class FeatureSet:
    """Which feature families are computed at which scales.

    Parameters
    ----------
    selection : tuple of (family, scale)
        The selected cells of the family x scale grid (ilastik's feature matrix).
        Order and duplicates do not matter; it is stored sorted.
    derivatives : {"fd", "exact"}
        ``"fd"``: derivatives by central differences of the smoothed image (fast);
        ``"exact"``: Gaussian derivative filters (closer to ilastik, slower).

    The default: Gaussian, LoG, gradient magnitude and Hessian eigenvalues at
    0.7, 1.0, 1.6 and 3.5, structure-tensor eigenvalues at 0.7, 1.0 and 1.6
    (26 features per channel). Use :meth:`grid` for "these families at these scales".
    """

    selection: tuple[tuple[str, float], ...] = field(
        default_factory=lambda: tuple(
            c for c in _grid(DEFAULT_FAMILIES, DEFAULT_SCALES) if c not in DEFAULT_SKIP
        )
    )
    derivatives: str = "fd"

    def __post_init__(self) -> None:
        cells = set()
        for item in self.selection:
            try:
                fam, s = item
            except (TypeError, ValueError):
                raise InputError(
                    f"Feature selection item {item!r} is not (family, scale)."
                ) from None
            if fam not in FAMILIES:
                raise InputError(
                    f"Unknown feature family '{fam}'; choose from {', '.join(FAMILIES)}."
                )
            s = _canonical_scale(s)
            if s < MIN_SCALE[fam]:
                raise InputError(
                    f"{FAMILY_LABELS[fam]} is not defined at scale {s}; "
                    f"its smallest scale is {MIN_SCALE[fam]}."
                )
            cells.add((fam, s))
        if not cells:
            raise InputError("Select at least one feature (a family at a scale).")
        if self.derivatives not in DERIVATIVES:
            raise InputError(
                f"Unknown derivative method '{self.derivatives}'; choose 'fd' or 'exact'."
            )
        ordered = tuple(sorted(cells, key=lambda c: (FAMILIES.index(c[0]), c[1])))
        object.__setattr__(self, "selection", ordered)

    @classmethod
    def grid(
        cls,
        families: Iterable[str] = DEFAULT_FAMILIES,
        scales: Iterable[float] = DEFAULT_SCALES,
        derivatives: str = "fd",
    ) -> FeatureSet:
        """Every family in ``families`` at every scale in ``scales`` where it is defined."""
        families = tuple(families)
        for fam in families:
            if fam not in FAMILIES:
                raise InputError(
                    f"Unknown feature family '{fam}'; choose from {', '.join(FAMILIES)}."
                )
        return cls(_grid(families, [_canonical_scale(s) for s in scales]), derivatives)

    @property
    def families(self) -> tuple[str, ...]:
        """Families with at least one selected scale, in canonical order."""
        present = {f for f, _ in self.selection}
        return tuple(f for f in FAMILIES if f in present)

    @property
    def scales(self) -> tuple[float, ...]:
        """Scales with at least one selected family, ascending."""
        return tuple(sorted({s for _, s in self.selection}))

    def scales_of(self, family: str) -> tuple[float, ...]:
        """Selected scales of one family."""
        return tuple(s for f, s in self.selection if f == family)

    def n_features(self, n_channels: int = 1) -> int:
        """Number of feature images for an image with ``n_channels`` channels."""
        return n_channels * sum(len(FAMILY_OUTPUTS[f]) for f, _ in self.selection)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (inverse of :meth:`from_dict`)."""
        return {
            "version": FEATURES_VERSION,
            "families": {f: list(self.scales_of(f)) for f in self.families},
            "derivatives": self.derivatives,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSet:
        """Rebuild a feature set from :meth:`to_dict` output."""
        try:
            fams = data["families"]
            cells = tuple((str(f), float(s)) for f, scales in fams.items() for s in scales)
            derivatives = str(data.get("derivatives", "fd"))
        except (KeyError, TypeError, AttributeError, ValueError):
            raise InputError("The feature set description is incomplete or damaged.") from None
        version = int(data.get("version", FEATURES_VERSION))
        if version > FEATURES_VERSION:
            raise InputError(
                f"The feature set was made by a newer microseg (features version {version})."
            )
        return cls(cells, derivatives)

    def key(self) -> str:
        """Stable short string identifying the computed numbers (for caches and model files)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return f"f{FEATURES_VERSION}-" + hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line for people, e.g. ``"gaussian 0.7,1.6; log 0.7,1.6"``."""
        return "; ".join(
            f"{f} {','.join(f'{s:g}' for s in self.scales_of(f))}" for f in self.families
        )


def feature_names(feature_set: FeatureSet | None = None, n_channels: int = 1) -> list[str]:
    """Names of the feature images in the order :func:`compute_features` returns them."""
    fs = feature_set or FeatureSet()
    names = []
    for c in range(n_channels):
        prefix = f"ch{c} " if n_channels > 1 else ""
        for fam, s in fs.selection:
            for suffix in FAMILY_OUTPUTS[fam]:
                names.append(f"{prefix}{fam}{suffix} {s:g}")
    return names


def compute_features(
    image: np.ndarray,
    feature_set: FeatureSet | None = None,
    normalise: bool = True,
    workers: int | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Compute the selected features of every channel.

    Parameters
    ----------
    image : ndarray
        ``(Y, X)`` or ``(C, Y, X)``, any real dtype.
    feature_set : FeatureSet, optional
        Families and scales; the default selection when omitted.
    normalise : bool
        Scale each channel with :func:`microseg.preprocess.normalize_percentile` first.
    workers : int, optional
        Threads; default: the number of CPUs, at most 4. The work is split by channel,
        scale and horizontal strip (each strip with enough context rows that the
        result equals the whole-image computation exactly).
    reference : ndarray, optional
        ``(C, N)`` values the normalisation percentiles are taken from (the whole
        image's sample when ``image`` is a tile of it; see
        :func:`~microseg.preprocess.normalize_percentile`).

    Returns
    -------
    ndarray
        float32 ``(F, Y, X)``, F = ``feature_set.n_features(C)``, named by
        :func:`feature_names`.
    """
    fs = feature_set or FeatureSet()
    chans = as_channels(np.asarray(image))
    if chans.shape[-2] < 2 or chans.shape[-1] < 2:
        raise InputError(f"The image is too small for features ({chans.shape[-2:]} pixels).")
    if normalise:
        chans = normalize_percentile(chans, reference=reference)
    elif chans.dtype != np.float32:
        chans = chans.astype(np.float32)
    n_c, ny, nx = chans.shape
    out = np.empty((fs.n_features(n_c), ny, nx), np.float32)

    # index of each (family, scale) output block within one channel
    offsets: dict[tuple[str, float], int] = {}
    pos = 0
    for cell in fs.selection:
        offsets[cell] = pos
        pos += len(FAMILY_OUTPUTS[cell[0]])
    per_channel = pos

    # tasks: one channel, one scale, one horizontal strip (with a halo of context rows)
    rows = _strip_rows(nx) if _STRIP_PIXELS else ny
    tasks = [
        (c, s, y0, min(ny, y0 + rows))
        for c in range(n_c)
        for s in sorted(fs.scales, reverse=True)
        for y0 in range(0, ny, rows)
    ]

    def run(task: tuple[int, float, int, int]) -> None:
        c, s, y0, y1 = task
        base = c * per_channel
        fams = [fam for fam in FAMILIES if (fam, s) in offsets]
        halo = _halo(s)
        lo, hi = max(0, y0 - halo), min(ny, y1 + halo)
        if lo == 0 and hi == ny:  # the whole image: write in place
            slots = {
                fam: out[
                    base + offsets[(fam, s)] : base + offsets[(fam, s)] + len(FAMILY_OUTPUTS[fam])
                ]
                for fam in fams
            }
            _scale_features(chans[c], s, slots, fs.derivatives)
            return
        n_out = sum(len(FAMILY_OUTPUTS[fam]) for fam in fams)
        buf = np.empty((n_out, hi - lo, nx), np.float32)
        slots, k = {}, 0
        for fam in fams:
            slots[fam] = buf[k : k + len(FAMILY_OUTPUTS[fam])]
            k += len(FAMILY_OUTPUTS[fam])
        _scale_features(chans[c, lo:hi], s, slots, fs.derivatives)
        for fam in fams:
            a = base + offsets[(fam, s)]
            out[a : a + len(FAMILY_OUTPUTS[fam]), y0:y1] = slots[fam][:, y0 - lo : y1 - lo]

    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    if n_workers <= 1 or len(tasks) == 1:
        for task in tasks:
            run(task)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as ex:
            list(ex.map(run, tasks))
    return out


# ----------------------------------------------------------------------------- kernels

_STRIP_PIXELS = 1 << 18
"""Pixels per strip (1 MiB per float32 array): the working set stays in cache."""


def _strip_rows(nx: int) -> int:
    return max(32, _STRIP_PIXELS // max(1, nx))


def _radius(sigma: float) -> int:
    return int(TRUNCATE * sigma + 0.5)


def context_px(feature_set: FeatureSet | None = None) -> int:
    """Pixels of context on each side that make the features of a region equal to
    those of the whole image (the halo of the largest scale)."""
    fs = feature_set or FeatureSet()
    return max(_halo(s) for s in fs.scales)


def _halo(sigma: float) -> int:
    """Context rows a strip needs so that its own rows equal the whole-image result."""
    return _radius(sigma) + 2 + _radius(0.5 * sigma)


def gaussian(image: np.ndarray, sigma: float, out: np.ndarray | None = None) -> np.ndarray:
    """Gaussian smoothing of a 2-D float32 image, as ``scipy.ndimage.gaussian_filter``.

    Mirrored border (``mode="reflect"``), kernel truncated at 4 sigma. Small kernels
    (radius <= 2) run as sums of shifted float32 arrays, which is several times faster
    than scipy's line buffers and equal to within float32 rounding.
    """
    radius = int(TRUNCATE * sigma + 0.5)
    if radius > _SHIFT_MAX_RADIUS or min(image.shape) <= 2 * radius or image.ndim != 2:
        return ndi.gaussian_filter(image, sigma, output=out, mode="reflect", truncate=TRUNCATE)
    x = np.arange(radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    w /= 2 * w.sum() - w[0]
    tmp = _smooth_axis(image, w.astype(np.float32), 0, np.empty_like(image, dtype=np.float32))
    if out is None:
        out = np.empty(image.shape, np.float32)
    return _smooth_axis(tmp, w.astype(np.float32), 1, out)


_SHIFT_MAX_RADIUS = 4


def _smooth_axis(a: np.ndarray, w: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """Correlate along ``axis`` with the symmetric kernel ``w[|k|]`` (reflect border)."""
    a = np.moveaxis(a, axis, -1)
    o = np.moveaxis(out, axis, -1)
    n = a.shape[-1]
    np.multiply(a, w[0], out=o)
    tmp = np.empty_like(a[..., : n - 2], dtype=np.float32)
    for k in range(1, len(w)):
        t = tmp[..., : n - 2 * k]
        np.add(a[..., : n - 2 * k], a[..., 2 * k :], out=t)
        t *= w[k]
        o[..., k : n - k] += t
        for i in range(k):  # the k lines at each border, mirrored
            o[..., i] += w[k] * (a[..., k - i - 1] + a[..., i + k])
            j = n - 1 - i
            o[..., j] += w[k] * (a[..., j - k] + a[..., 2 * n - j - k - 1])
    return out


def _diff1(a: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """Central first difference with mirrored border (matches scipy's ``reflect``)."""
    a = np.moveaxis(a, axis, -1)
    o = np.moveaxis(out, axis, -1)
    np.subtract(a[..., 2:], a[..., :-2], out=o[..., 1:-1])
    o[..., 1:-1] *= 0.5
    np.subtract(a[..., 1], a[..., 0], out=o[..., 0])
    o[..., 0] *= 0.5
    np.subtract(a[..., -1], a[..., -2], out=o[..., -1])
    o[..., -1] *= 0.5
    return out


def _diff2(a: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """Second difference ``a[i-1] - 2 a[i] + a[i+1]`` with mirrored border."""
    a = np.moveaxis(a, axis, -1)
    o = np.moveaxis(out, axis, -1)
    np.add(a[..., 2:], a[..., :-2], out=o[..., 1:-1])
    o[..., 1:-1] -= a[..., 1:-1]
    o[..., 1:-1] -= a[..., 1:-1]
    np.subtract(a[..., 1], a[..., 0], out=o[..., 0])
    np.subtract(a[..., -2], a[..., -1], out=o[..., -1])
    return out


def eigvals_sym2(
    a: np.ndarray, b: np.ndarray, d: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Eigenvalues of symmetric 2x2 matrices ``[[a, b], [b, d]]``, largest first.

    Returns ``(2, ...)`` float32 (``out`` when given).
    """
    if out is None:
        out = np.empty((2, *a.shape), np.float32)
    half_tr = out[0]
    np.add(a, d, out=half_tr)
    half_tr *= 0.5
    rad = out[1]
    np.subtract(a, d, out=rad)
    rad *= 0.5
    np.multiply(rad, rad, out=rad)
    rad += b * b
    np.sqrt(rad, out=rad)
    # out[0] = half_tr + rad, out[1] = half_tr - rad
    np.subtract(half_tr, rad, out=rad)  # rad now holds the smaller eigenvalue
    half_tr *= 2.0
    half_tr -= rad  # 2*half_tr - min = max
    return out


def _scale_features(
    img: np.ndarray, s: float, slots: dict[str, np.ndarray], derivatives: str
) -> None:
    """Every selected family of one channel at scale ``s``, written into ``slots``."""
    g = slots["gaussian"][0] if "gaussian" in slots else None
    g = gaussian(img, s, out=g) if g is not None else gaussian(img, s)
    if "dog" in slots:
        dog = slots["dog"][0]
        gaussian(img, DOG_RATIO * s, out=dog)
        np.subtract(g, dog, out=dog)
    need_grad = "gradient" in slots or "structure" in slots
    need_hess = "log" in slots or "hessian" in slots
    if not (need_grad or need_hess):
        return
    exact = derivatives == "exact"
    if exact:
        gy = _gauss_deriv(img, s, (1, 0)) if need_grad else None
        gx = _gauss_deriv(img, s, (0, 1)) if need_grad else None
    else:
        gy = _diff1(g, 0, np.empty_like(g)) if need_grad else None
        gx = _diff1(g, 1, np.empty_like(g))  # also the first step of the mixed derivative
    if need_hess:
        if exact:
            hyy = _gauss_deriv(img, s, (2, 0))
            hxx = _gauss_deriv(img, s, (0, 2))
            hxy = _gauss_deriv(img, s, (1, 1))
        else:
            hxy = _diff1(gx, 0, np.empty_like(g))
            hxx = _diff2(g, 1, np.empty_like(g))
            hyy = _diff2(g, 0, np.empty_like(g))
        if "log" in slots:
            np.add(hxx, hyy, out=slots["log"][0])
        if "hessian" in slots:
            eigvals_sym2(hxx, hxy, hyy, out=slots["hessian"])
        del hxx, hxy, hyy
    if "gradient" in slots:
        mag = slots["gradient"][0]
        np.multiply(gx, gx, out=mag)
        mag += gy * gy
        np.sqrt(mag, out=mag)
    if "structure" in slots:
        outer = 0.5 * s
        txx = gaussian(gx * gx, outer)
        tyy = gaussian(gy * gy, outer)
        np.multiply(gx, gy, out=gx)
        txy = gaussian(gx, outer)
        eigvals_sym2(txx, txy, tyy, out=slots["structure"])


def _gauss_deriv(img: np.ndarray, s: float, order: tuple[int, int]) -> np.ndarray:
    return ndi.gaussian_filter(img, s, order=order, mode="reflect", truncate=TRUNCATE)
