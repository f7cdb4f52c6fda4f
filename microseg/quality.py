"""Quality verdicts: how far a grain map or a nuclei result can be trusted.

A measurement tool is judged by the wrong numbers it reports without a warning.
Every result gets a verdict — ``ok`` (looks fine), ``check`` (check this) or
``do_not_trust`` — with one sentence per reason, what to do next, and the numbers
behind it (``checks``). The checks look at three things:

* the model is out of its depth: the image is unlike its training images (the
  network's feature statistics), much of the prediction is unsure, the nuclei's
  edges are blurred over much of their size (out of focus);
* the result is implausible: the three ASTM E112 estimates of G disagree, the
  "grains" are isolated blobs (pores, particles) rather than a tessellation, one
  "grain" covers most of the image, boundaries cover an implausible share of it;
  nuclei cover most of the image or are not compact;
* the measurement is weak: too few grains for E112's 10 % relative accuracy, grains
  a few pixels across, no pixel size or an implausible one.

The thresholds are round numbers from the standards and from what a tessellation
is (an interior grain of a plane section has about six neighbours), not fitted to
images; ``benchmarks/bench_quality.py`` measures how well each check separates good
from bad results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from microseg.errors import InputError

OK, CHECK, DO_NOT_TRUST, INFO = "ok", "check", "do_not_trust", "info"
VERDICT_TEXT = {OK: "looks fine", CHECK: "check this", DO_NOT_TRUST: "do not trust"}

# grain maps
G_SPREAD_CHECK = 1.25  # G units between the planimetric, intercept and mean-area estimates
G_SPREAD_BAD = 2.5
MIN_NEIGHBOURS = 3.0  # median neighbours of an interior grain (a tessellation has ~6)
LARGEST_GRAIN_BAD = 0.5  # one "grain" over half the image: not a grain map
BOUNDARY_FRACTION_RANGE = (0.005, 0.5)  # boundaries over half the image: not a grain map
MIN_GRAINS = 50  # E112 planimetric: at least 50 grains in a field
REL_ACCURACY_PCT = 10.0  # E112's usual target relative accuracy (above it: said)
REL_ACCURACY_WEAK_PCT = 25.0  # above it: check
MIN_GRAIN_AREA_PX = 30.0  # mean area: grains this small are barely resolved
PIXEL_SIZE_RANGE_UM = (5e-4, 50.0)  # 0.5 nm (TEM) to 50 µm (macro photography)

# both: the network's own feature statistics (microseg.deep.familiarity); 1 = the
# 95th percentile of the training crops
UNFAMILIAR_CHECK = 1.5
UNFAMILIAR_BAD = 2.0

# nuclei
UNSURE_NUCLEI_CHECK = 0.15  # pixels whose most probable class is below 0.6
FOREGROUND_BAD = 0.7  # nuclei over 70 % of the image
MIN_SOLIDITY = 0.8  # median solidity: nuclei are compact
DIAMETER_RATIO = 2.0  # median diameter vs the model's training diameter, either way
# Out of focus: a nucleus edge (contrast / steepest gradient, ~2.5 sigma of a blurred step)
# wider than this many pixels and than this fraction of the nucleus diameter. A sharp,
# Nyquist-sampled edge is 2-4 px wide.
BLUR_EDGE_PX = 5.0
BLUR_EDGE_RATIO = 0.2


@dataclass
class Finding:
    """One check that fired: its level, the sentence that says why, and what to do."""

    check: str
    level: str
    reason: str
    action: str = ""


@dataclass
class Quality:
    """A verdict with its reasons and the numbers behind them.

    Attributes
    ----------
    verdict : str
        ``"ok"``, ``"check"`` or ``"do_not_trust"``.
    findings : list of Finding
        The checks that fired, worst first (``info`` findings do not change the verdict).
    checks : dict
        Every number computed, by name (``None`` where it does not apply).
    """

    verdict: str
    findings: list[Finding] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """Why the verdict is what it is: one sentence per finding, worst first."""
        return [f.reason for f in self.findings if f.level != INFO]

    @property
    def notes(self) -> list[str]:
        """What is worth knowing but does not change the verdict (e.g. no pixel size)."""
        return [f.reason for f in self.findings if f.level == INFO]

    @property
    def next_steps(self) -> list[str]:
        """What to do next, one sentence per finding that has an action (no repeats)."""
        out: list[str] = []
        for f in self.findings:
            if f.action and f.action not in out:
                out.append(f.action)
        return out

    @property
    def label(self) -> str:
        """The verdict in words: "looks fine", "check this" or "do not trust"."""
        return VERDICT_TEXT[self.verdict]

    def to_json(self) -> dict[str, Any]:
        """The file contract: ``{"verdict", "reasons", "checks"}`` plus ``notes`` and
        ``next_steps``."""
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "notes": self.notes,
            "next_steps": self.next_steps,
            "checks": {k: _plain(v) for k, v in self.checks.items()},
        }


def _plain(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else round(float(v), 4)
    return v


def _verdict(findings: list[Finding], checks: dict[str, Any]) -> Quality:
    order = {DO_NOT_TRUST: 0, CHECK: 1, INFO: 2}
    findings = sorted(findings, key=lambda f: order[f.level])
    levels = {f.level for f in findings}
    verdict = DO_NOT_TRUST if DO_NOT_TRUST in levels else CHECK if CHECK in levels else OK
    return Quality(verdict, findings, checks)


def combine(qualities: list[Quality]) -> Quality:
    """The worst verdict of several results (frames, planes, fields) with their findings."""
    if not qualities:
        raise InputError("There are no results to combine.")
    findings: list[Finding] = []
    seen: set[str] = set()
    for q in qualities:
        for f in q.findings:
            if f.reason not in seen:
                seen.add(f.reason)
                findings.append(f)
    worst = max(qualities, key=lambda q: (OK, CHECK, DO_NOT_TRUST).index(q.verdict))
    return _verdict(findings, dict(worst.checks))


# ----------------------------------------------------------------------------- grains
def grain_neighbours(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number of neighbouring grains of every grain, and which grains touch the edge.

    Boundary pixels are first shared out to the nearest grain
    (:func:`microseg.grains.fill_boundaries`); two grains are neighbours where their
    filled regions meet (4-connectivity).

    Returns
    -------
    counts : ndarray
        ``counts[i]`` neighbours of grain ``i`` (index 0 unused).
    on_edge : ndarray
        bool, ``on_edge[i]`` when grain ``i`` touches the image border.
    """
    from microseg.grains import fill_boundaries

    filled = fill_boundaries(np.asarray(labels))
    n = int(filled.max())
    pairs = []
    for a, b in ((filled[1:, :], filled[:-1, :]), (filled[:, 1:], filled[:, :-1])):
        m = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[m], b[m]), np.maximum(a[m], b[m])
        pairs.append(lo.astype(np.int64) * (n + 1) + hi)
    uniq = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, np.int64)
    counts = np.bincount(uniq // (n + 1), minlength=n + 1) + np.bincount(
        uniq % (n + 1), minlength=n + 1
    )
    on_edge = np.zeros(n + 1, bool)
    on_edge[np.concatenate([filled[0], filled[-1], filled[:, 0], filled[:, -1]])] = True
    return counts, on_edge


