"""Read and validate micrographs, and write exports.

:func:`read_image` turns a PNG, JPEG, TIFF (plain, multi-page, ImageJ
hyperstack, OME-TIFF) or ZEISS CZI file into a :class:`~microseg.image.MicroImage`
with axes ``TZCYX``, the source dtype and the pixel size found in its metadata.
Every problem caused by the file itself raises :class:`~microseg.errors.InputError`
with one sentence a user can act on; image dimensions are checked from the file
header before any pixel is decoded.

The writers produce files that Fiji/ImageJ, napari and OME tools open with their
axes, pixel size and provenance (a JSON record of how the file was made).
"""

from __future__ import annotations

import io
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from microseg import __version__
from microseg.errors import InputError
from microseg.image import AXES, MicroImage


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


MAX_PIXELS = _env_int("MICROSEG_MAX_PIXELS", 1_500_000_000)
"""Default limit on the number of stored values (T x Z x C x Y x X) of one image."""

MIN_SIDE = 8
"""Smallest accepted height and width in pixels (smaller images cannot be segmented)."""

FORMATS = "PNG, JPEG, TIFF/OME-TIFF or CZI"

_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".czi")
_STEM_SUFFIXES = {".ome", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".czi", ".btf", ".tf8", ".zarr"}

Source = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]

# Length units found in OME, ImageJ and CZI metadata, in micrometres.
_UNIT_UM = {
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "cm": 1e4,
    "centimeter": 1e4,
    "mm": 1e3,
    "millimeter": 1e3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "in": 25400.0,
    "inch": 25400.0,
}

# Magic numbers of files that are recognised but not read.
_OTHER_TYPES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (0, b"\xff\x4f\xff\x51", "a JPEG 2000 image"),
    (0, b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (0, b"\xff\x0a", "a JPEG XL image"),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"\x93NUMPY", "a NumPy array file"),
    (0, b"\x1f\x8b", "a gzip-compressed file"),
    (0, b"\xda\xce\xbe\x0a", "a Nikon ND2 file"),
    (0, b"\x70\x00\x00\x00", "a Leica LIF file"),
    (128, b"DICM", "a DICOM file"),
    (4, b"ftyp", "a HEIF/AVIF image or a video"),
    (8, b"WEBP", "a WebP image"),
    (8, b"AVI ", "an AVI video"),
)


# ----------------------------------------------------------------------------- reading


@dataclass
class _Header:
    """What a reader learned from a file before decoding its pixels."""

    fmt: str
    shape: tuple[int, ...]
    roles: str  # one of "TZCYX" or "?" (an axis of unknown meaning) per source axis
    source_axes: str
    load: Callable[[], np.ndarray]
    keep_samples: tuple[int, int] | None = None  # (axis, n): drop trailing alpha samples
    verify: Callable[[], None] | None = None  # file-level checks after the shape checks
    pixel_size_um: float | None = None
    pixel_size_source: str | None = None
    channel_names: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def supported_suffixes() -> tuple[str, ...]:
    """File name suffixes :func:`read_image` accepts (``.ome.tif`` ends in ``.tif``).

    Returns
    -------
    tuple of str
        Lower-case suffixes with their dot, e.g. ``(".png", ".jpg", ...)``.
    """
    return _SUFFIXES


