"""The in-memory image every part of microseg works on.

A :class:`MicroImage` holds pixel data with explicit axes ``TZCYX`` (always
five dimensions, singleton axes kept), in the dtype it was read in (no float
copy of a whole stack), plus the physical pixel size and where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from microseg.errors import InputError

AXES = "TZCYX"


@dataclass
class MicroImage:
    """Pixel data with axes ``TZCYX`` and its physical calibration.

    Parameters
    ----------
    data : ndarray
        Five-dimensional array, axes ``T, Z, C, Y, X``.
    pixel_size_um : float or None
        Edge length of one pixel in micrometres; ``None`` when unknown.
    name : str
        File name (or sample name) it came from.
    channel_names : list of str
        One name per channel.
    metadata : dict
        Free-form provenance (source format, original axes, ...).
    """

    data: np.ndarray
    pixel_size_um: float | None = None
    name: str = "image"
    channel_names: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 5:
            raise InputError(f"An image must have 5 axes (TZCYX) in memory, got {self.data.ndim}.")
        if not self.channel_names:
            self.channel_names = [f"channel {i}" for i in range(self.n_channels)]
        if self.pixel_size_um is not None:
            from microseg.pixel_size import is_pixel_size

            if not is_pixel_size(self.pixel_size_um):
                # a file's calibration that cannot be a pixel size: unknown, and said so
                self.metadata = {**self.metadata, "pixel_size_ignored": repr(self.pixel_size_um)}
                self.pixel_size_um = None
            else:
                self.pixel_size_um = float(self.pixel_size_um)

    @classmethod
    def from_array(
        cls, array: np.ndarray, axes: str = "YX", pixel_size_um: float | None = None, **kw
    ) -> MicroImage:
        """Wrap an array whose axes are named by ``axes`` (a subset of ``TZCYX``)."""
        axes = axes.upper()
        if len(axes) != array.ndim or not set(axes) <= set(AXES) or len(set(axes)) != len(axes):
            raise InputError(f"Axes '{axes}' do not describe an array of shape {array.shape}.")
        order = [axes.index(a) for a in AXES if a in axes]
        data = np.transpose(array, order)
        present = [a for a in AXES if a in axes]
        for i, a in enumerate(AXES):
            if a not in present:
                data = np.expand_dims(data, i)
        return cls(data=data, pixel_size_um=pixel_size_um, **kw)

    @property
    def n_frames(self) -> int:
        """Number of time points."""
        return int(self.data.shape[0])

    @property
    def n_slices(self) -> int:
        """Number of z slices."""
        return int(self.data.shape[1])

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.data.shape[2])

    @property
    def shape_yx(self) -> tuple[int, int]:
        """Height and width in pixels."""
        return int(self.data.shape[3]), int(self.data.shape[4])

    @property
    def dtype(self) -> np.dtype:
        """Pixel dtype as read."""
        return self.data.dtype

    def plane(self, t: int = 0, z: int | str = 0) -> np.ndarray:
        """Return frame ``t`` as a ``(C, Y, X)`` array in the stored dtype.

        ``z`` may be an index or ``"max"`` for a maximum-intensity projection.
        """
        stack = self.data[t]
        if z == "max":
            return stack.max(axis=0)
        return stack[int(z)]

    def frame(self, t: int = 0, z: int | str = 0) -> np.ndarray:
        """Return frame ``t`` as ``(Y, X)`` for one channel or ``(C, Y, X)`` for several."""
        p = self.plane(t, z)
        return p[0] if p.shape[0] == 1 else p