def grain_quality(
    labels: np.ndarray,
    summary: dict[str, Any],
    boundary_proba: np.ndarray | None = None,
    pixel_size_um: float | None = None,
    unfamiliarity: float | None = None,
) -> Quality:
    """Verdict on a grain map and its E112 summary.

    Parameters
    ----------
    labels : ndarray
        ``(Y, X)`` grain map, 0 on boundaries (:func:`microseg.grains.grain_map`).
    summary : dict
        Its :func:`microseg.astm.grain_summary`.
    boundary_proba : ndarray, optional
        ``(Y, X)`` boundary probability the map was made from (confidence checks).
    pixel_size_um : float, optional
        The pixel size used (``None``: unknown).
    unfamiliarity : float, optional
        :func:`microseg.deep.familiarity.unfamiliarity` of the image to the model
        (``None``: not known, not checked).

    Returns
    -------
    Quality
    """
    from microseg.astm import g_from_intercept, g_from_mean_area, g_from_na

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"A grain map must be 2-D, got shape {labels.shape}.")
    findings: list[Finding] = _familiarity_findings(unfamiliarity, {})
    checks: dict[str, Any] = {"unfamiliarity": unfamiliarity}
    n = int(summary.get("n_grains") or 0)
    checks["n_grains"] = n
    if n < 2:
        findings.append(
            Finding(
                "n_grains",
                DO_NOT_TRUST,
                f"The map has {n} grain(s): no boundaries were found.",
                "Paint boundary and grain strokes on the Annotate page and fine-tune the model.",
            )
        )
        return _verdict(findings, checks)

    # --- E112: the three estimates of G are estimates of one number. They are
    # compared at a nominal pixel size when there is none (differences do not depend on it).
    g_values = _g_estimates(summary, g_from_na, g_from_intercept, g_from_mean_area)
    checks.update({f"g_{k}": v for k, v in g_values.items()})
    finite = [v for v in g_values.values() if v is not None and np.isfinite(v)]
    spread = (max(finite) - min(finite)) if len(finite) >= 2 else None
    checks["g_spread"] = spread
    if spread is not None and spread > G_SPREAD_CHECK:
        level = DO_NOT_TRUST if spread > G_SPREAD_BAD else CHECK
        findings.append(
            Finding(
                "g_spread",
                level,
                f"The planimetric, intercept and mean-area estimates of G differ by "
                f"{spread:.1f} G numbers (they agree within about {G_SPREAD_CHECK:g} on a "
                "sound grain map).",
                "Look at the map: missing or false boundaries change the estimates unequally; "
                "correct them or fine-tune the model.",
            )
        )

    # --- is it a tessellation? interior grains have several neighbours
    counts, on_edge = grain_neighbours(labels)
    ids = np.arange(1, counts.size)
    present = ids[np.bincount(labels.ravel(), minlength=counts.size)[1:] > 0]
    inner = present[~on_edge[present]]
    median_nb = float(np.median(counts[inner])) if inner.size else None
    checks["median_neighbours"] = median_nb
    if median_nb is not None and inner.size >= 5 and median_nb < MIN_NEIGHBOURS:
        findings.append(
            Finding(
                "median_neighbours",
                DO_NOT_TRUST,
                f"Most grains touch only {median_nb:.0f} other grain(s): these are isolated "
                "blobs (pores or particles), not a grain structure.",
                "The model finds the wrong features on this kind of image: paint boundary "
                "strokes and fine-tune it.",
            )
        )
    area = np.bincount(labels.ravel(), minlength=counts.size)[1:].astype(np.float64)
    largest = float(area.max() / labels.size) if area.size else 0.0
    checks["largest_grain_fraction"] = largest
    if largest > LARGEST_GRAIN_BAD:
        findings.append(
            Finding(
                "largest_grain_fraction",
                DO_NOT_TRUST,
                f"One 'grain' covers {100 * largest:.0f} % of the image: most boundaries "
                "were not found.",
                "Paint boundary strokes where boundaries are missing and fine-tune the model.",
            )
        )
    mean_area_px = float(area[area > 0].mean()) if (area > 0).any() else 0.0
    checks["mean_grain_area_px"] = mean_area_px
    if mean_area_px < MIN_GRAIN_AREA_PX:
        findings.append(
            Finding(
                "mean_grain_area_px",
                CHECK,
                f"Grains average {mean_area_px:.0f} px: too small to be resolved reliably "
                "(noise or texture may be read as boundaries).",
                "Use a higher magnification, or check the map for boundaries inside grains.",
            )
        )

    # --- the prediction itself
    if boundary_proba is not None:
        p = np.asarray(boundary_proba, np.float32)
        if p.shape != labels.shape:
            raise InputError("The boundary probability does not match the grain map.")
        bfrac = float((p >= 0.5).mean())
        unsure = float(((p >= 0.25) & (p <= 0.75)).mean())
        checks["boundary_fraction"] = bfrac
        checks["unsure_fraction"] = unsure
        lo, hi = BOUNDARY_FRACTION_RANGE
        if not lo <= bfrac <= hi:
            findings.append(
                Finding(
                    "boundary_fraction",
                    CHECK,
                    f"Boundaries cover {100 * bfrac:.1f} % of the image, outside the "
                    f"{100 * lo:g}-{100 * hi:g} % a grain map can have.",
                    "Check the map; fine-tune the model on strokes of this image.",
                )
            )

    # --- is the measurement strong enough?
    if n < MIN_GRAINS:
        findings.append(
            Finding(
                "n_grains",
                CHECK,
                f"Only {n} grains: ASTM E112 asks for at least {MIN_GRAINS} per field.",
                "Measure more fields of the specimen, or a lower magnification.",
            )
        )
    rel = summary.get("intercept_rel_accuracy_pct")
    checks["intercept_rel_accuracy_pct"] = rel
    if rel is not None and np.isfinite(rel) and rel > REL_ACCURACY_PCT:
        findings.append(
            Finding(
                "intercept_rel_accuracy_pct",
                CHECK if rel > REL_ACCURACY_WEAK_PCT else INFO,
                f"The intercept estimate's relative accuracy is {rel:.0f} %, above the "
                f"{REL_ACCURACY_PCT:g} % ASTM E112 aims for.",
                "Measure more fields (a specimen of several fields pools them).",
            )
        )
    findings += _pixel_size_findings(pixel_size_um, checks, "no ASTM G number is given")
    return _verdict(findings, checks)


