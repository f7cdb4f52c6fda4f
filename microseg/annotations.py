"""Annotations made in other tools, read as dense training masks.

QuPath GeoJSON (``.geojson``/``.json``) and ImageJ/Fiji ROIs (``RoiSet.zip``, ``.roi``)
are outlines: they become the masks ``microseg train --masks`` takes (instance labels
for nuclei, a boundary map for grains). Label arrays saved with NumPy (``.npy``) or
exported by ilastik (HDF5 ``.h5``) follow the label-image convention of the task, as a
PNG/TIFF mask read by :func:`microseg.io.read_image` does (nuclei: object ids; grains:
nonzero = boundary).

Cellpose's ``_seg.npy`` holds its masks inside a Python pickle, which is never opened:
it is refused with one sentence that says what to save from Cellpose instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from microseg.errors import InputError

SUFFIXES = (".geojson", ".json", ".zip", ".roi", ".npy", ".h5", ".hdf5")
"""File types read here rather than as images."""
MAX_BYTES = 512 * 1024**2
_AREA_TYPES = ("POLYGON", "FREEHAND", "TRACED", "RECT", "OVAL")
_LINE_TYPES = ("LINE", "POLYLINE", "FREELINE", "ANGLE")


def is_annotation_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read by :func:`read_mask` (by its name)."""
    return Path(path).suffix.lower() in SUFFIXES


def read_mask(path: str | os.PathLike, shape_yx: tuple[int, int], task: str) -> np.ndarray:
    """A dense mask of ``task``'s convention from an annotation file.

    Parameters
    ----------
    path : path
        ``.geojson``/``.json`` (QuPath or any polygon GeoJSON), ``.zip``/``.roi``
        (ImageJ ROIs) or ``.npy`` (an integer label array, loaded without pickles).
    shape_yx : (int, int)
        The size of the image the annotations belong to.
    task : str
        ``"nuclei"``: instance labels (0 = background); ``"grains"``: boundary map
        (1 on boundaries: outside every grain, where two grains touch, and on traced
        lines; 0 inside grains).

    Returns
    -------
    ndarray
        ``(Y, X)`` uint32 (nuclei) or uint8 (grains).

    Raises
    ------
    InputError
        One sentence for a file that cannot be used.
    """
    p = Path(path)
    name = p.name
    if task not in ("nuclei", "grains"):
        raise InputError(
            f"{name}: outlines from other tools label objects; use them with --task nuclei "
            "or grains (semantic masks are images of class numbers)."
        )
    if not p.is_file():
        raise InputError(f"The mask file {p} does not exist.")
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"'{name}' is empty (0 bytes).")
    if size > MAX_BYTES:
        raise InputError(f"'{name}' is larger than {MAX_BYTES // 1024**2} MB.")
    suffix = p.suffix.lower()
    if suffix in (".npy", ".h5", ".hdf5"):
        # arrays follow the label-image convention of the task, as a TIFF mask would
        arr = _read_npy(p, shape_yx) if suffix == ".npy" else _read_h5(p, shape_yx)
        if not arr.any():
            raise InputError(f"'{name}' labels no pixel (all values are 0).")
        return arr if task == "nuclei" else (arr != 0).astype(np.uint8)
    if suffix in (".zip", ".roi"):
        labels, lines = _read_rois(p, shape_yx)
    else:
        from microseg.geojson import read_geojson

        labels, lines, _ = read_geojson(p, shape_yx, name=name)
    if task == "nuclei":
        if not labels.any():
            raise InputError(f"'{name}' outlines no nucleus (it holds lines only).")
        return labels
    return boundary_map(labels, lines)


def boundary_map(labels: np.ndarray, lines: np.ndarray | None = None) -> np.ndarray:
    """Grain boundaries (uint8 1) of a grain label image: pixels outside every grain,
    pixels where two grains touch (one pixel thick, on the higher id's side) and
    ``lines``; grains that share an edge therefore stay apart."""
    lab = np.asarray(labels)
    out = lab == 0
    for axis in (0, 1):
        a = np.moveaxis(lab, axis, 0)
        touch = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        o = np.moveaxis(out, axis, 0)
        higher = a[1:] > a[:-1]
        o[1:][touch & higher] = True
        o[:-1][touch & ~higher] = True
    if lines is not None:
        out |= np.asarray(lines, bool)
    return out.astype(np.uint8)


def _read_npy(path: Path, shape_yx: tuple[int, int]) -> np.ndarray:
    name = path.name
    cellpose = (
        f"'{name}' is a Cellpose file: its masks are stored inside a Python pickle, which "
        "microseg never opens; in Cellpose save the masks as PNG or TIFF (File > Save "
        "masks) and give that file."
    )
    if name.lower().endswith("_seg.npy"):
        raise InputError(cellpose)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "python objects" in str(exc).lower():
            raise InputError(
                f"'{name}' stores Python objects (a pickle), which microseg never opens; "
                "save the label array itself (numpy.save of an integer array) or a TIFF."
            ) from None
        raise InputError(f"'{name}' is not a NumPy array file ({exc}).") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"'{name}' is not a NumPy array file ({exc}).") from None
    arr = np.squeeze(arr)
    if arr.ndim != 2 or arr.dtype.kind not in "iub":
        raise InputError(
            f"'{name}' holds a {arr.dtype} array of shape {arr.shape}; a mask is a 2-D "
            "integer label image."
        )
    return _checked_labels(arr, shape_yx, name)


