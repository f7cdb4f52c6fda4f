"""``UNetSegmenter``: a trained U-Net behind the :class:`~microseg.segmenter.Segmenter` protocol."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from microseg.deep.tiling import (
    ProgressFn,
    Stopped,
    predict_proba_augmented,
    predict_proba_tiled,
)
from microseg.deep.unet import UNet, UNetConfig, fused_for_inference, resolve_device
from microseg.errors import InputError, ModelFileError
from microseg.preprocess import as_channels, normalize_percentile

NORMALISATION = {"method": "percentile", "low": 1.0, "high": 99.8, "per": "image"}
# rescaling to the training scale: at most 16x up or 32x down, and at most 150 megapixels
MAX_ZOOM, MIN_ZOOM = 16.0, 1 / 32
MAX_RESCALED_PX = 150e6


class UNetSegmenter:
    """A U-Net pixel classifier: class probabilities for images of any size.

    Parameters
    ----------
    net : UNet
        The network (its weights are used as they are).
    classes : list of str
        Class names; output channel k-1 is class k.
    task : str
        ``"nuclei"``, ``"grains"`` or ``"semantic"``.
    metadata : dict or None
        Extra metadata (training summary, pixel size, object diameter, data).
    device : str, torch.device or None
        ``None``: CUDA when available, else the CPU.
    """

    kind = "unet"

    def __init__(
        self,
        net: UNet,
        classes: list[str],
        task: str = "semantic",
        metadata: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if len(classes) != net.config.n_classes:
            raise InputError(
                f"The network has {net.config.n_classes} outputs but {len(classes)} class names."
            )
        self.net = net
        self.classes = list(classes)
        self.task = task
        self.device = resolve_device(device)
        meta = dict(metadata or {})
        meta.update(
            kind="unet",
            task=task,
            classes=self.classes,
            architecture=net.config.to_dict(),
            normalisation=meta.get("normalisation", NORMALISATION),
        )
        meta.setdefault("pixel_size_um", None)
        meta.setdefault("object_diameter_px", None)
        self.metadata = meta
        self._infer: UNet | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ creation
    @classmethod
    def new(
        cls,
        task: str,
        classes: list[str],
        in_channels: int = 1,
        device: str | torch.device | None = None,
        seed: int = 0,
        **arch: Any,
    ) -> UNetSegmenter:
        """An untrained model for ``task`` with the given class names."""
        torch.manual_seed(seed)
        cfg = UNetConfig(in_channels=in_channels, n_classes=len(classes), **arch)
        return cls(UNet(cfg), classes, task, device=device)

    @property
    def config(self) -> UNetConfig:
        """The network's architecture."""
        return self.net.config

    def invalidate(self) -> None:
        """Forget the cached inference network (call after changing ``net``'s weights)."""
        self._infer = None

    def inference_net(self) -> UNet:
        """Eval-mode copy with BatchNorm folded in, on this model's device (cached)."""
        with self._lock:
            if self._infer is None:
                net = fused_for_inference(self.net.cpu()).to(self.device)
                if self.device.type == "cpu":
                    net = net.to(memory_format=torch.channels_last)
                self._infer = net
            return self._infer

    # ------------------------------------------------------------------ prediction
    def prepare(self, image: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """Normalise an image and match the network's input channels: float32 ``(C, Y, X)``;
        ``reference``: the values the percentiles are taken from (see
        :func:`~microseg.preprocess.normalize_percentile`)."""
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 3, 4):
            arr = np.moveaxis(arr[..., :3], -1, 0)
        chans = as_channels(arr)
        norm = self.metadata.get("normalisation", NORMALISATION)
        low, high = float(norm.get("low", 1.0)), float(norm.get("high", 99.8))
        x = normalize_percentile(chans, low, high, reference=reference)
        want = self.config.in_channels
        if x.shape[0] == want:
            return x
        if want == 1:
            return x.mean(axis=0, keepdims=True)
        if x.shape[0] == 1:
            return np.repeat(x, want, axis=0)
        raise InputError(
            f"The model expects {want} channel(s) but the image has {x.shape[0]}; "
            "choose one channel or convert the image."
        )

    def rescale_factor(
        self, pixel_size_um: float | None = None, object_diameter_px: float | None = None
    ) -> float:
        """Zoom applied to an input so that its objects match the training scale."""
        f = 1.0
        if object_diameter_px and self.metadata.get("object_diameter_px"):
            f = float(self.metadata["object_diameter_px"]) / float(object_diameter_px)
        elif pixel_size_um and self.metadata.get("pixel_size_um"):
            f = float(pixel_size_um) / float(self.metadata["pixel_size_um"])
        if not np.isfinite(f) or f <= 0:
            raise InputError("Pixel size and object diameter must be positive numbers.")
        if not MIN_ZOOM <= f <= MAX_ZOOM:
            if object_diameter_px and self.metadata.get("object_diameter_px"):
                ref = float(self.metadata["object_diameter_px"])
                raise InputError(
                    f"An object diameter of {float(object_diameter_px):g} px would rescale the "
                    f"image {f:.3g}x; this model works for diameters between "
                    f"{ref / MAX_ZOOM:.3g} and {ref / MIN_ZOOM:.3g} px."
                )
            raise InputError(
                f"A pixel size of {float(pixel_size_um):g} µm would rescale the image {f:.3g}x "
                f"to the model's {float(self.metadata['pixel_size_um']):g} µm; check the "
                "pixel size."
            )
        return 1.0 if abs(f - 1.0) < 0.05 else f

    def predict_proba(
        self,
        image: np.ndarray,
        pixel_size_um: float | None = None,
        object_diameter_px: float | str | None = None,
        tile: int = 1024,
        progress: ProgressFn | None = None,
        stop: threading.Event | None = None,
        augment: bool = False,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        """Class probabilities ``(K, Y, X)`` float32.

        Parameters
        ----------
        image : ndarray
            ``(Y, X)``, ``(C, Y, X)`` or ``(Y, X, 3)`` RGB, any dtype.
        pixel_size_um, object_diameter_px : float or None
            When given and the model records its training pixel size / typical object
            diameter, the image is rescaled to the training scale and the result back.
            ``object_diameter_px="auto"`` (nuclei models): measure the objects in a
            first prediction and predict again at the training scale when they are
            more than 1.5x smaller or larger than in training.
        tile : int
            Tile side for tiled inference (memory stays bounded for any image size).
        progress, stop
            Fraction-done callback and a stop event (see :mod:`microseg.deep.tiling`).
        augment : bool
            Test-time augmentation: average over the eight flips and quarter turns
            (8x slower, usually slightly more accurate).
        reference : ndarray, optional
            ``(C, N)`` values the normalisation percentiles are taken from (the whole
            image's sample when ``image`` is one tile of it).
        """
        if isinstance(object_diameter_px, str):
            if object_diameter_px != "auto":
                raise InputError("The object diameter must be a number of pixels or 'auto'.")
            p = self.predict_proba(
                image, pixel_size_um, None, tile, progress, stop, augment, reference
            )
            d = self.clamp_diameter(self.estimate_object_diameter(p))
            if self.auto_zoom(d) == 1.0:
                return p
            return self.predict_proba(image, None, d, tile, progress, stop, augment, reference)
        x = self.prepare(image, reference)
        h, w = x.shape[-2:]
        f = self.rescale_factor(pixel_size_um, object_diameter_px)
        if f > 1.0 and h * w * f * f > max(h * w, MAX_RESCALED_PX):
            raise InputError(
                f"Rescaled {f:.3g}x to the model's training scale, the {w}x{h} image would "
                f"have {h * w * f * f / 1e6:.0f} megapixels (at most {MAX_RESCALED_PX / 1e6:.0f}); "
                "crop it or give a larger object diameter."
            )
        if f != 1.0:
            x = _resize(x, (max(8, round(h * f)), max(8, round(w * f))))
        net = self.inference_net()
        run = predict_proba_augmented if augment else predict_proba_tiled
        p = run(net, x, tile=tile, device=self.device, progress=progress, stop=stop)
        if f != 1.0:
            p = _resize(p, (h, w))
            p /= np.maximum(p.sum(axis=0, keepdims=True), 1e-6)
        return p

    def clamp_diameter(self, diameter_px: float | None) -> float | None:
        """A measured object diameter outside the range the model can rescale to: the
        nearest end of that range (``None`` stays ``None``)."""
        if diameter_px is None:
            return None
        ref = float(self.metadata.get("object_diameter_px") or diameter_px)
        return min(max(diameter_px, ref / MAX_ZOOM), ref / MIN_ZOOM)

    def auto_zoom(self, diameter_px: float | None) -> float:
        """The zoom ``object_diameter_px="auto"`` applies to objects ``diameter_px`` across:
        1 within 1.5x of the training diameter (or when either is unknown)."""
        ref = self.metadata.get("object_diameter_px")
        if not diameter_px or not ref or 0.67 < float(ref) / diameter_px < 1.5:
            return 1.0
        return float(ref) / float(diameter_px)

    def estimate_object_diameter(self, proba: np.ndarray) -> float | None:
        """Typical object diameter (px) in a nuclei prediction; ``None`` for other tasks.

        Twice the median peak distance to the background of the foreground components
        (touching objects do not inflate it), times 1.14, the ratio of the median
        equivalent diameter to that measure on the training masks.
        """
        if self.task != "nuclei" or proba.shape[0] < 2:
            return None
        from microseg.instances import typical_radius

        fg = proba[1:].sum(axis=0) >= 0.5
        r = typical_radius(fg)
        return 2.0 * r * 1.14 if r >= 2.0 else None

    def predict_classes(self, image: np.ndarray, **kw: Any) -> np.ndarray:
        """Most probable class per pixel, values 1..K (uint8)."""
        return (np.argmax(self.predict_proba(image, **kw), axis=0) + 1).astype(np.uint8)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write weights (safetensors) and metadata (JSON header) to one file."""
        from microseg.modelfile import save_model

        tensors = {
            k: v.detach().cpu().numpy()
            for k, v in self.net.state_dict().items()
            if not k.endswith("num_batches_tracked")
        }
        return save_model(path, tensors, self.metadata)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> UNetSegmenter:
        """Load a model file written by :meth:`save`; no code from the file is run.

        Raises
        ------
        ModelFileError
            When the file is not a U-Net model or its tensors do not fit its architecture.
        """
        from microseg.modelfile import load_model

        path = Path(path)
        tensors, meta = load_model(path)
        if meta.get("kind") != "unet":
            raise ModelFileError(f"{path.name} is not a U-Net model (kind '{meta.get('kind')}').")
        try:
            if not isinstance(meta.get("architecture"), dict):
                raise TypeError("'architecture' is not a mapping")
            cfg = UNetConfig.from_dict(dict(meta["architecture"]))
            classes = [str(c) for c in meta["classes"]]
            with torch.device("meta"):  # shapes only: nothing is allocated for a hostile size
                probe = UNet(cfg)
        except (KeyError, TypeError, ValueError, InputError, RuntimeError) as exc:
            raise ModelFileError(f"{path.name} has an invalid U-Net description ({exc}).") from exc
        skip = "num_batches_tracked"  # BatchNorm bookkeeping, not needed for prediction
        tensors = {k: v for k, v in tensors.items() if not k.endswith(skip)}
        expected = {k: v for k, v in probe.state_dict().items() if not k.endswith(skip)}
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        if missing or extra:
            raise ModelFileError(
                f"{path.name} does not match its architecture "
                f"(missing {missing[:3]}, unexpected {extra[:3]})."
            )
        for k, v in expected.items():
            if tuple(tensors[k].shape) != tuple(v.shape):
                raise ModelFileError(
                    f"{path.name} is inconsistent: tensor '{k}' has shape "
                    f"{tuple(tensors[k].shape)}, its architecture needs {tuple(v.shape)}."
                )
        bad = [k for k in expected if not np.isfinite(np.asarray(tensors[k], np.float64)).all()]
        if bad:
            raise ModelFileError(
                f"{path.name} holds NaN or infinite weights (in '{bad[0]}'); it cannot predict."
            )
        net = UNet(cfg)  # the tensors fit it, so its size is that of the file's own tensors
        state = {k: torch.from_numpy(np.array(tensors[k])).to(v.dtype) for k, v in expected.items()}
        net.load_state_dict(state, strict=False)
        net.eval()
        try:
            return cls(net, classes, str(meta.get("task", "semantic")), meta, device=device)
        except InputError as exc:
            raise ModelFileError(f"{path.name}: {exc}") from exc


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(C, Y, X)`` float32, channel by channel (antialiased when shrinking)."""
    out = np.empty((a.shape[0], *size), np.float32)
    for i, ch in enumerate(a):
        t = torch.from_numpy(np.ascontiguousarray(ch, np.float32))[None, None]
        shrink = size[0] < ch.shape[0] or size[1] < ch.shape[1]
        r = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        out[i] = r[0, 0].numpy()
    return out


def predict_stack(
    model: UNetSegmenter,
    image: Any,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    z: int | str = 0,
    **kw: Any,
) -> np.ndarray:
    """Class probabilities for every frame of a :class:`~microseg.image.MicroImage`.

    Returns ``(T, K, Y, X)`` float32; when ``stop`` is set, only the frames finished
    so far are returned. Each frame is normalised on its own.
    """
    n = image.n_frames
    h, w = image.shape_yx
    out = np.zeros((n, len(model.classes), h, w), np.float32)
    for t in range(n):
        if stop is not None and stop.is_set():
            return out[:t]

        def sub(frac: float, t: int = t) -> None:
            if progress is not None:
                progress((t + frac) / n)

        try:
            out[t] = model.predict_proba(image.plane(t, z), progress=sub, stop=stop, **kw)
        except Stopped:
            return out[:t]
    return out
