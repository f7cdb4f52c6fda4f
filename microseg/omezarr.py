"""OME-Zarr (NGFF 0.4) output, written chunk by chunk for images of any size.

Layout of ``<stem>.ome.zarr`` (Zarr format 2, ``/``-separated chunk keys, Blosc-zstd):

* the root is the input image, ``(c, y, x)``, as a multiscale pyramid ``0, 1, ...``
  (each level half the size of the one before, 2x2 means) down to one chunk;
* ``labels/classes`` is the class map (1..K, uint8) as an NGFF label image with the
  class names and colours (``labels/nuclei``: uint32 instance ids), levels by
  nearest-neighbour subsampling; napari (napari-ome-zarr), QuPath and Fiji (MoBIE)
  show it over the image;
* with probabilities, ``probabilities`` is a second multiscale image, ``(c, y, x)``
  float32, one channel per class (a group that image viewers can open on its own).

The physical pixel size, when known, is each level's ``scale`` in micrometres. The
root's ``multiscales[0].metadata`` holds the provenance record.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from microseg.errors import InputError
from microseg.regions import RegionImage

CHUNK = 512
"""Chunk side in y and x."""

NGFF_VERSION = "0.4"


def _compressor() -> Any:
    import numcodecs

    return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)


def level_shapes(shape_yx: tuple[int, int], chunk: int = CHUNK) -> list[tuple[int, int]]:
    """Sizes of the pyramid levels: halving (rounded up) until one chunk holds a level."""
    shapes = [tuple(int(n) for n in shape_yx)]
    while max(shapes[-1]) > chunk:
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes  # type: ignore[return-value]


class OmeZarrWriter:
    """An OME-Zarr image with a class-map label image and optional probabilities.

    Create it, fill the full-resolution arrays (:attr:`image`, :attr:`classes`,
    :attr:`probabilities`; slice assignment, chunk-aligned for speed), then call
    :meth:`finish` to build the pyramids and write the metadata.

    Parameters
    ----------
    path : str or Path
        The ``.ome.zarr`` folder; replaced when it exists.
    shape_yx : tuple of int
        Image rows and columns.
    n_channels : int
        Channels of the image.
    dtype : numpy.dtype
        Value type of the image.
    n_classes : int or None
        With a number, a ``(K, Y, X)`` float32 probabilities image is made too.
    label_name, label_dtype
        Name and value type of the label image: ``"classes"`` (uint8 class map) or,
        e.g., ``"nuclei"`` (uint32 instance ids).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape_yx: tuple[int, int],
        n_channels: int,
        dtype: np.dtype,
        n_classes: int | None = None,
        label_name: str = "classes",
        label_dtype: Any = np.uint8,
    ) -> None:
        import zarr

        self.path = Path(path)
        if self.path.exists():
            if not (self.path.is_dir() and self.path.name.endswith(".zarr")):
                raise InputError(f"{self.path} exists and is not a Zarr folder; not replaced.")
            shutil.rmtree(self.path)
        self.shape_yx = (int(shape_yx[0]), int(shape_yx[1]))
        self.levels = level_shapes(self.shape_yx)
        self.root = zarr.open_group(self.path, mode="w", zarr_format=2)
        labels = self.root.create_group("labels")
        self.label_name = str(label_name)
        self.label_group = labels.create_group(self.label_name)
        self.prob_group = self.root.create_group("probabilities") if n_classes else None
        h, w = self.shape_yx
        self.image = self._array(self.root, "0", (n_channels, h, w), dtype)
        self.classes = self._array(self.label_group, "0", (h, w), label_dtype)
        self.probabilities = (
            self._array(self.prob_group, "0", (int(n_classes), h, w), np.float32)
            if self.prob_group is not None
            else None
        )

    @property
    def classes_path(self) -> Path:
        """Folder of the full-resolution class-map array."""
        return self.path / "labels" / self.label_name / "0"

    @property
    def probabilities_path(self) -> Path | None:
        """Folder of the full-resolution probabilities array (None without one)."""
        return None if self.prob_group is None else self.path / "probabilities" / "0"

    @staticmethod
    def _array(group: Any, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        chunks = (1,) * (len(shape) - 2) + (CHUNK, CHUNK)
        return group.create_array(
            name,
            shape=shape,
            chunks=chunks,
            dtype=np.dtype(dtype),
            compressors=_compressor(),
            chunk_key_encoding={"name": "v2", "separator": "/"},
            fill_value=0,
        )

    def copy_image(self, image: RegionImage, block: int = 2 * CHUNK) -> None:
        """Copy ``image`` into the full-resolution image array, block by block."""
        h, w = self.shape_yx
        for y0 in range(0, h, block):
            for x0 in range(0, w, block):
                ys, xs = slice(y0, min(h, y0 + block)), slice(x0, min(w, x0 + block))
                self.image[:, ys, xs] = image.read(ys, xs)

    def finish(
        self,
        class_names: Sequence[str],
        colors: Sequence[str],
        pixel_size_um: float | None,
        name: str,
        provenance: dict | None = None,
    ) -> Path:
        """Build every pyramid and write the NGFF metadata; returns the folder
        (``class_names``, ``colors``: of label values 1..K; empty for instance ids)."""
        self._pyramid(self.root, self.image, mean=True)
        self._pyramid(self.label_group, self.classes, mean=False)
        if self.prob_group is not None:
            self._pyramid(self.prob_group, self.probabilities, mean=True)
        from microseg.io import jsonable

        meta = {"microseg": jsonable(provenance or {})}
        self.root.attrs["multiscales"] = [self._multiscales(name, pixel_size_um, True, meta)]
        self.root["labels"].attrs["labels"] = [self.label_name]
        self.label_group.attrs["multiscales"] = [
            self._multiscales(self.label_name, pixel_size_um, False, None)
        ]
        image_label: dict[str, Any] = {"version": NGFF_VERSION, "source": {"image": "../../"}}
        if colors:
            image_label["colors"] = [
                {"label-value": k + 1, "rgba": _rgba(c)} for k, c in enumerate(colors)
            ]
        if class_names:
            image_label["properties"] = [
                {"label-value": k + 1, "class": str(n)} for k, n in enumerate(class_names)
            ]
        self.label_group.attrs["image-label"] = image_label
        if self.prob_group is not None:
            self.prob_group.attrs["multiscales"] = [
                self._multiscales("probabilities", pixel_size_um, True, None)
            ]
            window = {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0}
            self.prob_group.attrs["omero"] = {
                "channels": [
                    {"label": f"P({n})", "color": str(c).lstrip("#").upper(), "window": window}
                    for n, c in zip(class_names, colors, strict=True)
                ]
            }
        return self.path

    def _multiscales(
        self, name: str, pixel_size_um: float | None, channels: bool, metadata: dict | None
    ) -> dict:
        unit = {"unit": "micrometer"} if pixel_size_um else {}
        axes = [{"name": "c", "type": "channel"}] if channels else []
        axes += [{"name": a, "type": "space", **unit} for a in ("y", "x")]
        base = float(pixel_size_um) if pixel_size_um else 1.0
        datasets = []
        for level in range(len(self.levels)):
            s = base * 2**level
            scale = ([1.0] if channels else []) + [s, s]
            datasets.append(
                {
                    "path": str(level),
                    "coordinateTransformations": [{"type": "scale", "scale": scale}],
                }
            )
        out: dict[str, Any] = {
            "version": NGFF_VERSION,
            "name": name,
            "axes": axes,
            "datasets": datasets,
            "type": "local mean" if channels else "nearest",
        }
        if metadata:
            out["metadata"] = metadata
        return out

    def _pyramid(self, group: Any, level0: Any, mean: bool, block: int = 4 * CHUNK) -> None:
        prev = level0
        for level, (h, w) in enumerate(self.levels[1:], start=1):
            lead = tuple(prev.shape[:-2])
            arr = self._array(group, str(level), lead + (h, w), prev.dtype)
            ph, pw = prev.shape[-2:]
            for y0 in range(0, ph, block):
                for x0 in range(0, pw, block):
                    src = np.asarray(prev[..., y0 : min(ph, y0 + block), x0 : min(pw, x0 + block)])
                    out = _halve(src) if mean else src[..., ::2, ::2]
                    oy, ox = y0 // 2, x0 // 2
                    arr[..., oy : oy + out.shape[-2], ox : ox + out.shape[-1]] = out.astype(
                        prev.dtype, copy=False
                    )
            prev = arr


@contextmanager
def result_store(
    out_dir: Path, stem: str, keep: bool, image: RegionImage, **writer_kw: Any
) -> Iterator[OmeZarrWriter]:
    """The :class:`OmeZarrWriter` a tiled run writes into: ``DIR/<stem>.ome.zarr`` when
    ``keep``, else a hidden scratch folder that is removed on leaving, whatever happens."""
    target = Path(out_dir) / (f"{stem}.ome.zarr" if keep else f".{stem}.partial.ome.zarr")
    writer = OmeZarrWriter(target, image.shape_yx, image.n_channels, image.dtype, **writer_kw)
    try:
        yield writer
    finally:
        if not keep:
            shutil.rmtree(target, ignore_errors=True)


def _halve(block: np.ndarray) -> np.ndarray:
    """2x2 means (an odd last row or column averaged with itself), in the block's dtype."""
    b = block.astype(np.float32)
    if b.shape[-2] % 2:
        b = np.concatenate([b, b[..., -1:, :]], axis=-2)
    if b.shape[-1] % 2:
        b = np.concatenate([b, b[..., :, -1:]], axis=-1)
    out = 0.25 * (b[..., ::2, ::2] + b[..., 1::2, ::2] + b[..., ::2, 1::2] + b[..., 1::2, 1::2])
    if block.dtype.kind in "ui":
        info = np.iinfo(block.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(block.dtype)


def _rgba(color: str) -> list[int]:
    c = str(color).lstrip("#")
    try:
        return [int(c[i : i + 2], 16) for i in (0, 2, 4)] + [255]
    except (ValueError, IndexError):
        return [255, 255, 255, 255]