def read_image(
    source: Source,
    name: str | None = None,
    *,
    max_pixels: int | None = None,
    palette: str = "colors",
) -> MicroImage:
    """Read and validate one image file.

    The file type is found from its content, not its name. Axes come from the
    file's metadata: tifffile's series axes for TIFF (ImageJ and OME metadata
    included), the subblock dimensions for CZI; samples (RGB) become channels,
    alpha is dropped, pages of unknown meaning become time points, singleton
    axes are dropped.

    Parameters
    ----------
    source : str, Path, bytes or binary file object
        A path, the file's bytes, or an open file (e.g. an upload).
    name : str, optional
        Name used in messages and stored in the image; defaults to the file name.
    max_pixels : int, optional
        Largest accepted number of stored values (T x Z x C x Y x X, samples
        included), checked before decoding; default :data:`MAX_PIXELS`
        (environment variable ``MICROSEG_MAX_PIXELS``). PNG and JPEG are also
        bound by Pillow's decompression-bomb limit (about 179 million pixels).
    palette : {"colors", "index"}
        Palette images: ``"colors"`` gives the colours (grey palettes one
        channel), ``"index"`` the stored palette indices (for label images).

    Returns
    -------
    MicroImage
        Data ``(T, Z, C, Y, X)`` in the source dtype, except: bool becomes
        uint8 (0/1), float16 becomes float32, and non-native byte order is
        made native. ``pixel_size_um`` is the X pixel size (Y in
        ``metadata["pixel_size_y_um"]`` when it differs). ``metadata`` holds ``format``,
        ``source_axes``, ``source_shape``, ``source_dtype``, ``pixel_size_source``
        ("OME", "ImageJ", "FEI SEM", "Zeiss SEM", "TIFF resolution", "CZI" or None)
        and, when present,
        ``pixel_size_y_um``, ``z_spacing_um``, ``frame_interval`` and
        ``nonfinite``.

    Raises
    ------
    InputError
        For an empty, truncated or damaged file, a file that is not an image,
        an unsupported type, an image over ``max_pixels`` or smaller than
        :data:`MIN_SIDE` pixels in Y or X, a complex dtype, a float image
        without any finite value, or more non-singleton axes than ``TZCYX``.

    Notes
    -----
    Float images with some NaN or infinite values are kept: each non-finite
    value is replaced by the smallest finite value of its channel and the
    number replaced is stored in ``metadata["nonfinite"]``, so nothing
    downstream sees NaN. Plain TIFF resolution tags given as a whole number
    of dots per inch up to 1200 (72, 96, 300 dpi ...) are screen or print
    settings written by image editors, not a calibration, and are ignored
    (``metadata["resolution_ignored"]``). PNG and JPEG carry no calibration
    that is used.
    """
    if palette not in ("colors", "index"):
        raise ValueError(f"palette must be 'colors' or 'index', not {palette!r}")
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    opened, label, fmt, header, closer = _open_header(source, name, palette)
    try:
        _check_shape(header.shape, header.roles, label, limit)
        _verify(header, label, fmt)
        try:
            array = header.load()
        except InputError:
            raise
        except MemoryError:
            raise InputError(f"'{label}' is too large to read into memory.") from None
        except Exception as exc:
            raise InputError(
                f"'{label}' is truncated or damaged: its pixels could not be decoded ({_short(exc)})."
            ) from exc
    finally:
        closer()
    array = np.asarray(array)
    if tuple(array.shape) != tuple(header.shape):
        raise InputError(
            f"'{label}' is truncated or damaged: its pixels have shape {array.shape} "
            f"where its header announces {header.shape}."
        )
    roles = header.roles
    if header.keep_samples is not None:
        axis, n = header.keep_samples
        array = array[(slice(None),) * axis + (slice(0, n),)]
    data = _to_tzcyx(array, roles, label)
    data = _fix_dtype(data, label)
    meta: dict[str, Any] = {
        "format": header.fmt,
        "source_axes": header.source_axes,
        "source_shape": list(header.shape),
        "source_dtype": str(array.dtype),
        "pixel_size_source": header.pixel_size_source,
    }
    meta.update(header.metadata)
    bad = _replace_nonfinite(data, label)
    if bad:
        meta["nonfinite"] = bad
    names = header.channel_names if len(header.channel_names) == data.shape[2] else []
    return MicroImage(
        data=data,
        pixel_size_um=header.pixel_size_um,
        name=label,
        channel_names=list(names),
        metadata=meta,
    )


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding its pixels.

    Attributes
    ----------
    fmt : str
        ``"TIFF"``, ``"ImageJ TIFF"``, ``"OME-TIFF"``, ``"CZI"``, ``"PNG"`` or ``"JPEG"``.
    shape, source_axes : tuple of int, str
        The stored array and its axis letters (tifffile's for TIFF).
    roles : str
        Per source axis one of ``TZCYX`` or ``?`` (unknown meaning).
    keep_samples : tuple or None
        ``(axis, n)``: only the first n samples of that axis are image (alpha follows).
    pixel_size_um, pixel_size_source : float or None, str or None
        The calibration found and where it came from (see :func:`read_image`).
    """

    fmt: str
    shape: tuple[int, ...]
    roles: str
    source_axes: str
    keep_samples: tuple[int, int] | None
    pixel_size_um: float | None
    pixel_size_source: str | None


def read_header(source: str | os.PathLike, name: str | None = None) -> ImageHeader:
    """Read and check an image file's header as :func:`read_image` does, without the
    memory and size limits (for reading the image by region).

    Raises
    ------
    InputError
        For an empty, damaged or unsupported file, no pixels, no Y and X axes, sides
        under :data:`MIN_SIDE` or more axes than ``TZCYX``.
    """
    _, label, fmt, header, closer = _open_header(source, name, "colors")
    try:
        _check_layout(header.shape, header.roles, label)
        _verify(header, label, fmt)
    finally:
        closer()
    return ImageHeader(
        header.fmt,
        tuple(header.shape),
        header.roles,
        header.source_axes,
        header.keep_samples,
        header.pixel_size_um,
        header.pixel_size_source,
    )


def _open_header(source: Source, name: str | None, palette: str):  # noqa: ANN202
    """``(opened, label, format, header, closer)``: the file's header parsed by its format's
    reader, found from the content; one sentence for an empty, foreign or damaged file."""
    opened, label, size = _open_source(source, name)
    if size == 0:
        raise InputError(f"'{label}' is empty (0 bytes).")
    head = _peek(opened, 512)
    fmt = _sniff(head)
    if fmt is None:
        raise InputError(_not_an_image(label, head))
    try:
        if fmt == "TIFF":
            header, closer = _tiff_header(opened, label, size, palette)
        elif fmt == "CZI":
            header, closer = _czi_header(opened, label, size)
        else:
            header, closer = _pil_header(opened, label, fmt, palette)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"'{label}' is too large to read into memory.") from None
    except Exception as exc:  # the libraries raise many kinds for a damaged header
        raise InputError(
            f"'{label}' is a damaged or truncated {fmt} file ({_short(exc)})."
        ) from exc
    return opened, label, fmt, header, closer


def _verify(header: _Header, label: str, fmt: str) -> None:
    """Run the header's file-level checks; one sentence when they fail."""
    try:
        if header.verify is not None:
            header.verify()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"'{label}' is a damaged or truncated {fmt} file ({_short(exc)})."
        ) from exc


def _short(exc: BaseException) -> str:
    """First line of an exception message, without object addresses."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not text or " object at 0x" in text or text.startswith("cannot identify image file"):
        text = "its header cannot be parsed"
    return text[:160].rstrip(".")


def _open_source(source: Source, name: str | None) -> tuple[Path | io.BytesIO, str, int]:
    """Return a path or an in-memory file, the display name and the size in bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        buf = bytes(source)
        return io.BytesIO(buf), name or "image", len(buf)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        label = name or path.name or str(path)
        if not path.exists():
            raise InputError(f"'{path}' does not exist.")
        if not path.is_file():
            raise InputError(f"'{path}' is not a file.")
        return path, label, path.stat().st_size
    if hasattr(source, "read"):
        if hasattr(source, "getvalue"):
            buf = bytes(source.getvalue())
        else:
            if hasattr(source, "seek"):
                try:
                    source.seek(0)
                except (OSError, ValueError):
                    pass
            buf = source.read()
        if not isinstance(buf, bytes):
            raise InputError("The uploaded file could not be read as bytes.")
        label = name or Path(str(getattr(source, "name", "") or "image")).name
        return io.BytesIO(buf), label, len(buf)
    raise TypeError(f"read_image takes a path, bytes or a binary file, not {type(source).__name__}")


def _peek(opened: Path | io.BytesIO, n: int) -> bytes:
    if isinstance(opened, Path):
        with open(opened, "rb") as fh:
            return fh.read(n)
    return opened.getvalue()[:n]