def _g_estimates(summary: dict, g_from_na, g_from_intercept, g_from_mean_area) -> dict:  # noqa: ANN001
    """G planimetric, intercept and mean area; at a nominal 1 µm/px when unitless."""
    if summary.get("unit") == "um":
        return {
            "planimetric": summary.get("astm_g_planimetric"),
            "intercept": summary.get("astm_g_intercept"),
            "mean_area": summary.get("astm_g_mean_area"),
        }
    out: dict[str, float | None] = {"planimetric": None, "intercept": None, "mean_area": None}
    mm = 1e-3  # 1 µm per pixel
    if summary.get("n_a"):
        out["planimetric"] = g_from_na(float(summary["n_a"]) / mm**2)
    if summary.get("mean_intercept"):
        out["intercept"] = g_from_intercept(float(summary["mean_intercept"]) * mm)
    if summary.get("mean_area"):
        out["mean_area"] = g_from_mean_area(float(summary["mean_area"]) * mm**2)
    return out


def _familiarity_findings(u: float | None, _: dict) -> list[Finding]:
    if u is None or not np.isfinite(u) or u <= UNFAMILIAR_CHECK:
        return []
    return [
        Finding(
            "unfamiliarity",
            DO_NOT_TRUST if u > UNFAMILIAR_BAD else CHECK,
            f"The image is unlike the images the model was trained on (unfamiliarity "
            f"{u:.1f}; about 1 or less on images like them).",
            "Paint a few strokes of each class on this image and fine-tune the model "
            "(Annotate page), or use a model trained on images of this kind.",
        )
    ]


