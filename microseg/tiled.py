"""Prediction of images larger than memory, one tile at a time, for either kind of model.

The image is cut into square cores of ``tile`` pixels. Each core is read with the
context the model needs around it and predicted on its own; only the core is kept,
so the stitched map has no seams:

* random forest: the features' largest halo (:func:`microseg.features.context_px`);
  context outside the image is left out, as the whole-image filters mirror there
  themselves, so every tile equals the whole-image result exactly;
* U-Net: the network's receptive radius; context outside the image is mirrored as
  the whole-image path pads it (``numpy.pad`` reflect), and cores lie on the
  network's pooling grid.

Every tile is normalised with the whole image's percentiles (the sample of
:meth:`~microseg.regions.RegionImage.percentile_sample`), not its own. Memory
stays that of one tile whatever the image size; results go into any array that
takes slice assignment (a zarr array on disk, or numpy). On a Dask cluster
(:func:`predict_tiled_on_cluster`) the tiles are spread over the workers, each
loading the model once and writing its tiles into the Zarr arrays itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from microseg.errors import InputError
from microseg.regions import RegionImage
from microseg.segmenter import Segmenter

TILE = 1024
"""Default side of a tile's kept core, in pixels."""

TileProgress = Callable[[int, int], None]


def percent_progress(report: Callable[[str], None], message: str) -> TileProgress:
    """A :data:`TileProgress` that reports ``message.format(done=, total=, pct=)`` at every
    tenth of the work and at the end."""
    last = [-1]

    def progress(done: int, total: int) -> None:
        pct = 100 * done // max(1, total)
        if pct // 10 != last[0] // 10 or done == total:
            last[0] = pct
            report(message.format(done=done, total=total, pct=pct))

    return progress


class Cancelled(Exception):
    """Raised when a ``stop`` event ends tiled prediction before the next tile."""


@dataclass(frozen=True)
class TilePlan:
    """How an image is cut for a model.

    Attributes
    ----------
    tile : int
        Side of a core (a multiple of ``multiple``).
    context : int
        Pixels read on each side of a core.
    mirror : str or None
        ``numpy.pad`` mode for context beyond the image edge (U-Net), or ``None``
        when the context is clipped at the edge (the features mirror there).
    multiple : int
        Grid the cores lie on (the U-Net's pooling factor; 1 for features).
    """

    tile: int
    context: int
    mirror: str | None
    multiple: int

    def origins(self, shape_yx: tuple[int, int]) -> list[tuple[int, int]]:
        """Top-left corners of the cores, row by row."""
        h, w = shape_yx
        return [(y, x) for y in range(0, h, self.tile) for x in range(0, w, self.tile)]


def _is_unet(model: Segmenter) -> bool:
    return hasattr(model, "inference_net") and hasattr(model, "prepare")


