"""The part of a micrograph that is measured: a rectangular region, and the data bar
(the strip of text and scale bar that SEM and many microscope cameras burn into the
bottom or top of the image), which must be left out of a grain count.

A region is given in pixel rows and columns of the whole image; measurements made in
it are in the region's own coordinates (as after a crop in Fiji), and the region is
recorded with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from microseg.errors import InputError

#: smallest region side the grain measurements accept (pixels)
MIN_SIDE = 16
#: the source of a region that is the whole image
WHOLE_IMAGE = "whole image"


@dataclass(frozen=True)
class Region:
    """Rows ``y0:y1`` and columns ``x0:x1`` of an image (stop exclusive)."""

    y0: int
    y1: int
    x0: int
    x1: int

    @classmethod
    def full(cls, shape: tuple[int, ...]) -> Region:
        """The whole image of ``shape`` (``(..., Y, X)``)."""
        return cls(0, int(shape[-2]), 0, int(shape[-1]))

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the region."""
        return self.y1 - self.y0, self.x1 - self.x0

    def is_full(self, shape: tuple[int, ...]) -> bool:
        """Whether the region is the whole image of ``shape``."""
        return self == Region.full(shape)

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The region of an array whose last two axes are Y and X."""
        return array[..., self.y0 : self.y1, self.x0 : self.x1]

    def as_dict(self) -> dict[str, int]:
        """``{"y0", "y1", "x0", "x1"}`` for JSON."""
        return {"y0": self.y0, "y1": self.y1, "x0": self.x0, "x1": self.x1}

    def describe(self) -> str:
        """``rows 0-879, columns 0-1279`` (inclusive, as a person reads them)."""
        return f"rows {self.y0}-{self.y1 - 1}, columns {self.x0}-{self.x1 - 1}"

    def record(self, source: str, image_shape: tuple[int, ...]) -> dict:
        """What a summary keeps of the region: its bounds, where it came from and the
        image's ``[rows, columns]``."""
        return {**self.as_dict(), "source": source,
                "image_shape": [int(image_shape[-2]), int(image_shape[-1])]}  # fmt: skip


def checked_region(region: Region, shape: tuple[int, ...]) -> Region:
    """``region`` if it lies inside an image of ``shape`` and is at least
    :data:`MIN_SIDE` pixels on each side.

    Raises
    ------
    InputError
        Otherwise, in one sentence.
    """
    h, w = int(shape[-2]), int(shape[-1])
    if not (0 <= region.y0 < region.y1 <= h and 0 <= region.x0 < region.x1 <= w):
        raise InputError(f"The region ({region.describe()}) does not lie inside the {w}x{h} image.")
    if min(region.shape) < MIN_SIDE:
        raise InputError(
            f"The region ({region.describe()}) is under {MIN_SIDE} pixels on a side; "
            "choose a larger part of the image."
        )
    return region


def margins_region(
    shape: tuple[int, ...], top: int = 0, bottom: int = 0, left: int = 0, right: int = 0
) -> Region:
    """The image of ``shape`` without ``top``/``bottom`` rows and ``left``/``right``
    columns (checked with :func:`checked_region`)."""
    margins = [int(top), int(bottom), int(left), int(right)]
    if min(margins) < 0:
        raise InputError("Margins to leave out must be zero or more pixels.")
    h, w = int(shape[-2]), int(shape[-1])
    region = Region(margins[0], h - margins[1], margins[2], w - margins[3])
    if region.y1 <= region.y0 or region.x1 <= region.x0:
        raise InputError(
            f"Leaving out {margins[0]}+{margins[1]} rows and {margins[2]}+{margins[3]} "
            f"columns leaves nothing of the {w}x{h} image."
        )
    return checked_region(region, shape)


_SPEC = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*,\s*(-?\d*)\s*:\s*(-?\d*)\s*$")


def parse_region(text: str, shape: tuple[int, ...]) -> Region:
    """Region from ``"Y0:Y1,X0:X1"`` (rows, then columns; Python slice rules: an
    empty bound is the image edge, a negative one counts from the end), e.g.
    ``":-64,:"`` leaves out the bottom 64 rows.

    Raises
    ------
    InputError
        For text of another form or a region outside the image.
    """
    m = _SPEC.match(text or "")
    if not m:
        raise InputError(
            f"A region is written Y0:Y1,X0:X1 (rows, then columns, e.g. ':-64,:'), got '{text}'."
        )
    h, w = int(shape[-2]), int(shape[-1])
    ys = range(h)[slice(*(int(v) if v else None for v in m.groups()[:2]))]
    xs = range(w)[slice(*(int(v) if v else None for v in m.groups()[2:]))]
    if len(ys) == 0 or len(xs) == 0:
        raise InputError(f"The region '{text}' holds no pixel of the {w}x{h} image.")
    return checked_region(Region(ys.start, ys.stop, xs.start, xs.stop), shape)