def model_unfamiliarity(model, image: np.ndarray, zoom: float = 1.0) -> float | None:  # noqa: ANN001
    """Unfamiliarity of ``image`` to a U-Net that records feature statistics, else ``None``;
    ``zoom``: the rescaling the network saw it at (e.g. nuclei rescaled to the training
    diameter, :meth:`microseg.nuclei.FrameSegmenter.network_zoom`)."""
    if (getattr(model, "metadata", None) or {}).get("kind") != "unet":
        return None
    from microseg.deep.familiarity import unfamiliarity

    return unfamiliarity(model, image, zoom=zoom)


def _pixel_size_findings(ps: float | None, checks: dict, without: str) -> list[Finding]:
    checks["pixel_size_um"] = ps
    if ps is None:
        return [
            Finding(
                "pixel_size_um",
                INFO,
                f"No pixel size: sizes are in pixels and {without}.",
                "Set the pixel size (or measure it from the scale bar).",
            )
        ]
    lo, hi = PIXEL_SIZE_RANGE_UM
    if not lo <= ps <= hi:
        return [
            Finding(
                "pixel_size_um",
                CHECK,
                f"The pixel size {ps:.4g} µm is outside the {lo:g}-{hi:g} µm of microscopes.",
                "Check the pixel size (µm per pixel, not nm or mm).",
            )
        ]
    return []