def _sniff(head: bytes) -> str | None:
    """Return "PNG", "JPEG", "TIFF" or "CZI" from the first bytes, else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"ZISRAWFILE"):
        return "CZI"
    return None


def _not_an_image(label: str, head: bytes) -> str:
    for offset, magic, what in _OTHER_TYPES:
        if head[offset : offset + len(magic)] == magic:
            return f"'{label}' is {what}, which microseg does not read; use {FORMATS}."
    if head.startswith(b"BM") and label.lower().endswith((".bmp", ".dib")):
        return f"'{label}' is a BMP image, which microseg does not read; use {FORMATS}."
    if _looks_like_text(head):
        return f"'{label}' is not an image (it looks like a text file); use {FORMATS}."
    return f"'{label}' is not an image file microseg recognises; use {FORMATS}."


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(1, len(text))


BYTES_PER_VALUE = 4
"""Least memory one image value takes once read (float32 processing copies)."""


def available_memory() -> int | None:
    """Bytes of memory free for a new allocation (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_shape(shape: Sequence[int], roles: str, label: str, limit: int) -> None:
    """Validate dimensions and axes from the header, before any pixel is decoded."""
    _check_layout(shape, roles, label)
    total = math.prod(int(n) for n in shape)
    if total > limit:
        raise InputError(
            f"'{label}' holds {total:,} values, over the limit of {limit:,} "
            "(crop or split it before loading)."
        )
    free = available_memory()
    if free is not None and total * BYTES_PER_VALUE > free:
        need, have = total * BYTES_PER_VALUE / 1024**3, free / 1024**3
        raise InputError(
            f"'{label}' holds {total:,} values: reading and processing it needs at least "
            f"{need:.1f} GB of memory and this machine has {have:.1f} GB free (crop or split "
            "it before loading)."
        )


def _check_layout(shape: Sequence[int], roles: str, label: str) -> None:
    """Validate that the header describes a non-empty image with Y, X and known axes."""
    if len(shape) == 0 or any(int(n) == 0 for n in shape):
        raise InputError(f"'{label}' contains no pixels (one of its dimensions is 0).")
    if "Y" not in roles or "X" not in roles:
        raise InputError(f"'{label}' is not a 2-D image (it has no Y and X axes).")
    ny, nx = int(shape[roles.index("Y")]), int(shape[roles.index("X")])
    if ny < MIN_SIDE or nx < MIN_SIDE:
        raise InputError(
            f"'{label}' is only {ny} x {nx} pixels; images must be at least "
            f"{MIN_SIDE} x {MIN_SIDE} pixels."
        )
    _axis_plan(shape, roles, label)


def _axis_plan(shape: Sequence[int], roles: str, label: str) -> list[tuple[str, list[int]]]:
    """Map source axes to ``TZCYX``: list of (target axis, source axes merged into it).

    Singleton axes are dropped, channel-like axes merged into C, and axes of
    unknown meaning become T when the image has no time axis.
    """
    slots: dict[str, list[int]] = {a: [] for a in AXES}
    unknown: list[int] = []
    for i, (n, role) in enumerate(zip(shape, roles, strict=True)):
        if role in "YX" or (int(n) > 1 and role != "?"):
            slots[role].append(i)
        elif int(n) > 1:
            unknown.append(i)
    if unknown and not slots["T"]:
        slots["T"].append(unknown.pop(0))
    if unknown or any(len(slots[a]) > 1 for a in "TZYX"):
        real = sum(int(n) > 1 for n in shape)
        raise InputError(
            f"'{label}' has {real} non-singleton axes (shape {tuple(int(n) for n in shape)}), "
            "more than microseg supports (time, z, channel, Y and X)."
        )
    return [(a, slots[a]) for a in AXES]


def _to_tzcyx(array: np.ndarray, roles: str, label: str) -> np.ndarray:
    """Rearrange ``array`` (axes described by ``roles``) to a 5-D ``TZCYX`` array."""
    plan = _axis_plan(array.shape, roles, label)
    used = [i for _, idx in plan for i in idx]
    dropped = [i for i in range(array.ndim) if i not in used]
    order = used + dropped
    arr = np.transpose(array, order)
    arr = arr.reshape(arr.shape[: len(used)])  # dropped axes are singletons
    out_shape = [math.prod(array.shape[i] for i in idx) if idx else 1 for _, idx in plan]
    arr = arr.reshape(out_shape)
    return np.ascontiguousarray(arr)


def _fix_dtype(data: np.ndarray, label: str) -> np.ndarray:
    if data.dtype.kind == "c":
        raise InputError(f"'{label}' has complex-valued pixels, which microseg cannot segment.")
    if data.dtype.kind == "b":
        return data.astype(np.uint8)
    if data.dtype.kind not in "uif":
        raise InputError(f"'{label}' has pixels of type {data.dtype}, which is not a number type.")
    if data.dtype == np.float16:
        return data.astype(np.float32)
    if not data.dtype.isnative:
        return data.astype(data.dtype.newbyteorder("="))
    return data


def _replace_nonfinite(data: np.ndarray, label: str) -> int:
    """Replace NaN/inf in place by each channel's finite minimum; return how many."""
    if data.dtype.kind != "f":
        return 0
    total_bad = 0
    fills: dict[int, float] = {}
    masks: dict[int, np.ndarray] = {}
    for c in range(data.shape[2]):
        chan = data[:, :, c]
        finite = np.isfinite(chan)
        n_bad = int(chan.size - np.count_nonzero(finite))
        if n_bad == 0:
            continue
        total_bad += n_bad
        masks[c] = finite
        if n_bad < chan.size:
            fills[c] = float(chan[finite].min())
    if total_bad == 0:
        return 0
    if total_bad == data.size:
        raise InputError(f"'{label}' contains only NaN or infinite values.")
    fallback = min(fills.values()) if fills else 0.0
    for c, finite in masks.items():
        data[:, :, c][~finite] = fills.get(c, fallback)
    return total_bad


# ----------------------------------------------------------------------------- Pillow


def _pil_header(opened: Path | io.BytesIO, label: str, fmt: str, palette: str):
    from PIL import Image

    try:
        img = Image.open(opened)
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise InputError(
            f"'{label}' has more pixels than the limit of {limit:,} for {fmt} images, "
            "so it was not decoded."
        ) from None
    bands = len(img.getbands())
    w, h = img.size
    mode = img.mode
    sixteen_rgb = fmt == "PNG" and _png_is_16bit_colour(opened)
    if sixteen_rgb:
        bands = 3
    shape = (h, w, bands) if bands > 1 else (h, w)

    def load() -> np.ndarray:
        if sixteen_rgb:
            arr = _png_decode_16(opened)
        else:
            img.load()
            arr = _pil_to_array(img, palette)
        # alpha dropped, grey palettes and EXIF rotation change the announced shape
        header.shape = tuple(arr.shape)
        header.roles, header.source_axes = "YXC"[: arr.ndim], "YXS"[: arr.ndim]
        return arr

    header = _Header(
        fmt=fmt,
        shape=shape,
        roles="YXC"[: len(shape)],
        source_axes="YXS"[: len(shape)],
        load=load,
        metadata={"mode": mode},
    )
    if bands >= 3 and mode not in ("P", "PA"):
        header.channel_names = ["red", "green", "blue"]
    return header, img.close


def _pil_to_array(img, palette: str) -> np.ndarray:
    from PIL import ImageOps

    mode = img.mode
    if mode in ("RGB", "L", "I", "F", "1") or mode.startswith("I;16"):
        if img.format == "JPEG":
            img = ImageOps.exif_transpose(img)
        return np.asarray(img)
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(img)[..., :3]
    if mode in ("LA", "La"):
        return np.asarray(img)[..., 0]
    if mode in ("P", "PA"):
        if palette == "index":
            return np.asarray(img if mode == "P" else img.getchannel(0))
        rgb = np.asarray(img.convert("RGB"))
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return np.ascontiguousarray(rgb[..., 0])
        return rgb
    if img.format == "JPEG":
        img = ImageOps.exif_transpose(img)
    return np.asarray(img.convert("RGB"))


def _png_is_16bit_colour(opened: Path | io.BytesIO) -> bool:
    head = _peek(opened, 33)
    if len(head) < 33 or head[12:16] != b"IHDR":
        return False
    depth, colour = head[24], head[25]
    return depth == 16 and colour in (2, 6)


def _png_decode_16(opened: Path | io.BytesIO) -> np.ndarray:
    """Decode a 16-bit RGB(A) PNG at full depth (Pillow reduces it to 8 bits)."""
    import imagecodecs

    raw = opened.read_bytes() if isinstance(opened, Path) else opened.getvalue()
    arr = imagecodecs.png_decode(raw)
    return arr[..., :3] if arr.ndim == 3 else arr


# ----------------------------------------------------------------------------- TIFF

_TIFF_ROLES = {"T": "T", "Z": "Z", "C": "C", "S": "C", "E": "C", "Y": "Y", "X": "X"}


def _tiff_header(opened: Path | io.BytesIO, label: str, size: int, palette: str):
    import tifffile

    tif = tifffile.TiffFile(opened)
    try:
        if not tif.series:
            raise InputError(f"'{label}' is a TIFF file without any image in it.")
        series = tif.series[0]
        shape = tuple(int(n) for n in series.shape)
        axes = str(series.axes)
        page = series.keyframe
        roles = "".join(_TIFF_ROLES.get(a, "?") for a in axes)
        if series.dtype is None or page is None:
            raise InputError(f"'{label}' is a TIFF file whose image data cannot be read.")
        meta: dict[str, Any] = {}
        if len(tif.series) > 1:
            meta["n_series"] = len(tif.series)
        header = _Header(
            fmt="TIFF",
            shape=shape,
            roles=roles,
            source_axes=axes,
            load=lambda: series.asarray(),
            metadata=meta,
        )
        _tiff_samples(header, page)
        _tiff_palette(header, page, series, palette)
        _tiff_calibration(header, tif, page, label)
        header.verify = lambda: _tiff_check_extent(series, size, label)
    except BaseException:
        tif.close()
        raise
    return header, tif.close


def _tiff_samples(header: _Header, page) -> None:
    """Drop alpha samples of RGBA or grey+alpha pages."""
    if "S" not in header.source_axes:
        return
    axis = header.source_axes.index("S")
    n = header.shape[axis]
    extra = tuple(int(e) for e in (getattr(page, "extrasamples", ()) or ()))
    photometric = int(getattr(page, "photometric", -1))
    colour = 3 if photometric in (2, 6) else 1  # RGB, YCbCr
    if photometric in (2, 6) and n >= 3 and math.prod(header.shape) == n * _yx(header):
        header.channel_names = ["red", "green", "blue"]
    if n <= colour:
        return
    alpha = bool(extra) and int(extra[0]) in (1, 2)
    if alpha or (photometric == 2 and n == 4):
        header.keep_samples = (axis, colour)


def _yx(header: _Header) -> int:
    return header.shape[header.roles.index("Y")] * header.shape[header.roles.index("X")]


def _tiff_palette(header: _Header, page, series, palette: str) -> None:
    """Palette-colour pages: apply the colour map (or keep indices)."""
    if int(getattr(page, "photometric", -1)) != 3 or palette == "index":
        return
    cmap = getattr(page, "colormap", None)
    if cmap is None:
        return
    cmap = np.asarray(cmap)
    lut = (cmap // 257).astype(np.uint8) if cmap.max() > 255 else cmap.astype(np.uint8)
    grey = bool(np.array_equal(lut[0], lut[1]) and np.array_equal(lut[0], lut[2]))
    lut_t = np.ascontiguousarray(lut[0] if grey else lut.T)

    def load() -> np.ndarray:
        idx = series.asarray()
        return lut_t[idx]

    header.load = load
    if not grey:
        header.shape = header.shape + (3,)
        header.roles += "C"
        header.source_axes += "S"
        header.channel_names = ["red", "green", "blue"]


def _tiff_check_extent(series, size: int, label: str) -> None:
    """Raise when the pixel data the header points to lies beyond the end of the file."""
    end = 0
    if series.dataoffset is not None:
        end = int(series.dataoffset) + int(series.nbytes)
    else:
        pages = list(series.pages)
        if any(p is None for p in pages):
            raise InputError(
                f"'{label}' is missing some of its image planes (a multi-file OME-TIFF "
                "needs all of its files; export a single file instead)."
            )
        for page in pages:
            offsets = getattr(page, "dataoffsets", ()) or ()
            counts = getattr(page, "databytecounts", ()) or ()
            for off, cnt in zip(offsets, counts, strict=False):
                if cnt:
                    end = max(end, int(off) + int(cnt))
    if end > size:
        raise InputError(
            f"'{label}' is truncated: its image data ends at byte {end:,} "
            f"but the file has only {size:,} bytes."
        )


def _tiff_calibration(header: _Header, tif, page, label: str) -> None:
    """Pixel size and channel names from OME, ImageJ, SEM (FEI, Zeiss) or TIFF
    resolution metadata."""
    if tif.is_ome and tif.ome_metadata:
        header.fmt = "OME-TIFF"
        _ome_calibration(header, tif.ome_metadata)
        if header.pixel_size_um is not None:
            return
    if tif.is_imagej:
        header.fmt = "ImageJ TIFF" if header.fmt == "TIFF" else header.fmt
        ij = tif.imagej_metadata or {}
        unit = _unit_um(ij.get("unit"))
        xres = _rational(page, "XResolution")
        yres = _rational(page, "YResolution")
        if unit is not None and xres:
            _set_pixel_size(header, unit / xres, unit / yres if yres else None, "ImageJ")
            if ij.get("spacing"):
                header.metadata["z_spacing_um"] = float(ij["spacing"]) * unit
        if ij.get("finterval"):
            header.metadata["frame_interval"] = float(ij["finterval"])
        if isinstance(ij.get("Info"), str):
            header.metadata["info"] = ij["Info"][:10000]
    if header.pixel_size_um is None:
        _sem_calibration(header, tif)
    if header.pixel_size_um is None:
        _resolution_calibration(header, page)


def _sem_calibration(header: _Header, tif) -> None:
    """Pixel size from the private tags of SEM software: FEI/Thermo Fisher
    (``[Scan] PixelWidth`` in metres) and Zeiss (``AP_PIXEL_SIZE`` with its unit)."""
    width = height = None
    source = ""
    try:
        fei = tif.fei_metadata if tif.is_fei else None
        zeiss = tif.sem_metadata if tif.is_sem else None
    except Exception:  # noqa: BLE001 - unreadable vendor tags: no calibration from them
        return
    if isinstance(fei, dict) and isinstance(fei.get("Scan"), dict):
        scan = fei["Scan"]
        width, height = _positive(scan.get("PixelWidth")), _positive(scan.get("PixelHeight"))
        width, height = (v * 1e6 if v else None for v in (width, height))
        source = "FEI SEM"
    elif isinstance(zeiss, dict) and isinstance(zeiss.get("ap_pixel_size"), tuple):
        entry = zeiss["ap_pixel_size"]
        unit = _unit_um(entry[2]) if len(entry) > 2 else None
        value = _positive(entry[1]) if len(entry) > 1 else None
        width = value * unit if value and unit else None
        source = "Zeiss SEM"
    if width:
        _set_pixel_size(header, width, height, source)


def _set_pixel_size(header: _Header, x_um: float, y_um: float | None, source: str) -> None:
    """Record the X pixel size, its source and, when it differs, the Y pixel size."""
    header.pixel_size_um = x_um
    header.pixel_size_source = source
    if y_um and not math.isclose(x_um, y_um, rel_tol=1e-6):
        header.metadata["pixel_size_y_um"] = y_um


def _positive(value: Any) -> float | None:
    """``value`` as a positive finite float, else None."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _resolution_calibration(header: _Header, page) -> None:
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2
    xres = _rational(page, "XResolution")
    if not xres or unit not in (2, 3):
        return
    per_unit = 25400.0 if unit == 2 else 10000.0
    dpi = xres if unit == 2 else xres * 2.54
    if dpi <= 1200 and abs(dpi - round(dpi)) < 0.01:
        header.metadata["resolution_ignored"] = f"{round(dpi)} dpi"
        return
    yres = _rational(page, "YResolution")
    _set_pixel_size(header, per_unit / xres, per_unit / yres if yres else None, "TIFF resolution")


def _rational(page, tag: str) -> float | None:
    t = page.tags.get(tag)
    if t is None:
        return None
    value = t.value
    try:
        num, den = (value[0], value[1]) if isinstance(value, tuple | list) else (value, 1)
        res = float(num) / float(den)
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    return res if math.isfinite(res) and res > 0 else None


def _unit_um(unit: Any) -> float | None:
    """Micrometres per ``unit`` (a length unit name), or None when not a length."""
    if not isinstance(unit, str):
        return None
    key = unit.strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").lower()
    return _UNIT_UM.get(key)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ome_calibration(header: _Header, xml: str) -> None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return
    pixels = next((el for el in root.iter() if _local(el.tag) == "Pixels"), None)
    if pixels is None:
        return
    sx = _ome_length(pixels, "PhysicalSizeX")
    sy = _ome_length(pixels, "PhysicalSizeY")
    sz = _ome_length(pixels, "PhysicalSizeZ")
    if sx is not None:
        _set_pixel_size(header, sx, sy, "OME")
    if sz is not None:
        header.metadata["z_spacing_um"] = sz
    dt = pixels.get("TimeIncrement")
    if dt:
        try:
            header.metadata["frame_interval"] = float(dt)
            header.metadata["frame_interval_unit"] = pixels.get("TimeIncrementUnit", "s")
        except ValueError:
            pass
    names = [ch.get("Name") for ch in pixels if _local(ch.tag) == "Channel"]
    if names and all(names):
        header.channel_names = [str(n) for n in names]


def _ome_length(pixels: ET.Element, key: str) -> float | None:
    value = _positive(pixels.get(key))
    scale = _unit_um(pixels.get(key + "Unit", "µm"))
    if value is None or scale is None:
        return None
    return value * scale


# ----------------------------------------------------------------------------- CZI

_CZI_ROLES = {"T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X", "0": "C"}


def _czi_header(opened: Path | io.BytesIO, label: str, size: int):
    import czifile

    czi = czifile.CziFile(str(opened) if isinstance(opened, Path) else opened)
    try:
        entries = czi.filtered_subblock_directory
        if not entries:
            raise InputError(f"'{label}' is a CZI file without any image in it.")
        xml = czi.metadata()
        header = _czi_header_from(czi.axes, czi.shape, xml, czi.asarray)
        header.verify = lambda: _czi_check_extent(entries, size, label)
    except BaseException:
        czi.close()
        raise
    return header, czi.close


def _czi_check_extent(entries, size: int, label: str) -> None:
    end = 0
    for entry in entries:
        block = entry.data_segment()
        end = max(end, int(block.data_offset) + int(block.data_size))
    if end > size:
        raise InputError(
            f"'{label}' is truncated: its image data ends at byte {end:,} "
            f"but the file has only {size:,} bytes."
        )


def _czi_header_from(
    axes: str, shape: Sequence[int], xml: str | None, load: Callable[[], np.ndarray]
) -> _Header:
    """Describe a CZI image from czifile's ``axes``, ``shape`` and metadata XML.

    Dimensions ``T``, ``Z``, ``C``, ``Y``, ``X`` keep their meaning, ``0``
    (colour samples) becomes channels with alpha dropped, others (scenes,
    blocks, views, ...) are axes of unknown meaning. The pixel size is
    ``Scaling/Items/Distance[@Id="X"]/Value`` of the metadata, in metres.
    """
    shape = tuple(int(n) for n in shape)
    roles = "".join(_CZI_ROLES.get(a, "?") for a in axes)
    header = _Header(fmt="CZI", shape=shape, roles=roles, source_axes=str(axes), load=load)
    if "0" in axes:
        axis = axes.index("0")
        if shape[axis] == 4:
            header.keep_samples = (axis, 3)
        if shape[axis] >= 3:
            header.channel_names = ["red", "green", "blue"]
    if xml:
        _czi_calibration(header, xml)
    return header


def _czi_calibration(header: _Header, xml: str) -> None:
    try:
        root = ET.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)
    except ET.ParseError:
        return
    dist: dict[str, float] = {}
    for el in root.iter():
        if _local(el.tag) != "Distance" or el.get("Id") not in ("X", "Y", "Z"):
            continue
        metres = _positive(next((c.text for c in el if _local(c.tag) == "Value"), None))
        if metres is not None:
            dist.setdefault(el.get("Id"), metres * 1e6)
    if "X" in dist:
        _set_pixel_size(header, dist["X"], dist.get("Y"), "CZI")
    if "Z" in dist:
        header.metadata["z_spacing_um"] = dist["Z"]
    channels = None
    for el in root.iter():
        if _local(el.tag) == "Channels" and any(_local(c.tag) == "Channel" for c in el):
            channels = [c.get("Name") or "" for c in el if _local(c.tag) == "Channel"]
            break
    if channels and all(channels) and not header.channel_names:
        header.channel_names = channels


# ----------------------------------------------------------------------------- writing


def label_dtype(n_max: int) -> np.dtype:
    """Dtype for a label image whose largest id is ``n_max``: uint16, else uint32."""
    n_max = int(n_max)
    if n_max < 0:
        raise ValueError(f"label ids cannot be negative, got {n_max}")
    if n_max <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if n_max <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    raise ValueError(f"{n_max} labels do not fit in uint32")


def image_stem(path: str | os.PathLike) -> str:
    """File name without its image extensions: ``a.ome.tif`` -> ``a``, ``b.tif`` -> ``b``.

    Only known image suffixes (``.tif``, ``.tiff``, ``.ome``, ``.png``, ``.jpg``,
    ``.jpeg``, ``.czi``, ``.zarr``) are removed, so dots inside a name survive
    (``run.2024.01.tif`` -> ``run.2024.01``).
    """
    name = Path(path).name
    stem = name
    while True:
        base, dot, ext = stem.rpartition(".")
        if not dot or not base or "." + ext.lower() not in _STEM_SUFFIXES:
            break
        stem = base
    return stem or name


def output_stems(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Output name stems for ``paths``, one each and all different.

    :func:`image_stem` where it is unique; where several inputs share it (``a/img.tif``
    and ``b/img.tif``), the parent folder's name goes in front (``a_img``, ``b_img``);
    a name still taken (the same file twice) gets ``_2``, ``_3``... So no input's
    outputs overwrite another's.
    """
    plain = [image_stem(p) for p in paths]
    shared = {s for s in plain if plain.count(s) > 1}
    used: set[str] = set()
    stems = []
    for p, s in zip(paths, plain, strict=True):
        parent = Path(p).resolve().parent.name
        base = f"{parent}_{s}" if s in shared and parent else s
        cand, k = base, 2
        while cand in used:
            cand, k = f"{base}_{k}", k + 1
        used.add(cand)
        stems.append(cand)
    return stems


def output_folder(path: str | os.PathLike) -> Path:
    """``path`` as an existing folder for results (made when missing), or
    :class:`InputError` with one sentence when it is a file or cannot be made."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise InputError(
            f"The output folder {folder} is a file (or lies under one); give a folder."
        ) from exc
    except OSError as exc:
        raise InputError(
            f"The output folder {folder} cannot be made ({exc.strerror or exc})."
        ) from exc
    return folder


def jsonable(obj: Any) -> Any:
    """``obj`` ready for ``json.dumps``: numpy values as Python ones, NaN and inf as
    None, other objects (paths ...) as strings; dicts, lists and arrays recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def _provenance(metadata: dict | None) -> dict:
    meta = {"microseg_version": __version__}
    meta.update(jsonable(metadata or {}))
    return meta


def _check_axes(array: np.ndarray, axes: str) -> str:
    axes = axes.upper()
    if (
        len(axes) != array.ndim
        or len(set(axes)) != len(axes)
        or not set(axes) <= set("TZCYXS")
        or "Y" not in axes
        or "X" not in axes
    ):
        raise ValueError(f"axes {axes!r} do not describe an array of shape {array.shape}")
    return axes


def write_tiff(
    path: str | os.PathLike,
    array: np.ndarray,
    axes: str,
    pixel_size_um: float | None = None,
    metadata: dict | None = None,
    imagej: bool = True,
    compression: str | None = None,
) -> Path:
    """Write ``array`` as a TIFF that Fiji/ImageJ opens with its axes and pixel size.

    Parameters
    ----------
    path : str or Path
        Output file; its folder is created if missing, an existing file is replaced.
    array : ndarray
        Image or label data; bool is written as uint8.
    axes : str
        One letter per dimension from ``TZCYXS`` (``S``: RGB samples), e.g. ``"TYX"``.
    pixel_size_um : float, optional
        Pixel edge length in micrometres, stored as the resolution (ImageJ unit ``um``).
    metadata : dict, optional
        Provenance (parameters, model hash ...), stored as JSON together with the
        microseg version: in ImageJ's ``Info`` property for ImageJ files, in the
        JSON ImageDescription otherwise (see :func:`read_provenance`).
    imagej : bool
        Write an ImageJ hyperstack. ImageJ only holds uint8, uint16 and float32
        (RGB as uint8), so other dtypes (uint32 labels, int, float64) are written
        as a plain TIFF with the same axes, resolution and provenance.
    compression : str, optional
        tifffile compression, e.g. ``"zlib"``; default none (widest compatibility).

    Returns
    -------
    Path
        The written file.
    """
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    axes = _check_axes(arr, axes)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    prov = _provenance(metadata)
    has_s = "S" in axes
    photometric = "rgb" if has_s else "minisblack"
    ij_ok = arr.dtype in (np.uint8, np.uint16, np.float32) and (
        not has_s or (arr.dtype == np.uint8 and arr.shape[axes.index("S")] in (3, 4))
    )
    kwargs: dict[str, Any] = {"photometric": photometric, "software": f"microseg {__version__}"}
    if compression:
        kwargs["compression"] = compression
    if imagej and ij_ok:
        order = [axes.index(a) for a in "TZCYXS" if a in axes]
        arr = np.transpose(arr, order)
        ij_axes = "".join(axes[i] for i in order)
        ij_meta: dict[str, Any] = {"axes": ij_axes, "Info": json.dumps(prov)}
        if pixel_size_um:
            ij_meta["unit"] = "um"
            kwargs["resolution"] = (1.0 / pixel_size_um, 1.0 / pixel_size_um)
        tifffile.imwrite(path, arr, imagej=True, metadata=ij_meta, **kwargs)
    else:
        if pixel_size_um:
            per_cm = 1e4 / pixel_size_um
            kwargs["resolution"] = (per_cm, per_cm)
            kwargs["resolutionunit"] = "CENTIMETER"
        if has_s and (arr.dtype != np.uint8 and arr.dtype != np.uint16):
            kwargs["photometric"] = "minisblack"
        tifffile.imwrite(
            path, arr, metadata={"axes": axes, "microseg": prov}, imagej=False, **kwargs
        )
    return path


def write_tiled_tiff(
    path: str | os.PathLike,
    array: Any,
    axes: str,
    pixel_size_um: float | None = None,
    metadata: dict | None = None,
    tile: int = 256,
    compression: str = "zlib",
) -> Path:
    """Write an array larger than memory (zarr or numpy) as a tiled BigTIFF, one row of
    tiles at a time.

    The file is a plain (not ImageJ) TIFF with the axes, resolution and provenance of
    :func:`write_tiff`; Fiji opens it with Bio-Formats, QuPath and napari directly.

    Parameters
    ----------
    path : str or Path
        Output file (its folder is created; an existing file is replaced).
    array : array
        Anything with ``shape``, ``dtype`` and slicing, last two axes Y and X.
    axes : str
        One letter per dimension, ending in ``YX`` (e.g. ``"CYX"``).
    pixel_size_um, metadata
        As for :func:`write_tiff`.
    tile : int
        Tile side (a multiple of 16).
    compression : str
        tifffile compression.
    """
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(n) for n in array.shape)
    if len(axes) != len(shape) or not axes.endswith("YX"):
        raise ValueError(f"axes {axes!r} do not describe an array of shape {shape} ending in YX")
    h, w = shape[-2:]

    def tiles():
        for lead in np.ndindex(*shape[:-2]):
            for y0 in range(0, h, tile):
                strip = np.asarray(array[lead + (slice(y0, min(h, y0 + tile)), slice(None))])
                for x0 in range(0, w, tile):
                    yield np.ascontiguousarray(strip[:, x0 : x0 + tile])

    kwargs: dict[str, Any] = {}
    if pixel_size_um:
        per_cm = 1e4 / pixel_size_um
        kwargs["resolution"] = (per_cm, per_cm)
        kwargs["resolutionunit"] = "CENTIMETER"
    tifffile.imwrite(
        path,
        tiles(),
        shape=shape,
        dtype=np.dtype(array.dtype),
        tile=(tile, tile),
        bigtiff=True,
        compression=compression,
        photometric="minisblack",
        software=f"microseg {__version__}",
        metadata={"axes": axes, "microseg": _provenance(metadata)},
        **kwargs,
    )
    return path


def write_ome_tiff(
    path: str | os.PathLike,
    array: np.ndarray,
    axes: str,
    pixel_size_um: float | None = None,
    metadata: dict | None = None,
    channel_names: Sequence[str] | None = None,
    compression: str | None = None,
) -> Path:
    """Write ``array`` as an OME-TIFF with axes, physical pixel size and channel names.

    Provenance (``metadata`` plus the microseg version) is stored as JSON in the
    OME image ``Description`` (see :func:`read_provenance`). Parameters as in
    :func:`write_tiff`; returns the written path.
    """
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    axes = _check_axes(arr, axes)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    ome: dict[str, Any] = {"axes": axes, "Description": json.dumps(_provenance(metadata))}
    if pixel_size_um:
        ome.update(
            PhysicalSizeX=float(pixel_size_um),
            PhysicalSizeXUnit="µm",
            PhysicalSizeY=float(pixel_size_um),
            PhysicalSizeYUnit="µm",
        )
    if channel_names is not None and "C" in axes:
        if len(channel_names) != arr.shape[axes.index("C")]:
            raise ValueError("channel_names must give one name per channel")
        ome["Channel"] = {"Name": [str(n) for n in channel_names]}
    kwargs: dict[str, Any] = {"photometric": "rgb" if "S" in axes else "minisblack"}
    if compression:
        kwargs["compression"] = compression
    tifffile.imwrite(
        path, arr, ome=True, metadata=ome, software=f"microseg {__version__}", **kwargs
    )
    return path


def write_png(path: str | os.PathLike, image: np.ndarray, metadata: dict | None = None) -> Path:
    """Write a grey ``(Y, X)`` (uint8/uint16) or colour ``(Y, X, 3|4)`` uint8 PNG.

    Bool images are written as 0/255. Provenance goes into a ``microseg`` text chunk.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(image)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2 and arr.dtype in (np.uint8, np.uint16):
        pass
    elif arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8:
        pass
    else:
        raise ValueError(
            f"write_png takes (Y, X) uint8/uint16 or (Y, X, 3|4) uint8, got {arr.shape} {arr.dtype}"
        )
    info = PngInfo()
    info.add_text("microseg", json.dumps(_provenance(metadata)))
    Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG", pnginfo=info)
    return path


def read_provenance(path: str | os.PathLike) -> dict | None:
    """Provenance JSON written by :func:`write_tiff`, :func:`write_ome_tiff` or :func:`write_png`.

    Returns None when the file carries none.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        fmt = _sniff(fh.read(16))
    text: str | None = None
    if fmt == "PNG":
        from PIL import Image

        with Image.open(path) as img:
            text = img.info.get("microseg")
    elif fmt == "TIFF":
        import tifffile

        with tifffile.TiffFile(path) as tif:
            if tif.is_imagej:
                text = (tif.imagej_metadata or {}).get("Info")
            elif tif.is_ome and tif.ome_metadata:
                root = ET.fromstring(tif.ome_metadata)
                el = next((e for e in root.iter() if _local(e.tag) == "Description"), None)
                text = el.text if el is not None else None
            elif tif.shaped_metadata:
                found = tif.shaped_metadata[0].get("microseg")
                return found if isinstance(found, dict) else None
    if not text:
        return None
    try:
        found = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


# ----------------------------------------------------------------------------- display


def auto_range(
    channel: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.8, sample: int = 1 << 20
) -> tuple[float, float]:
    """Percentile display range ``(lo, hi)`` of one channel, ignoring NaN/inf.

    At most ``sample`` values (a regular subsample) are used, so large planes stay fast.
    """
    flat = np.asarray(channel).ravel()
    step = max(1, flat.size // sample)
    ref = flat[::step]
    if ref.dtype.kind == "f":
        ref = ref[np.isfinite(ref)]
    if ref.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(ref, [low_pct, high_pct])
    return float(lo), float(hi)


def to_display_uint8(
    plane: np.ndarray,
    low_pct: float = 0.5,
    high_pct: float = 99.8,
    manual: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
    channels: Sequence[int] | None = None,
) -> np.ndarray:
    """Map a plane to uint8 for display, with percentile or manual contrast.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` or ``(C, Y, X)``, any real dtype.
    low_pct, high_pct : float
        Percentiles mapped to 0 and 255 per channel (auto contrast).
    manual : (lo, hi) or list of (lo, hi), optional
        Fixed display range, for all shown channels or one pair per shown channel;
        overrides the percentiles.
    channels : sequence of int, optional
        Up to three channel indices to show; default all when there are at most
        three, else the first three.

    Returns
    -------
    ndarray
        uint8 ``(Y, X)`` for one shown channel, else ``(Y, X, 3)``: three channels
        as red, green, blue; two as magenta and green.
    """
    arr = np.asarray(plane)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected (Y, X) or (C, Y, X), got shape {arr.shape}")
    if channels is None:
        channels = list(range(min(3, arr.shape[0])))
    channels = list(channels)
    if not 1 <= len(channels) <= 3:
        raise ValueError("show one, two or three channels")
    if manual is not None and len(manual) == 2 and np.isscalar(manual[0]):
        ranges = [tuple(manual)] * len(channels)
    elif manual is not None:
        ranges = [tuple(r) for r in manual]
        if len(ranges) != len(channels):
            raise ValueError("give one (lo, hi) pair per shown channel")
    else:
        ranges = [auto_range(arr[c], low_pct, high_pct) for c in channels]
    scaled = [_scale_uint8(arr[c], *r) for c, r in zip(channels, ranges, strict=True)]
    if len(scaled) == 1:
        return scaled[0]
    if len(scaled) == 2:
        a, b = scaled
        return np.stack([a, b, a], axis=-1)
    return np.stack(scaled, axis=-1)


def _scale_uint8(chan: np.ndarray, lo: float, hi: float) -> np.ndarray:
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + 1.0
    out = chan.astype(np.float32, copy=True)
    out -= lo
    out *= 255.0 / (hi - lo)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(out, 0, 255, out=out)
    return (out + 0.5).astype(np.uint8)


__all__ = [
    "FORMATS",
    "MAX_PIXELS",
    "MIN_SIDE",
    "auto_range",
    "image_stem",
    "label_dtype",
    "read_image",
    "read_provenance",
    "supported_suffixes",
    "to_display_uint8",
    "write_ome_tiff",
    "write_png",
    "write_tiff",
]