def _checked_labels(arr: np.ndarray, shape_yx: tuple[int, int], name: str) -> np.ndarray:
    """A 2-D label array of the image's size with no negative value, as uint32."""
    if tuple(arr.shape) != tuple(shape_yx):
        raise InputError(
            f"'{name}' is {arr.shape[1]}x{arr.shape[0]} pixels but its image is "
            f"{shape_yx[1]}x{shape_yx[0]}."
        )
    if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
        raise InputError(f"'{name}' holds negative values; labels must be 0 or positive.")
    return np.asarray(arr, np.uint32)


def _read_h5(path: Path, shape_yx: tuple[int, int]) -> np.ndarray:
    """The label array of an HDF5 file (ilastik's ``exported_data``, or its only integer
    array), put in (Y, X) order by ilastik's ``axistags``."""
    import h5py

    name = path.name
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise InputError(f"'{name}' is not an HDF5 file.") from None
    with f:
        found: list[str] = []

        def visit(key: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and obj.dtype.kind in "iub":
                found.append(key)

        f.visititems(visit)
        key = "exported_data" if "exported_data" in found else None
        if key is None and len(found) == 1:
            key = found[0]
        if key is None:
            raise InputError(
                f"'{name}' holds no integer label array"
                if not found
                else f"'{name}' holds several label arrays ({', '.join(found[:5])}); export one"
                + " (ilastik writes it as exported_data)."
            )
        ds = f[key]
        if ds.size > 4 * shape_yx[0] * shape_yx[1] * 8:
            raise InputError(f"'{name}' holds a label array far larger than the image.")
        axes = _axistags(ds.attrs.get("axistags"), ds.ndim)
        arr = ds[()]
    keep = [i for i, a in enumerate(axes) if a in "yx"]
    for i, a in reversed(list(enumerate(axes))):
        if a not in "yx":
            if arr.shape[i] != 1:
                raise InputError(
                    f"'{name}' has {arr.shape[i]} entries along its '{a}' axis; give a 2-D "
                    "label image (one plane, one channel)."
                )
            arr = np.take(arr, 0, axis=i)
    order = sorted(range(len(keep)), key=lambda k: "yx".index(axes[keep[k]]))
    arr = np.transpose(arr, order)
    return _checked_labels(arr, shape_yx, name)


def _axistags(raw: object, ndim: int) -> str:
    """Axis letters from ilastik's ``axistags`` JSON; without it ilastik's default order
    (``yx``, ``yxc``, ``zyxc``, ``tzyxc``)."""
    import json as _json

    default = {2: "yx", 3: "yxc", 4: "zyxc", 5: "tzyxc"}.get(ndim, "?" * (ndim - 2) + "yx")
    if raw is None:
        return default
    try:
        tags = _json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        keys = "".join(str(a["key"])[0].lower() for a in tags["axes"])
    except (ValueError, KeyError, TypeError, IndexError):
        return default
    return keys if len(keys) == ndim and "y" in keys and "x" in keys else default


def _read_rois(path: Path, shape_yx: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Areas (filled, one object each) and lines of the ROIs on the first plane."""
    import zipfile

    from roifile import ImagejRoi

    from microseg.geojson import paint_line, polygon_pixels

    name = path.name
    try:
        rois = ImagejRoi.fromfile(path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, IndexError) as exc:
        raise InputError(f"'{name}' is not an ImageJ ROI file or RoiSet ZIP ({exc}).") from None
    except Exception as exc:  # noqa: BLE001 - roifile raises several kinds on damaged files
        raise InputError(f"'{name}' could not be read as ImageJ ROIs ({exc}).") from None
    rois = rois if isinstance(rois, list) else [rois]
    h, w = (int(v) for v in shape_yx)
    labels = np.zeros((h, w), np.uint32)
    lines = np.zeros((h, w), bool)
    n = 0
    for roi in rois:
        if any(int(getattr(roi, a, 0) or 0) > 1 for a in ("position", "t_position", "z_position")):
            continue  # another plane of a stack
        kind = getattr(roi.roitype, "name", "")
        xy = np.asarray(roi.coordinates(), np.float64)
        if xy.ndim != 2 or len(xy) < 2 or not np.isfinite(xy).all():
            continue
        if kind in _AREA_TYPES and len(xy) >= 3:
            rr, cc = polygon_pixels([xy], (h, w))
            if rr.size:
                n += 1
                labels[rr, cc] = n
        elif kind in _LINE_TYPES:
            paint_line(lines, xy)
    if n == 0 and not lines.any():
        raise InputError(
            f"'{name}' has no area or line ROI on the first plane inside the {w}x{h} image."
        )
    return labels, lines


def training_labels(
    mask: np.ndarray, task: str, n_classes: int, everywhere: bool = True, ring_px: int = 3
) -> np.ndarray:
    """Strokes (uint8, 0 = unlabelled, k = class k) from a dense mask of :func:`read_mask`.

    Parameters
    ----------
    mask : ndarray
        Instance labels (nuclei) or a boundary map (grains).
    task : str
        ``"nuclei"`` (1 background, 2 nucleus, 3 border; border becomes nucleus when the
        classes stop at 2) or ``"grains"`` (1 interior, 2 boundary).
    n_classes : int
        Classes the strokes may use.
    everywhere : bool
        The outlines cover every object of the image, so everything else is labelled
        (background, boundary); ``False``: only the objects and a ring of ``ring_px``
        pixels around them are labelled, the rest stays unlabelled (a partly annotated
        image).
    """
    from scipy import ndimage as ndi

    from microseg.deep.train import targets_from_masks

    m = np.asarray(mask)
    out = targets_from_masks(m, task)
    if task == "nuclei" and n_classes < 3:
        out[out == 3] = 2
    if not everywhere:
        inside = m > 0 if task == "nuclei" else m == 0
        near = ndi.distance_transform_edt(~inside) <= ring_px
        out[~near] = 0
    return out