@dataclass(frozen=True)
class DataBar:
    """A data bar across the image: rows ``start:stop`` at the ``side`` edge."""

    side: str
    start: int
    stop: int

    @property
    def height(self) -> int:
        """Rows the bar covers."""
        return self.stop - self.start

    def describe(self) -> str:
        """``the data bar at the bottom (rows 896-959)``."""
        return f"the data bar at the {self.side} (rows {self.start}-{self.stop - 1})"

    @property
    def left_out(self) -> str:
        """The source of a region without the bar: ``the data bar ... left out``."""
        return f"{self.describe()} left out"


def _row_modes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's most common value and the share of the row's pixels that hold it."""
    modes, shares = np.empty(rows.shape[0]), np.empty(rows.shape[0])
    for i, row in enumerate(rows):
        values, counts = np.unique(row, return_counts=True)
        k = int(np.argmax(counts))
        modes[i], shares[i] = values[k], counts[k] / row.size
    return modes, shares


def find_data_bar(plane: np.ndarray, min_rows: int = 8, max_share: float = 0.3) -> DataBar | None:
    """A data bar at the bottom or top of a micrograph, or None.

    A data bar is a band of full-width rows at the image edge, at least ``min_rows``
    and at most ``max_share`` of the image high, whose rows mostly repeat one exact
    value (the bar's background) over much of their width, while the image's own rows
    do not: real image rows (noise, texture) seldom repeat one value over a third of
    their width (1-16 % of it on the optical micrographs of the sample data).

    - The bar's background is the most common row value near the edge; it must be
      rare in the image body (at most 5 % of its pixels), or it is the image's own
      background.
    - A row is bar-like when its most common value is the background and holds at
      least 0.3 of the row and 0.25 more than the median row of the image body does;
      body-like when that share is at most 0.1 above the body's.
    - The bar runs from a bar-like row at the edge (within a 3-row border line) to the first ``min_rows`` body-like rows
      in a row, so text rows and rows that compression (JPEG) blurred go with it.
      Half its rows must be bar-like, its median share 0.3 above the body's, and at
      least two of its rows plain background (95 %: the margins around the text; a
      darkening image edge has none). Two more rows are left out with it as a margin.
    - An image whose own rows are flat (a noise-free rendering, a fluorescence image
      with an even background: median share above 0.3) gives None.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` or ``(C, Y, X)``, any numeric dtype (channels are summed).

    Returns
    -------
    DataBar or None
    """
    a = np.asarray(plane)
    if a.ndim == 3:
        a = a.astype(np.float64).sum(axis=0)
    if a.ndim != 2:
        raise InputError(f"Expected a 2-D image plane, got shape {a.shape}.")
    h = a.shape[0]
    limit = int(max_share * h)
    if h < 4 * min_rows or limit < min_rows:
        return None
    body = a[limit : h - limit : max(1, (h - 2 * limit) // 64)]
    body_level = float(np.median(_row_modes(body)[1])) if body.shape[0] else 0.0
    if body_level > 0.3:
        return None
    span = limit + min_rows
    for side, rows in (("bottom", a[::-1][:span]), ("top", a[:span])):
        modes, shares = _row_modes(rows)
        values, counts = np.unique(modes[: 2 * min_rows], return_counts=True)
        background = values[np.argmax(counts)]
        if np.mean(body == background) > 0.05:
            continue  # a value common in the image: its own background, not a bar's
        n = _band_rows(modes == background, shares, min_rows, body_level)
        if n:
            n = min(n, h - 4 * min_rows)
            return DataBar(side, h - n, h) if side == "bottom" else DataBar(side, 0, n)
    return None


def _band_rows(
    at_background: np.ndarray, ff_from_edge: np.ndarray, min_rows: int, body_level: float
) -> int:
    """Rows of the bar at the edge (0 if none), from whether each row's most common
    value is the bar's background and the share it holds, rows ordered from the edge
    inwards (see :func:`find_data_bar`): the band ends at the first ``min_rows`` rows
    in a row that look like the image body."""
    bar_like = (ff_from_edge >= max(0.3, body_level + 0.25)) & at_background
    body_like = ff_from_edge <= body_level + 0.1
    if not bar_like[:4].any():
        return 0  # a bar starts at the edge (after at most a 3-row border line)
    runs = np.convolve(body_like.astype(int), np.ones(min_rows, int), mode="valid")
    starts = np.flatnonzero(runs == min_rows)
    if starts.size == 0 or starts[0] < min_rows:
        return 0
    n = int(starts[0])
    if bar_like[:n].mean() < 0.5 or np.median(ff_from_edge[:n]) < body_level + 0.3:
        return 0
    if np.count_nonzero(at_background[:n] & (ff_from_edge[:n] >= 0.95)) < 2:
        return 0  # no rows of plain background (the margins around a bar's text)
    return min(n + 2, ff_from_edge.size - min_rows)


def without_data_bar(plane: np.ndarray) -> tuple[Region, DataBar | None]:
    """The region of ``plane`` without its data bar (the whole plane when there is
    none), and the bar found."""
    bar = find_data_bar(plane)
    shape = np.asarray(plane).shape
    if bar is None:
        return Region.full(shape), None
    h = int(shape[-2])
    top, bottom = (0, h - bar.start) if bar.side == "bottom" else (bar.stop, 0)
    return margins_region(shape, top=top, bottom=bottom), bar