# ----------------------------------------------------------------------------- nuclei
def nuclei_quality(
    labels: np.ndarray,
    proba: np.ndarray | None = None,
    classes: list[str] | None = None,
    model_diameter_px: float | None = None,
    pixel_size_um: float | None = None,
    unfamiliarity: float | None = None,
    image: np.ndarray | None = None,
) -> Quality:
    """Verdict on a nuclei segmentation of one frame.

    Parameters
    ----------
    labels : ndarray
        ``(Y, X)`` instance labels (0 background).
    proba : ndarray, optional
        ``(K, Y, X)`` class probabilities they came from.
    classes : list of str, optional
        The model's class names (to find "nucleus").
    model_diameter_px : float, optional
        The nucleus diameter the model was trained at, after any rescaling
        (``None``: not checked).
    pixel_size_um : float, optional
        The pixel size used.
    unfamiliarity : float, optional
        As for :func:`grain_quality`.
    image : ndarray, optional
        The ``(Y, X)`` or ``(C, Y, X)`` frame that was segmented, for the focus check
        (:func:`nucleus_edge_width`).

    Returns
    -------
    Quality
    """
    from skimage.measure import regionprops

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"A label image must be 2-D, got shape {labels.shape}.")
    findings: list[Finding] = _familiarity_findings(unfamiliarity, {})
    checks: dict[str, Any] = {"unfamiliarity": unfamiliarity}
    props = regionprops(labels.astype(np.int64, copy=False))
    n = len(props)
    checks["n_nuclei"] = n
    fg = float((labels > 0).mean())
    checks["foreground_fraction"] = fg
    if n == 0:
        findings.append(
            Finding(
                "n_nuclei",
                CHECK,
                "No nuclei were found.",
                "Check the channel and the model; paint a few nucleus strokes and fine-tune.",
            )
        )
    if fg > FOREGROUND_BAD:
        findings.append(
            Finding(
                "foreground_fraction",
                DO_NOT_TRUST,
                f"'Nuclei' cover {100 * fg:.0f} % of the image: the background was not found.",
                "Check the channel and the model; paint background strokes and fine-tune.",
            )
        )
    if n:
        solidity = float(np.median([p.solidity for p in props]))
        diam = float(np.median([p.equivalent_diameter_area for p in props]))
        checks["median_solidity"] = solidity
        checks["median_diameter_px"] = diam
        if n >= 5 and solidity < MIN_SOLIDITY:
            findings.append(
                Finding(
                    "median_solidity",
                    CHECK,
                    f"The objects are ragged (median solidity {solidity:.2f}); nuclei are compact.",
                    "Check the outlines; fine-tune the model on strokes of this image.",
                )
            )
        if model_diameter_px:
            ratio = diam / float(model_diameter_px)
            checks["diameter_ratio"] = ratio
            if not 1 / DIAMETER_RATIO <= ratio <= DIAMETER_RATIO:
                findings.append(
                    Finding(
                        "diameter_ratio",
                        CHECK,
                        f"The nuclei measure {diam:.0f} px across, {ratio:.1f}x the "
                        f"{model_diameter_px:.0f} px the model was trained on.",
                        "Set the nucleus diameter so that the image is rescaled to the model.",
                    )
                )
        if image is not None and n >= 5:
            width = nucleus_edge_width(image, labels)
            checks["edge_width_px"] = width
            if width is not None and width > BLUR_EDGE_PX and width > BLUR_EDGE_RATIO * diam:
                findings.append(
                    Finding(
                        "edge_width_px",
                        CHECK,
                        f"The nucleus edges are blurred over {width:.1f} px, "
                        f"{100 * width / diam:.0f} % of a nucleus's diameter: the image looks "
                        "out of focus, and touching nuclei merge.",
                        "Check the focus; paint strokes between touching nuclei and fine-tune.",
                    )
                )
    if proba is not None:
        p = np.asarray(proba, np.float32)
        if p.ndim != 3 or p.shape[1:] != labels.shape:
            raise InputError("The probabilities do not match the label image.")
        unsure = float((p.max(axis=0) < 0.6).mean())
        checks["unsure_fraction"] = unsure
        if unsure > UNSURE_NUCLEI_CHECK:
            findings.append(
                Finding(
                    "unsure_fraction",
                    CHECK,
                    f"The model is unsure on {100 * unsure:.0f} % of the image (no class "
                    "above 0.6).",
                    "Paint strokes in the most uncertain places and fine-tune the model.",
                )
            )
    findings += _pixel_size_findings(pixel_size_um, checks, "areas are in px²")
    return _verdict(findings, checks)


def nucleus_edge_width(image: np.ndarray, labels: np.ndarray) -> float | None:
    """How wide the edges of the segmented nuclei are in the image, in pixels.

    The contrast between the nuclei's cores and the background, over the median (over
    nuclei) of the steepest intensity gradient (Gaussian derivative, sigma 1 px) within
    3 px of a nucleus's outline. A step blurred by a Gaussian of sigma ``s`` gives
    ``sqrt(2 pi) s``.

    Parameters
    ----------
    image : ndarray
        ``(Y, X)`` or ``(C, Y, X)`` (channels averaged) frame.
    labels : ndarray
        ``(Y, X)`` instance labels of it.

    Returns
    -------
    float or None
        ``None`` when there are no nuclei, no core or no background to compare.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    grey = np.asarray(image, np.float32)
    if grey.ndim == 3:
        grey = grey.mean(axis=0)
    labels = np.asarray(labels)
    if grey.shape != labels.shape or not labels.any() or not np.isfinite(grey).all():
        return None
    fg = labels > 0
    core = ndi.binary_erosion(fg, iterations=2)
    background = ~ndi.binary_dilation(fg, iterations=3)
    if core.sum() < 10 or background.sum() < 10:
        return None
    contrast = abs(float(np.median(grey[core])) - float(np.median(grey[background])))
    band = ndi.binary_dilation(find_boundaries(labels, mode="thick"), iterations=3)
    near = ndi.grey_dilation(labels, size=7) * band
    ids = np.unique(near[near > 0])
    steepest = ndi.maximum(ndi.gaussian_gradient_magnitude(grey, 1.0), near, ids)
    slope = float(np.median(steepest))
    if slope <= 0:
        return None
    return contrast / slope
