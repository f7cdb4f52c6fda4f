"""What a pixel size may be: a finite number of µm per pixel between a picometre and a
centimetre. Anything else (NaN, 0, 1e200, a unit mix-up of a million) is refused with one
sentence before it can turn into infinite areas or an overflow; values inside the limits
but unusual for a microscope are a quality *check* (:data:`microseg.quality.PIXEL_SIZE_RANGE_UM`).
"""

from __future__ import annotations

import math

from microseg.errors import InputError

PIXEL_SIZE_LIMITS_UM = (1e-6, 1e4)


def is_pixel_size(value: object) -> bool:
    """Whether ``value`` is a usable pixel size in µm (finite, within the limits)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    lo, hi = PIXEL_SIZE_LIMITS_UM
    return math.isfinite(v) and lo <= v <= hi


def check_pixel_size(value: object, what: str = "The pixel size") -> float:
    """``value`` as a float in µm per pixel, or :class:`InputError` saying what is wrong.

    Parameters
    ----------
    value : float-like
        The pixel size in µm per pixel.
    what : str
        How the sentence names it (e.g. ``"--pixel-size"``).
    """
    if is_pixel_size(value):
        return float(value)  # type: ignore[arg-type]
    lo, hi = PIXEL_SIZE_LIMITS_UM
    raise InputError(
        f"{what} must be a number of µm per pixel between {lo:g} and {hi:g}, not {value}."
    )
