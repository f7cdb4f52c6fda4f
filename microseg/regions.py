"""Images read by region, so that one larger than memory can be processed tile by tile.

:func:`open_regions` opens a single-plane image for reading a rectangle at a time:

* a TIFF through tifffile's zarr store: only the tiles or strips a region touches
  are decoded (a TIFF written as one compressed strip is decoded whole for each
  region: save big images tiled);
* an OME-Zarr image (NGFF 0.4 or 0.5, a folder): its full-resolution level;
* any other file (PNG, JPEG, CZI, palette TIFF) read whole with
  :func:`microseg.io.read_image`, which refuses it with one sentence when it cannot
  fit in memory.

:meth:`RegionImage.percentile_sample` gathers the same regular subsample of every
channel that :func:`microseg.preprocess.normalize_percentile` takes from a whole
image, so a tile normalised with the whole image's sample (``reference=``) gets the
values it would have had in the whole image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microseg.errors import InputError

Reader = Callable[[slice, slice], np.ndarray]

SAMPLE = 1 << 20
"""Values per channel in the percentile sample (as :func:`normalize_percentile`)."""

_UNITS_UM = {
    "micrometer": 1.0,
    "nanometer": 1e-3,
    "millimeter": 1e3,
    "meter": 1e6,
    "angstrom": 1e-4,
    "centimeter": 1e4,
}


@dataclass
class RegionImage:
    """A single-plane image read by region.

    Attributes
    ----------
    name : str
        File or folder name, for messages and outputs.
    shape_yx : tuple of int
        Rows and columns.
    n_channels : int
        Channels (RGB samples count as channels; alpha is left out).
    dtype : numpy.dtype
        Value type of :meth:`read` (bool is read as uint8, float16 as float32).
    pixel_size_um : float or None
        X pixel size from the file's calibration.
    access : str
        How regions are read: ``"TIFF tiles"``, ``"OME-Zarr chunks"`` or ``"in memory"``.
    """

    name: str
    shape_yx: tuple[int, int]
    n_channels: int
    dtype: np.dtype
    pixel_size_um: float | None
    access: str
    reader: Reader = field(repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        """Rows times columns."""
        return self.shape_yx[0] * self.shape_yx[1]

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """The region ``[ys, xs]`` as ``(C, h, w)`` (steps of 1, inside the image)."""
        h, w = self.shape_yx
        y0, y1, _ = ys.indices(h)
        x0, x1, _ = xs.indices(w)
        block = np.asarray(self.reader(slice(y0, y1), slice(x0, x1)))
        if block.dtype.kind == "b":
            block = block.astype(np.uint8)
        elif block.dtype == np.float16:
            block = block.astype(np.float32)
        elif not block.dtype.isnative:
            block = block.astype(block.dtype.newbyteorder("="))
        return block

    def rows(self, n_bytes: int = 64 << 20) -> int:
        """Rows per full-width block of about ``n_bytes`` (at least 1)."""
        per_row = self.shape_yx[1] * self.n_channels * max(4, np.dtype(self.dtype).itemsize)
        return max(1, n_bytes // max(1, per_row))

    def percentile_sample(self, sample: int = SAMPLE) -> np.ndarray:
        """Float32 ``(C, N)``: the values :func:`normalize_percentile` would take from
        the whole image (every ``Y*X // sample``-th value of each channel, row-major),
        read in full-width blocks."""
        h, w = self.shape_yx
        step = max(1, (h * w) // sample)
        parts = []
        rows = self.rows()
        for y0 in range(0, h, rows):
            y1 = min(h, y0 + rows)
            first = -(-(y0 * w) // step) * step
            idx = np.arange(first, y1 * w, step, dtype=np.int64)
            if idx.size == 0:
                continue
            block = self.read(slice(y0, y1), slice(0, w))
            yy, xx = np.divmod(idx, w)
            parts.append(block[:, yy - y0, xx].astype(np.float32))
        return np.concatenate(parts, axis=1)


def central_window(shape_yx: tuple[int, int], side: int = 2048) -> tuple[slice, slice]:
    """Rows and columns of the central ``side`` x ``side`` window (the whole image when
    smaller): where a tiled run measures what it sets once for every tile."""
    h, w = shape_yx
    ys = slice(max(0, h // 2 - side // 2), min(h, h // 2 + side // 2))
    xs = slice(max(0, w // 2 - side // 2), min(w, w // 2 + side // 2))
    return ys, xs


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a Zarr group (``.zattrs`` or ``zarr.json``)."""
    p = Path(path)
    return p.is_dir() and ((p / ".zattrs").is_file() or (p / "zarr.json").is_file())


def open_regions(path: str | os.PathLike, name: str | None = None) -> RegionImage:
    """Open a single-plane image for reading by region.

    Parameters
    ----------
    path : str or Path
        A TIFF, an OME-Zarr folder, or any file :func:`microseg.io.read_image` reads.
    name : str, optional
        Name in messages; default the file or folder name.

    Raises
    ------
    InputError
        For a missing, damaged or unsupported file, and for stacks (more than one time
        point or z slice), with one sentence.
    """
    p = Path(path)
    label = name or p.name or str(p)
    if is_ome_zarr(p):
        return _open_ome_zarr(p, label)
    if not p.is_file():
        raise InputError(f"'{p}' does not exist." if not p.exists() else f"'{p}' is not a file.")
    from microseg.io import read_header

    header = read_header(p, label)
    if "TIFF" in header.fmt:  # plain, ImageJ or OME-TIFF
        opened = _open_tiff(p, label, header)
        if opened is not None:
            return opened
    return _open_in_memory(p, label)


def _single_plane(label: str, sizes: dict[str, int]) -> None:
    extra = {a: n for a, n in sizes.items() if a in "TZ" and n > 1}
    if extra:
        what = ", ".join(
            f"{n} {'time points' if a == 'T' else 'z slices'}" for a, n in extra.items()
        )
        raise InputError(
            f"'{label}' is a stack ({what}); tiled processing reads single-plane images "
            "(run without --ome-zarr, or save one plane)."
        )


def _open_tiff(path: Path, label: str, header: Any) -> RegionImage | None:
    """Region reader over tifffile's zarr store; ``None`` when the TIFF needs decoding
    whole (palette colours, axes of unknown meaning)."""
    import tifffile
    import zarr

    if "?" in header.roles:
        return None
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = series.keyframe
        if int(getattr(page, "photometric", -1)) == 3:  # palette: colours applied on decode
            return None
        axes = str(series.axes)
        shape = tuple(int(n) for n in series.shape)
        dtype = np.dtype(series.dtype)
    sizes: dict[str, int] = {}
    for role, n in zip(header.roles, shape, strict=True):
        sizes[role] = sizes.get(role, 1) * n
    _single_plane(label, sizes)
    if sum(1 for r, n in zip(header.roles, shape, strict=True) if r == "C" and n > 1) > 1:
        return None
    keep = header.keep_samples
    c_axis = next(
        (i for i, (r, n) in enumerate(zip(header.roles, shape, strict=True)) if r == "C" and n > 1),
        None,
    )
    n_c = 1 if c_axis is None else shape[c_axis]
    if keep is not None and keep[0] == c_axis:
        n_c = keep[1]
    y_axis, x_axis = header.roles.index("Y"), header.roles.index("X")
    store = zarr.open(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r")

    def read(ys: slice, xs: slice) -> np.ndarray:
        index: list[Any] = [0] * len(shape)
        index[y_axis], index[x_axis] = ys, xs
        if c_axis is not None:
            index[c_axis] = slice(0, n_c)
        return _to_cyx(np.asarray(store[tuple(index)]), c_axis, y_axis, x_axis)

    return RegionImage(
        label,
        (shape[y_axis], shape[x_axis]),
        n_c,
        _read_dtype(dtype),
        header.pixel_size_um,
        "TIFF tiles",
        read,
        {"format": header.fmt, "source_axes": axes, "pixel_size_source": header.pixel_size_source},
    )


def _to_cyx(block: np.ndarray, c: int | None, y: int, x: int) -> np.ndarray:
    """``(C, h, w)`` from a block whose other axes were indexed away (kept in source order)."""
    if c is None:
        return block[None]
    kept = sorted((c, y, x))
    return np.transpose(block, (kept.index(c), kept.index(y), kept.index(x)))


def _read_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype.kind == "c" or dtype.kind not in "uif":
        raise InputError(f"Pixels of type {dtype} are not numbers microseg can segment.")
    return dtype.newbyteorder("=")


def _open_in_memory(path: Path, label: str) -> RegionImage:
    from microseg.io import read_image

    image = read_image(path, label)
    sizes = {"T": image.n_frames, "Z": image.n_slices}
    _single_plane(label, sizes)
    data = image.data[0, 0]  # (C, Y, X)

    def read(ys: slice, xs: slice) -> np.ndarray:
        return data[:, ys, xs]

    return RegionImage(
        label,
        image.shape_yx,
        data.shape[0],
        data.dtype,
        image.pixel_size_um,
        "in memory",
        read,
        dict(image.metadata),
    )


def _multiscales(attrs: dict) -> list:
    ms = attrs.get("multiscales")
    if ms is None and isinstance(attrs.get("ome"), dict):
        ms = attrs["ome"].get("multiscales")
    return ms if isinstance(ms, list) else []


def _open_ome_zarr(path: Path, label: str) -> RegionImage:
    import zarr

    try:
        group = zarr.open_group(path, mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # damaged JSON or a missing group file: zarr raises many kinds
        raise InputError(
            f"'{label}' is a folder but not a readable Zarr group (its .zgroup, .zattrs or "
            "zarr.json is missing or damaged)."
        ) from exc
    ms = _multiscales(attrs)
    if not ms or not isinstance(ms[0], dict):
        raise InputError(
            f"'{label}' is a Zarr folder without OME-Zarr multiscales metadata; "
            "microseg reads OME-Zarr (NGFF) images."
        )
    meta = ms[0]
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in meta.get("axes", [])]
    datasets = meta.get("datasets") or [{}]
    first = str(datasets[0].get("path", "")) if isinstance(datasets[0], dict) else ""
    try:
        arr = group[first]
        if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
            raise KeyError(first)
    except Exception as exc:
        raise InputError(
            f"'{label}' names the array '{first}' in its OME-Zarr metadata, but that array is "
            "missing or damaged."
        ) from exc
    shape = tuple(int(n) for n in arr.shape)
    if len(axes) != len(shape):
        axes = ["t", "c", "z", "y", "x"][-len(shape) :] if len(shape) <= 5 else []
    if "y" not in axes or "x" not in axes or len(set(axes)) != len(axes):
        raise InputError(f"'{label}' has axes {axes}; microseg needs y and x (and t, c, z).")
    sizes = {a.upper(): n for a, n in zip(axes, shape, strict=True)}
    _single_plane(label, sizes)
    unknown = [a for a in axes if a not in ("t", "c", "z", "y", "x")]
    if any(sizes[a.upper()] > 1 for a in unknown):
        raise InputError(f"'{label}' has axes {axes}; microseg reads t, c, z, y and x.")
    pixel = _ome_zarr_pixel_size(meta, datasets[0], axes)
    n_c = sizes.get("C", 1)
    iy, ix = axes.index("y"), axes.index("x")
    ic = axes.index("c") if "c" in axes else None

    def read(ys: slice, xs: slice) -> np.ndarray:
        index: list[Any] = [0] * len(shape)
        index[iy], index[ix] = ys, xs
        if ic is not None:
            index[ic] = slice(None)
        return _to_cyx(np.asarray(arr[tuple(index)]), ic, iy, ix)

    return RegionImage(
        label,
        (shape[iy], shape[ix]),
        n_c,
        _read_dtype(np.dtype(arr.dtype)),
        pixel,
        "OME-Zarr chunks",
        read,
        {
            "format": "OME-Zarr",
            "source_axes": "".join(axes).upper(),
            "pixel_size_source": "OME-Zarr" if pixel else None,
        },
    )


def _ome_zarr_pixel_size(meta: dict, dataset: dict, axes: list[str]) -> float | None:
    """X scale of the full-resolution level in micrometres (None without a known unit)."""
    ax = meta.get("axes", [])
    unit = None
    for a in ax:
        if isinstance(a, dict) and a.get("name") == "x":
            unit = a.get("unit")
    factor = _UNITS_UM.get(str(unit)) if unit else None
    scale = 1.0
    for t in list(meta.get("coordinateTransformations") or []) + list(
        dataset.get("coordinateTransformations") or []
    ):
        if isinstance(t, dict) and t.get("type") == "scale":
            values = t.get("scale") or []
            if len(values) == len(axes):
                scale *= float(values[axes.index("x")])
    value = scale * factor if factor else None
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return value


def describe(image: RegionImage) -> str:
    """One line: size, channels, type, calibration and how it is read."""
    h, w = image.shape_yx
    cal = f", {image.pixel_size_um:g} µm/px" if image.pixel_size_um else ""
    return (
        f"{image.name}: {w} x {h} px, {image.n_channels} channel(s), {image.dtype}{cal}, "
        f"read by {image.access}"
    )