def tile_plan(model: Segmenter, shape_yx: tuple[int, int], tile: int = TILE) -> TilePlan:
    """The tiling of a ``shape_yx`` image for ``model`` with cores of about ``tile`` px."""
    if not isinstance(tile, int | np.integer) or tile < 64:
        raise InputError(f"The tile side must be a whole number of at least 64 pixels, got {tile}.")
    if _is_unet(model):
        cfg = model.inference_net().config
        m = int(cfg.multiple)
        context = -(-int(cfg.receptive_radius) // m) * m
        tile = -(-int(tile) // m) * m
        h, w = shape_yx
        mode = "reflect" if min(h, w) > max(context, m) + 1 else "symmetric"
        return TilePlan(tile, context, mode, m)
    from microseg.features import context_px

    fs = getattr(model, "feature_set", None)
    return TilePlan(int(tile), context_px(fs), None, 1)


def _mirror(index: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Indices beyond ``0..n-1`` folded back as ``numpy.pad`` does for ``mode``."""
    if mode == "reflect" and n > 1:
        period = 2 * (n - 1)
        i = np.abs(index) % period
        return np.where(i >= n, period - i, i)
    period = 2 * n
    i = index % period
    return np.where(i >= n, period - 1 - i, i)


def read_block(image: RegionImage, plan: TilePlan, y0: int, x0: int) -> tuple[np.ndarray, tuple]:
    """The core at ``(y0, x0)`` with its context, and the core's place in the block.

    Returns
    -------
    block : ndarray
        ``(C, bh, bw)`` raw values.
    core : tuple of slice
        ``(ys, xs)`` of the core's in-image pixels within ``block``.
    """
    h, w = image.shape_yx
    r, t = plan.context, plan.tile
    y1, x1 = min(h, y0 + t), min(w, x0 + t)
    if plan.mirror is None:
        ya, xa = max(0, y0 - r), max(0, x0 - r)
        yb, xb = min(h, y1 + r), min(w, x1 + r)
        block = image.read(slice(ya, yb), slice(xa, xb))
        return block, (slice(y0 - ya, y1 - ya), slice(x0 - xa, x1 - xa))
    m = plan.multiple
    ch = -(-(y1 - y0) // m) * m  # the core extended to the pooling grid
    cw = -(-(x1 - x0) // m) * m
    rows = _mirror(np.arange(y0 - r, y0 + ch + r), h, plan.mirror)
    cols = _mirror(np.arange(x0 - r, x0 + cw + r), w, plan.mirror)
    ya, yb, xa, xb = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    region = image.read(slice(ya, yb), slice(xa, xb))
    block = region[:, rows - ya][:, :, cols - xa]
    return block, (slice(r, r + y1 - y0), slice(r, r + x1 - x0))


def predict_block(
    model: Segmenter, block: np.ndarray, plan: TilePlan, reference: np.ndarray
) -> np.ndarray:
    """Class probabilities ``(K, bh, bw)`` of one block normalised with ``reference``."""
    if _is_unet(model):
        from microseg.deep.tiling import predict_proba_tiled

        x = model.prepare(block, reference)
        side = max(x.shape[-2:])
        net = model.inference_net()
        return predict_proba_tiled(net, x, tile=side, overlap=0, margin=0, device=model.device)
    return np.asarray(model.predict_proba(block, reference=reference), np.float32)


def predict_tiled(
    model: Segmenter,
    image: RegionImage,
    classes_out: Any,
    probs_out: Any = None,
    *,
    tile: int = TILE,
    reference: np.ndarray | None = None,
    progress: TileProgress | None = None,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """Predict ``image`` tile by tile into ``classes_out`` (and ``probs_out``).

    Parameters
    ----------
    model : Segmenter
        A random forest or U-Net.
    image : RegionImage
        The image, read by region.
    classes_out : array
        ``(Y, X)`` uint8 target (zarr or numpy): classes 1..K.
    probs_out : array, optional
        ``(K, Y, X)`` float32 target for the class probabilities.
    tile : int
        Core side in pixels (rounded up to the U-Net's pooling grid).
    reference : ndarray, optional
        The whole image's percentile sample; read from ``image`` when omitted.
    progress : callable, optional
        Called with ``(tiles done, tiles in all)`` after each tile.
    stop : threading.Event, optional
        Raises :class:`Cancelled` before the next tile once set.

    Returns
    -------
    ndarray
        Pixels per class (int64, length K).
    """
    k = len(model.classes)
    plan = tile_plan(model, image.shape_yx, tile)
    if reference is None:
        reference = image.percentile_sample()
    origins = plan.origins(image.shape_yx)
    counts = np.zeros(k, np.int64)
    h, w = image.shape_yx
    for i, (y0, x0) in enumerate(origins):
        if stop is not None and stop.is_set():
            raise Cancelled("Prediction was cancelled.")
        block, (ys, xs) = read_block(image, plan, y0, x0)
        proba = predict_block(model, block, plan, reference)
        if proba.shape[0] != k:
            raise InputError(f"The model returned {proba.shape[0]} classes where it names {k}.")
        proba = proba[:, ys, xs]
        cls = (np.argmax(proba, axis=0) + 1).astype(np.uint8)
        y1, x1 = min(h, y0 + plan.tile), min(w, x0 + plan.tile)
        classes_out[y0:y1, x0:x1] = cls
        if probs_out is not None:
            probs_out[:, y0:y1, x0:x1] = proba
        counts += np.bincount(cls.ravel(), minlength=k + 1)[1 : k + 1]
        if progress is not None:
            progress(i + 1, len(origins))
    return counts


# ----------------------------------------------------------------------------- on a cluster


@lru_cache(maxsize=2)
def _worker_model(spec: str) -> Segmenter:
    """The model, loaded once per process (each Dask worker loads it on its first tile)."""
    from microseg.segmenter import load_segmenter

    model = load_segmenter(spec)
    threads = _worker_threads()
    if threads and hasattr(model, "workers"):
        model.workers = threads
    return model


@lru_cache(maxsize=4)
def _worker_image(path: str) -> RegionImage:
    from microseg.regions import open_regions

    return open_regions(path)


def _worker_threads() -> int | None:
    """Threads of the Dask worker this runs on (None outside a worker)."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def predict_tile_task(
    spec: str,
    image_path: str,
    classes_path: str,
    probs_path: str | None,
    y0: int,
    x0: int,
    tile: int,
    reference: np.ndarray,
) -> np.ndarray:
    """One tile on a Dask worker: predict it and write it into the Zarr arrays at
    ``classes_path`` (and ``probs_path``); returns its pixels per class."""
    import zarr

    threads = _worker_threads()
    if threads:
        import torch

        torch.set_num_threads(threads)
    model = _worker_model(spec)
    image = _worker_image(image_path)
    plan = tile_plan(model, image.shape_yx, tile)
    block, (ys, xs) = read_block(image, plan, y0, x0)
    proba = predict_block(model, block, plan, reference)[:, ys, xs]
    cls = (np.argmax(proba, axis=0) + 1).astype(np.uint8)
    h, w = image.shape_yx
    y1, x1 = min(h, y0 + plan.tile), min(w, x0 + plan.tile)
    zarr.open_array(classes_path, mode="r+")[y0:y1, x0:x1] = cls
    if probs_path is not None:
        zarr.open_array(probs_path, mode="r+")[:, y0:y1, x0:x1] = proba
    k = proba.shape[0]
    return np.bincount(cls.ravel(), minlength=k + 1)[1 : k + 1]


def predict_tiled_on_cluster(
    address: str,
    spec: str,
    image_path: str | Path,
    classes_path: str | Path,
    probs_path: str | Path | None = None,
    *,
    model: Segmenter | None = None,
    tile: int = TILE,
    chunk: int = 512,
    reference: np.ndarray | None = None,
    progress: TileProgress | None = None,
) -> np.ndarray:
    """:func:`predict_tiled` with the tiles spread over the workers of a Dask cluster.

    Each worker loads the model (``spec``: a file or ``builtin:NAME``) once and writes
    its tiles straight into the Zarr arrays, so the model file, the image and the output
    folder must be at the same paths on every worker (one machine, or a shared
    filesystem). Tiles are rounded up to whole ``chunk`` s, so no two workers write the
    same chunk. ``model``: the model ``spec`` names, when the caller has it loaded
    already (it plans the tiles here).

    Raises
    ------
    InputError
        When no Dask scheduler answers at ``address``.
    """
    from distributed import Client, as_completed

    from microseg.regions import open_regions

    if "://" not in str(address):
        raise InputError(f"--scheduler must look like tcp://HOST:PORT, not {address}.")
    tile = -(-int(tile) // chunk) * chunk
    image = open_regions(image_path)
    model = model if model is not None else _worker_model(spec)
    plan = tile_plan(model, image.shape_yx, tile)
    if plan.tile % chunk:
        raise InputError(f"Tiles of {plan.tile} px do not align with {chunk}-px chunks.")
    if reference is None:
        reference = image.percentile_sample()
    try:
        client = Client(str(address), timeout=10)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"No Dask scheduler answers at {address}.") from exc
    try:
        ref = client.scatter(reference, broadcast=True)
        origins = plan.origins(image.shape_yx)
        futures = [
            client.submit(
                predict_tile_task,
                str(spec),
                str(Path(image_path).resolve()),
                str(Path(classes_path).resolve()),
                None if probs_path is None else str(Path(probs_path).resolve()),
                y0,
                x0,
                plan.tile,
                ref,
                pure=False,
            )
            for y0, x0 in origins
        ]
        counts = np.zeros(len(model.classes), np.int64)
        for done, fut in enumerate(as_completed(futures), start=1):
            counts += fut.result()
            if progress is not None:
                progress(done, len(origins))
        return counts
    finally:
        client.close()
