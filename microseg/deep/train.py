"""Training a U-Net from strokes (sparse) or dense masks, on the CPU or a GPU.

The loss ignores unlabelled pixels (stroke value 0), so a few strokes are
enough. On sparse strokes a teacher adds pseudo-labels on the pixels it is sure
of: by default a random forest fitted on the same strokes (classical -> deep
distillation), which spreads the strokes' information over the whole image.
Training is bounded by a time budget, keeps the best model so far (by a
validation score when one is available, else by the smoothed training loss) and
can be stopped at any moment from another thread. When fine-tuning, the starting
model is a candidate too: it is kept unless the held-out strokes say a trained
one is better.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from microseg.deep.augment import AugmentConfig, augment_batch
from microseg.deep.losses import balanced_class_weights, cl_dice_loss, masked_cross_entropy
from microseg.deep.segmenter import UNetSegmenter
from microseg.deep.unet import UNet, UNetConfig, resolve_device
from microseg.errors import InputError
from microseg.preprocess import as_channels, normalize_percentile
from microseg.tasks import task_spec

MAX_TRAIN_SECONDS = 7 * 24 * 3600.0  # a week: resumable runs go on from checkpoints


def check_seconds(seconds: object, what: str = "The training time") -> float:
    """``seconds`` as a float, or :class:`InputError`: a finite number of seconds above
    0 and at most :data:`MAX_TRAIN_SECONDS` (NaN or infinity would train until killed)."""
    try:
        value = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and 0 < value <= MAX_TRAIN_SECONDS):
        raise InputError(
            f"{what} must be a number of seconds above 0 and at most a week "
            f"({MAX_TRAIN_SECONDS:.0f}), not {seconds}."
        )
    return value


@dataclass
class TrainConfig:
    """Settings of one training run.

    Parameters
    ----------
    seconds : float
        Time budget (wall clock), at most a week unless ``max_steps`` bounds the run.
    max_steps : int or None
        Optional cap on optimiser steps.
    lr : float or None
        Learning rate; ``None``: 2e-3 from scratch, 3e-4 when fine-tuning (1e-4 cannot
        move a model far enough to learn a new kind of image in minutes; 1e-3 spoils a
        good model on the few strokes of a small image).
    batch, crop : int
        Crops per step and their side in pixels.
    seed : int
        Seed for weights, crops and augmentation.
    augment : bool
        Flips, rotations, intensity, noise and blur (on by default).
    zoom : tuple of float
        Range of random object-size changes of the crops (1, 1 = off).
    freeze_encoder : bool
        Train only the decoder (fine-tuning).
    freeze_norm : bool or None
        Keep BatchNorm statistics fixed; ``None``: no (the statistics of a new kind of
        image are part of what fine-tuning must learn).
    replay_fraction : float
        Share of each batch drawn from the replay data (when given).
    teacher : str
        Where the pseudo-labels on unlabelled pixels come from: ``"classical"`` (a
        random forest fitted on the training strokes, see
        :class:`~microseg.classical.RandomForestSegmenter`; when fine-tuning, only if
        it beats the starting model on the held-out strokes by more than
        :func:`replace_margin`, else none), ``"initial"`` (the model being fine-tuned:
        learning without forgetting) or ``"none"``. Dense masks get none.
    distill : float or None
        Weight of the loss on the teacher's pseudo-labels; ``None``: 0.5 on sparse
        strokes. 0 turns the teacher off.
    distill_confidence : float
        Only pixels where the teacher's top probability is at least this get a
        pseudo-label.
    anchor_weight : float
        Fine-tuning on held-out strokes: weight in the validation score of the
        agreement with the initial model's map (0, the default: the held-out strokes
        alone decide, so a wrong initial model is not locked in).
    anchor_confidence : float
        With ``anchor_weight``: the initial model's map is compared where its top
        probability is at least this (0: the whole map).
    class_weights : str or list of float
        ``"balanced"`` (inverse square-root frequency), ``"model"`` (the weights the
        initial model was trained with, else balanced), ``"prior"`` (the model's
        weights corrected for how much more often the strokes hold each class than the
        image does, see :func:`stroke_prior_weights`), ``"auto"`` (``"prior"`` when
        fine-tuning on sparse strokes, else balanced), ``"none"`` or explicit weights.
    topology_weight : float
        Weight of a clDice loss (:func:`~microseg.deep.losses.cl_dice_loss`) on the thin
        class (a class named "... boundary" or "border") beside the cross-entropy: it
        rewards boundaries that stay connected; 0 = off.
    val_strokes : float
        Share of stroke components held out to score the model (sparse strokes).
    eval_every : float or None
        Seconds between validation scores; ``None``: about 15 per run, at least 2 s apart.
    preview_every : float
        Seconds between preview predictions.
    patience : int or None
        Stop after this many validations without improvement.
    arch : dict
        :class:`~microseg.deep.unet.UNetConfig` fields for a new network.
    num_threads : int or None
        ``torch.set_num_threads`` during :meth:`Trainer.run`; ``None``: half the CPU
        cores (at least 1), since oversubscribed threads slow training down badly on a
        shared machine; 0: leave the setting as it is.
    device : str or None
        ``None``: CUDA when available, else the CPU.
    """

    seconds: float = 60.0
    max_steps: int | None = None
    lr: float | None = None
    weight_decay: float = 1e-4
    batch: int = 8
    crop: int = 128
    seed: int = 0
    augment: bool = True
    augment_config: AugmentConfig = field(default_factory=AugmentConfig)
    zoom: tuple[float, float] = (1.0, 1.0)
    freeze_encoder: bool = False
    freeze_norm: bool | None = None
    replay_fraction: float = 0.5
    teacher: str = "classical"
    distill: float | None = None
    distill_confidence: float = 0.9
    anchor_weight: float = 0.0
    anchor_confidence: float = 0.0
    class_weights: str | list[float] = "auto"
    topology_weight: float = 0.0
    val_strokes: float = 0.2
    eval_every: float | None = None
    preview_every: float = 3.0
    patience: int | None = None
    warmup_steps: int = 20
    arch: dict[str, Any] = field(default_factory=dict)
    num_threads: int | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.max_steps is None:
            self.seconds = check_seconds(self.seconds)
        elif not float(self.seconds) > 0:  # bounded by steps: any positive time budget
            raise InputError(f"The training time must be above 0 seconds, not {self.seconds}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        d["zoom"] = list(self.zoom)
        return d


@dataclass
class TrainingProgress:
    """A snapshot reported after each training step."""

    step: int
    seconds: float
    loss: float
    val_score: float | None
    eta: float
    best_score: float | None = None
    preview: np.ndarray | None = None


ProgressCallback = Callable[[TrainingProgress], None]


# ---------------------------------------------------------------------- targets
def targets_from_masks(mask: np.ndarray, task: str, border_width: int = 1) -> np.ndarray:
    """Convert a dense ground-truth mask to training targets (1..K, uint8).

    nuclei: instance labels → 1 background, 2 nucleus, 3 border (object outlines,
    which separate touching nuclei); grains: boundary map (nonzero or, for an
    anti-aliased 8-bit map, above half its maximum) → 1 interior, 2 boundary;
    semantic: the mask already holds classes (0 = unlabelled).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"A mask must be a 2-D image, got shape {m.shape}.")
    if task == "nuclei":
        from skimage.segmentation import find_boundaries

        lab = m.astype(np.int64, copy=False)
        out = np.where(lab > 0, 2, 1).astype(np.uint8)
        border = find_boundaries(lab, mode="inner") & (lab > 0)
        if border_width > 1:
            border = ndi.binary_dilation(border, iterations=border_width - 1) & (lab > 0)
        out[border] = 3
        return out
    if task == "grains":
        vals = np.unique(m)
        bnd = m > (m.max() / 2) if vals.size > 2 else m != 0
        return np.where(bnd, 2, 1).astype(np.uint8)
    return m.astype(np.uint8)


def task_classes(task: str, n_classes: int | None = None) -> list[str]:
    """Class names a model of ``task`` predicts (nuclei models include the border class)."""
    spec = task_spec(task)
    names = list(spec.classes) + list(spec.optional)
    if n_classes is None:
        return names if task == "nuclei" else list(spec.classes)
    if n_classes <= len(names):
        return names[:n_classes]
    return names + [f"class {i + 1}" for i in range(len(names), n_classes)]


# ---------------------------------------------------------------------- data
class _Data:
    """Normalised images and targets with crop sampling."""

    def __init__(self, images: Sequence[np.ndarray], targets: Sequence[np.ndarray], in_ch: int):
        if len(images) != len(targets) or not images:
            raise InputError("Give one target (strokes or mask) per image, at least one image.")
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.labelled: list[np.ndarray] = []
        for img, tgt in zip(images, targets, strict=True):
            x = prepare_image(img, in_ch)
            t = np.asarray(tgt)
            if t.shape != x.shape[-2:]:
                raise InputError(
                    f"Strokes/mask of shape {t.shape} do not match an image of {x.shape[-2:]}."
                )
            self.x.append(x)
            self.y.append(t.astype(np.uint8))
            self.labelled.append(np.flatnonzero(t.ravel() > 0))
        counts = np.array([lab.size for lab in self.labelled], np.float64)
        if counts.sum() == 0:
            raise InputError("There are no labelled pixels: paint some strokes first.")
        areas = np.array([t.size for t in self.y], np.float64)
        self.dense = bool(counts.sum() / areas.sum() > 0.5)
        self.weights = (areas if self.dense else counts) / (areas if self.dense else counts).sum()

    def sample(
        self, rng: np.random.Generator, n: int, crop: int, zoom: tuple[float, float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(n):
            i = int(rng.choice(len(self.x), p=self.weights))
            z = float(np.exp(rng.uniform(np.log(zoom[0]), np.log(zoom[1]))))
            side = max(8, int(round(crop / z)))
            x, y = self.x[i], self.y[i]
            h, w = y.shape
            if self.dense:
                cy = rng.integers(0, max(1, h - side + 1)) + side // 2
                cx = rng.integers(0, max(1, w - side + 1)) + side // 2
            else:
                p = int(rng.choice(self.labelled[i]))
                cy = p // w + rng.integers(-side // 3, side // 3 + 1)
                cx = p % w + rng.integers(-side // 3, side // 3 + 1)
            xc, yc = _crop(x, y, int(cy) - side // 2, int(cx) - side // 2, side)
            if side != crop:
                xt = torch.from_numpy(xc)[None]
                xt = F.interpolate(xt, size=(crop, crop), mode="bilinear", antialias=side > crop)
                yt = torch.from_numpy(yc.astype(np.int64))[None, None].float()
                yt = F.interpolate(yt, size=(crop, crop), mode="nearest")
                xc, yc = xt[0].numpy(), yt[0, 0].numpy().astype(np.uint8)
            xs.append(xc)
            ys.append(yc)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


def _crop(x: np.ndarray, y: np.ndarray, y0: int, x0: int, side: int):
    h, w = y.shape
    ya, xa = max(0, y0), max(0, x0)
    yb, xb = min(h, y0 + side), min(w, x0 + side)
    xc = np.zeros((x.shape[0], side, side), np.float32)
    yc = np.zeros((side, side), np.uint8)
    xc[:, ya - y0 : yb - y0, xa - x0 : xb - x0] = x[:, ya:yb, xa:xb]
    yc[ya - y0 : yb - y0, xa - x0 : xb - x0] = y[ya:yb, xa:xb]
    if yb - ya < side or xb - xa < side:  # outside the image: mirror context, no labels
        pad = ((0, 0), (ya - y0, y0 + side - yb), (xa - x0, x0 + side - xb))
        inner = x[:, ya:yb, xa:xb]
        mode = "reflect" if min(inner.shape[1:]) > max(max(p) for p in pad[1:]) else "symmetric"
        xc = np.pad(inner, pad, mode=mode)
        if xc.shape[1:] != (side, side):
            xc = np.pad(inner, pad, mode="edge")
    return xc.astype(np.float32, copy=False), yc


TEACHERS = ("classical", "initial", "none")


def replace_margin(val_targets: Sequence[np.ndarray]) -> float:
    """How much higher a trained model must score on held-out strokes to replace the
    starting model: ``0.5 / sqrt(n)`` for n held-out strokes (connected pieces: the
    pixels of one stroke are not independent samples), at most 0.1."""
    n = 0
    for t in val_targets:
        t = np.asarray(t)
        for c in np.unique(t[t > 0]):
            n += int(ndi.label(t == c, structure=np.ones((3, 3)))[1])
    return min(0.1, 0.5 / math.sqrt(max(1, n)))


def _classical_teacher(
    images: Sequence[np.ndarray], targets: Sequence[np.ndarray], task: str, k: int, seed: int
) -> list[np.ndarray] | None:
    """Class probabilities ``(K, Y, X)`` per image from a random forest fitted on the
    strokes (classes beyond ``k`` dropped); ``None`` when the strokes cannot train one
    (fewer than two classes, mixed channel counts)."""
    from microseg.classical import RandomForestSegmenter

    try:
        rf = RandomForestSegmenter().fit(list(images), list(targets), task=task, seed=seed)
        probas = [np.asarray(rf.predict_proba(im), np.float32) for im in images]
    except InputError:
        return None
    return [p[:k] for p in probas]


def stroke_prior_weights(
    targets: Sequence[np.ndarray],
    probas: Sequence[np.ndarray],
    base_weights: Sequence[float],
    max_ratio: float = 20.0,
) -> np.ndarray:
    """Class weights that make a loss on strokes weigh the classes as a loss on the
    whole image would.

    Strokes hold the classes in other proportions than the image: a user paints a
    thin boundary about as much as the grain interiors beside it. A model fine-tuned
    on them with the weights it was trained with learns a prior the image does not
    have (boundaries grow thick). Each class's weight is multiplied by its share of the
    image (the starting model's map of the training images) over its share of the
    stroke pixels, the correction for label shift.

    Parameters
    ----------
    targets : sequence of ndarray
        Stroke targets (0 unlabelled, k = class k; values above K are ignored).
    probas : sequence of ndarray
        ``(K, Y, X)`` class probabilities of the same images.
    base_weights : sequence of float
        The weights the classes would have on dense labels (``K`` values).
    max_ratio : float
        Cap on the largest/smallest weight.

    Returns
    -------
    ndarray
        ``(K,)`` float32 weights, mean 1 over the classes the strokes hold.
    """
    base = np.asarray(base_weights, np.float64)
    k = base.size
    strokes = np.zeros(k)
    image = np.zeros(k)
    for t, p in zip(targets, probas, strict=True):
        c = np.bincount(np.asarray(t).ravel().astype(np.int64), minlength=2 * k + 1)
        strokes += c[1 : k + 1]
        image += np.bincount(np.argmax(p, 0).ravel(), minlength=k)[:k]
    w = base.copy()
    held = (strokes > 0) & (image > 0)
    if held.any():
        w[held] *= (image[held] / image[held].sum()) / (strokes[held] / strokes[held].sum())
        w[held] = np.clip(w[held], w[held].max() / max_ratio, None)
        w /= w[held].mean()
    return w.astype(np.float32)


def prepare_image(image: np.ndarray, in_channels: int | None = None) -> np.ndarray:
    """Percentile-normalised float32 ``(C, Y, X)``, channels matched to ``in_channels``."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 3, 4):
        arr = np.moveaxis(arr[..., :3], -1, 0)
    x = normalize_percentile(as_channels(arr))
    if in_channels is None or x.shape[0] == in_channels:
        return x
    if in_channels == 1:
        return x.mean(axis=0, keepdims=True)
    if x.shape[0] == 1:
        return np.repeat(x, in_channels, axis=0)
    raise InputError(f"The model expects {in_channels} channel(s); the image has {x.shape[0]}.")


def split_strokes(
    targets: Sequence[np.ndarray], fraction: float, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """Hold out ``fraction`` of each class's stroke components for validation.

    Returns ``(train, val)`` targets, or ``None`` when a class has fewer than 3 strokes.
    """
    rng = np.random.default_rng(seed)
    train = [np.array(t, np.uint8) for t in targets]
    val = [np.zeros_like(t) for t in train]
    classes = sorted({int(c) for t in train for c in np.unique(t) if c > 0})
    for c in classes:
        comps = []
        for i, t in enumerate(train):
            lab, n = ndi.label(t == c, structure=np.ones((3, 3)))
            comps += [(i, lab, k) for k in range(1, n + 1)]
        if len(comps) < 3:
            return None
        n_val = max(1, int(round(fraction * len(comps))))
        for j in rng.choice(len(comps), n_val, replace=False):
            i, lab, k = comps[j]
            sel = lab == k
            val[i][sel] = c
            train[i][sel] = 0
    return train, val


def macro_f1(pred: np.ndarray, target: np.ndarray, n_classes: int) -> float:
    """Mean over classes of the pixel F1 on labelled pixels (target > 0)."""
    sel = target > 0
    p, t = pred[sel].astype(np.int64), target[sel].astype(np.int64)
    cm = np.bincount(t * (n_classes + 1) + p, minlength=(n_classes + 1) ** 2).reshape(
        n_classes + 1, n_classes + 1
    )
    f1s = []
    for k in range(1, n_classes + 1):
        tp = cm[k, k]
        fp = cm[:, k].sum() - tp
        fn = cm[k, :].sum() - tp
        if cm[k, :].sum() > 0:
            f1s.append(2 * tp / max(1, 2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


# ---------------------------------------------------------------------- trainer
class Trainer:
    """A resumable training run (see :func:`train_unet` for the parameters)."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        config: TrainConfig | None = None,
        init: UNetSegmenter | None = None,
        task: str = "semantic",
        classes: list[str] | None = None,
        val_images: Sequence[np.ndarray] | None = None,
        val_targets: Sequence[np.ndarray] | None = None,
        replay: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
        preview_image: np.ndarray | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.config = cfg = config or TrainConfig()
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.finetune = init is not None
        if init is not None:
            self.task = init.task
            self.classes = list(init.classes)
            net = copy.deepcopy(init.net)
            self.base_meta = {
                k: v
                for k, v in init.metadata.items()
                if k in ("pixel_size_um", "object_diameter_px", "normalisation", "data")
            }
            self.base_meta["init"] = init.metadata.get("name", "model")
            # the starting model's feature statistics hold only while its weights do
            self._init_feature_stats = init.metadata.get("feature_stats")
        else:
            self.task = task
            max_t = max(int(np.max(t)) for t in targets)
            n = len(classes) if classes else max(2, max_t)
            if task == "nuclei" and classes is None:
                n = max(n, 2)
            self.classes = list(classes) if classes else task_classes(task, n)
            in_ch = prepare_image(images[0]).shape[0]
            arch = {"in_channels": in_ch, "n_classes": len(self.classes), **cfg.arch}
            net = UNet(UNetConfig(**arch))
            self.base_meta = {}
        self.base_meta.update(metadata or {})
        self.net = net.to(self.device)
        self.freeze_norm = bool(cfg.freeze_norm)
        k = len(self.classes)
        in_ch = self.net.config.in_channels
        for t in targets:
            if int(np.max(t)) > k:
                raise InputError(f"Strokes use class {int(np.max(t))} but the model has {k}.")
        # validation
        tr_targets = list(targets)
        self.val: tuple[list[np.ndarray], list[np.ndarray]] | None = None
        val_index: list[int] = []  # which training images the held-out strokes are on
        if val_images is not None and val_targets is not None and len(val_images):
            self.val = ([prepare_image(v, in_ch) for v in val_images], list(val_targets))
        else:
            labelled = sum(int((np.asarray(t) > 0).sum()) for t in targets)
            area = sum(np.asarray(t).size for t in targets)
            if labelled / area < 0.5 and cfg.val_strokes > 0:
                split = split_strokes(targets, cfg.val_strokes, cfg.seed)
                if split is not None:
                    tr_targets, vt = split
                    keep = val_index = [i for i, v in enumerate(vt) if v.any()]
                    self.val = (
                        [prepare_image(images[i], in_ch) for i in keep],
                        [vt[i] for i in keep],
                    )
        self.data = _Data(images, tr_targets, in_ch)
        self.replay = _Data(replay[0], replay[1], in_ch) if replay is not None else None
        # class weights
        cw = cfg.class_weights
        init_w = None if init is None else init.metadata.get("training", {}).get("class_weights")
        if init_w is not None and np.asarray(init_w).shape != (k,):
            init_w = None
        self._initial_probas: list[np.ndarray] | None = None
        if cw == "auto":
            cw = "prior" if self.finetune and not self.data.dense else "balanced"
        pseudo_w = None  # pseudo-labels cover the image as it is: no stroke correction
        if cw == "prior" and self.finetune:
            base_w = init_w if init_w is not None else balanced_class_weights(self.data.y, k)
            w = stroke_prior_weights(self.data.y, self.initial_probas(), base_w)
            pseudo_w = np.asarray(base_w, np.float32)
        elif cw == "model" and init_w is not None:
            w = np.asarray(init_w, np.float32)
        elif cw in ("balanced", "model", "prior"):
            w = balanced_class_weights(self.data.y, k)
        elif cw == "none":
            w = np.ones(k, np.float32)
        else:
            w = np.asarray(cw, np.float32)
        if w.shape != (k,):
            raise InputError(f"Give {k} class weights, got {w.size}.")
        self.class_weights = w
        self.weight_t = torch.from_numpy(w).to(self.device)
        self.pseudo_weight_t = (
            self.weight_t if pseudo_w is None else torch.from_numpy(pseudo_w).to(self.device)
        )
        # optimiser
        self.lr = cfg.lr if cfg.lr is not None else (3e-4 if self.finetune else 2e-3)
        enc = {id(p) for p in self.net.encoder_parameters()} if cfg.freeze_encoder else set()
        for p in self.net.parameters():
            p.requires_grad_(id(p) not in enc)
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=cfg.weight_decay)
        self.preview_image = (
            prepare_image(preview_image, in_ch) if preview_image is not None else None
        )
        if cfg.teacher not in TEACHERS:
            raise InputError(f"Unknown teacher '{cfg.teacher}'; use one of {', '.join(TEACHERS)}.")
        sparse = not self.data.dense
        self.distill = cfg.distill if cfg.distill is not None else (0.5 if sparse else 0.0)
        self.teacher = "none"
        self.teacher_val_score: float | None = None
        self._initial_score: float | None = None
        self.anchor: np.ndarray | None = None
        self.pseudo_labelled = 0
        held_out_strokes = self.finetune and self.val is not None and val_images is None
        self.replace_margin = replace_margin(self.val[1]) if held_out_strokes else 0.0
        if self.distill > 0 and sparse and cfg.teacher != "none":
            if cfg.teacher == "initial" and self.finetune:
                self._add_pseudo_labels(k, self.initial_probas())
                self.teacher = "initial model"
            elif cfg.teacher == "classical":
                proba = _classical_teacher(images, tr_targets, self.task, k, cfg.seed)
                if proba is not None and self._teacher_helps(proba, val_index, k):
                    self._add_pseudo_labels(k, proba)
                    self.teacher = "random forest on the strokes"
        if self.teacher == "none":
            self.distill = 0.0
        if held_out_strokes and cfg.anchor_weight > 0:
            self.anchor = self._make_anchor()
        # state
        self.step = 0
        self.elapsed = 0.0
        self.losses: list[float] = []
        self.scores: list[tuple[int, float]] = []
        self.smooth: float | None = None
        self.best_score: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = 0
        self._since_best = 0

    # -------------------------------------------------------------- helpers
    def initial_probas(self) -> list[np.ndarray]:
        """The starting model's class probabilities on the training images (computed
        once, before any step)."""
        if self._initial_probas is None:
            self._initial_probas = [self._predict(x) for x in self.data.x]
        return self._initial_probas

    def _add_pseudo_labels(self, k: int, probas: Sequence[np.ndarray]) -> None:
        """Unlabelled pixels get the teacher's confident class, stored as k + class."""
        for i, p in enumerate(probas):
            cls = np.argmax(p, axis=0).astype(np.uint8) + 1
            keep = (p.max(axis=0) >= self.config.distill_confidence) & (self.data.y[i] == 0)
            keep &= cls <= k
            y = self.data.y[i].copy()
            y[keep] = cls[keep] + k
            self.data.y[i] = y
            self.pseudo_labelled += int(keep.sum())

    def _teacher_helps(self, proba: Sequence[np.ndarray], val_index: list[int], k: int) -> bool:
        """Whether the random forest's labels can teach the model being fine-tuned: only
        when it scores higher than the starting model on the held-out strokes by more
        than :func:`replace_margin` (the forest fits strokes like the held-out ones
        well; its pseudo-labels would pull a good model towards its errors elsewhere)."""
        if not self.finetune or self.val is None or not val_index:
            return True
        preds = [(np.argmax(proba[i], 0) + 1).ravel() for i in val_index]
        tgts = [np.asarray(t).ravel() for t in self.val[1]]
        teacher = macro_f1(np.concatenate(preds), np.concatenate(tgts), k)
        self.teacher_val_score = teacher
        self._initial_score = float(self.validate())  # the starting model's, kept for run()
        return teacher > self._initial_score + self.replace_margin

    def _thin_class(self) -> int | None:
        """Index of the thin class (boundary or border) the topology loss is on."""
        for i, name in enumerate(self.classes):
            if name.lower().endswith("boundary") or name.lower() == "border":
                return i
        return None

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = len(self.classes)
        if self.distill <= 0:
            own, loss = y, masked_cross_entropy(logits, y, self.weight_t)
        else:
            own = torch.where(y <= k, y, torch.zeros_like(y))
            pseudo = torch.where(y > k, y - k, torch.zeros_like(y))
            loss = masked_cross_entropy(logits, own, self.weight_t)
            loss = loss + self.distill * masked_cross_entropy(logits, pseudo, self.pseudo_weight_t)
        thin = self._thin_class()
        if self.config.topology_weight > 0 and thin is not None:
            prob = torch.softmax(logits, dim=1)[:, thin]
            topo = cl_dice_loss(prob, own == thin + 1, own > 0)
            loss = loss + self.config.topology_weight * topo
        return loss

    def _set_train_mode(self) -> None:
        self.net.train()
        if self.freeze_norm:
            for m in self.net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def _lr_at(self, frac: float) -> float:
        warm = min(1.0, (self.step + 1) / max(1, self.config.warmup_steps))
        cos = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return self.lr * warm * cos

    def _predict(self, x: np.ndarray) -> np.ndarray:
        from microseg.deep.tiling import predict_proba_tiled

        self.net.eval()
        try:
            return predict_proba_tiled(self.net, x, tile=512, device=self.device)
        finally:
            self._set_train_mode()

    def validate(self) -> float | None:
        """Validation score (``None`` without validation data).

        Macro pixel F1 on the validation targets; with ``anchor_weight``, mixed with
        the macro F1 of agreement with the initial model's map on the same images.
        When fine-tuning on held-out strokes the initial model is only replaced by a
        score higher by more than :func:`replace_margin`, the noise of such a small
        sample.
        """
        if self.val is None:
            return None
        k = len(self.classes)
        preds, tgts = [], []
        for x, t in zip(*self.val, strict=True):
            p = self._predict(x)
            preds.append((np.argmax(p, 0) + 1).ravel())
            tgts.append(np.asarray(t).ravel())
        pred = np.concatenate(preds)
        score = macro_f1(pred, np.concatenate(tgts), k)
        if self.anchor is None:
            return score
        w = float(self.config.anchor_weight)
        return (1 - w) * score + w * macro_f1(pred, self.anchor, k)

    def _make_anchor(self) -> np.ndarray:
        """The initial model's classes on the validation images where it is at least
        ``anchor_confidence`` sure (0 elsewhere)."""
        out = []
        for x in self.val[0]:
            p = self._predict(x)
            cls = (np.argmax(p, 0) + 1).astype(np.uint8)
            cls[p.max(axis=0) < self.config.anchor_confidence] = 0
            out.append(cls.ravel())
        return np.concatenate(out)

    def _consider(self, score: float) -> None:
        margin = 1e-6
        if self.replace_margin and self.best_step == 0 and self.step > 0:
            # replacing the initial model needs a gain beyond the noise of a few strokes
            margin = self.replace_margin
        if self.best_score is None or score > self.best_score + margin:
            self.best_score = score
            self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            self.best_step = self.step
            self._since_best = 0
        else:
            self._since_best += 1

    # -------------------------------------------------------------- main loop
    def run(
        self,
        progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
        seconds: float | None = None,
    ) -> UNetSegmenter:
        """Train until the time budget, ``max_steps``, patience or ``stop``; return the best model.

        The thread setting of ``config.num_threads`` applies during the run and is
        restored afterwards.
        """
        before = torch.get_num_threads()
        cfg = self.config
        if self.device.type == "cpu" and cfg.num_threads != 0:
            torch.set_num_threads(int(cfg.num_threads or max(1, (os.cpu_count() or 2) // 2)))
        try:
            return self._run(progress, stop, seconds)
        finally:
            torch.set_num_threads(before)

    def _run(
        self,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
        seconds: float | None,
    ) -> UNetSegmenter:
        cfg = self.config
        budget = cfg.seconds if seconds is None else check_seconds(seconds)
        total = self.elapsed + budget if seconds is not None else budget
        self._set_train_mode()
        eval_every = cfg.eval_every or max(2.0, budget / 15)
        if self.val is not None and self.step == 0 and self.finetune:
            start = self._initial_score if self.anchor is None else None
            self._consider(self.validate() if start is None else start)  # a candidate too
            self.scores.append((0, float(self.best_score)))
        t0 = time.perf_counter() - self.elapsed
        last_eval = last_prev = time.perf_counter()
        n_rep = int(round(cfg.batch * cfg.replay_fraction)) if self.replay is not None else 0
        while True:
            now = time.perf_counter()
            self.elapsed = now - t0
            if stop is not None and stop.is_set():
                break
            if self.elapsed >= total or (cfg.max_steps and self.step >= cfg.max_steps):
                break
            if cfg.patience and self._since_best >= cfg.patience:
                break
            x, y = self.data.sample(self.rng, cfg.batch - n_rep, cfg.crop, cfg.zoom)
            if n_rep:
                xr, yr = self.replay.sample(self.rng, n_rep, cfg.crop, cfg.zoom)
                x, y = torch.cat([x, xr]), torch.cat([y, yr])
            if cfg.augment:
                x, y = augment_batch(x, y, cfg.augment_config, self.gen)
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            y = y.to(self.device)
            for g in self.opt.param_groups:
                g["lr"] = self._lr_at(self.elapsed / max(total, 1e-6))
            loss = self._loss(self.net(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step += 1
            lv = float(loss.detach())
            self.losses.append(lv)
            self.smooth = lv if self.smooth is None else 0.95 * self.smooth + 0.05 * lv
            now = time.perf_counter()
            self.elapsed = now - t0
            score = None
            if self.val is not None and now - last_eval >= eval_every:
                score = self.validate()
                self.scores.append((self.step, score))
                self._consider(score)
                last_eval = time.perf_counter()
            elif self.val is None and self.step >= 10 and self.step % 5 == 0:
                self._consider(-float(self.smooth))
            preview = None
            if self.preview_image is not None and now - last_prev >= cfg.preview_every:
                preview = self._predict(self.preview_image)
                last_prev = time.perf_counter()
            if progress is not None:
                rate = self.elapsed / max(1, self.step)
                eta = max(0.0, total - self.elapsed)
                if cfg.max_steps:
                    eta = min(eta, (cfg.max_steps - self.step) * rate)
                progress(
                    TrainingProgress(
                        self.step, self.elapsed, lv, score, eta, self._best_display(), preview
                    )
                )
        # final candidate
        if self.val is not None and self.step > 0:
            score = self.validate()
            self.scores.append((self.step, score))
            self._consider(score)
        elif self.val is None and self.smooth is not None:
            self._consider(-float(self.smooth))
        return self.result()

    def _best_display(self) -> float | None:
        if self.best_score is None:
            return None
        return self.best_score if self.val is not None else -self.best_score

    def result(self) -> UNetSegmenter:
        """The best model so far as a :class:`UNetSegmenter` (a copy)."""
        net = copy.deepcopy(self.net).cpu()
        if self.best_state is not None:
            net.load_state_dict({k: v.cpu() for k, v in self.best_state.items()})
        net.eval()
        summary = {
            "steps": self.step,
            "best_step": self.best_step,
            "seconds": round(self.elapsed, 1),
            "final_loss": None if self.smooth is None else round(float(self.smooth), 5),
            "best_val_score": (
                round(float(self.best_score), 5)
                if self.val is not None and self.best_score is not None
                else None
            ),
            "validation": (
                "training loss"
                if self.val is None
                else "held-out strokes and agreement with the initial model"
                if self.anchor is not None
                else "held-out strokes, the initial model a candidate"
                if self.replace_margin
                else "held-out labels"
            ),
            "initial_val_score": (
                round(float(self.scores[0][1]), 5)
                if self.finetune and self.scores and self.scores[0][0] == 0
                else None
            ),
            "kept_initial": bool(self.finetune and self.best_step == 0),
            "teacher": self.teacher,
            "teacher_val_score": (
                None if self.teacher_val_score is None else round(self.teacher_val_score, 5)
            ),
            "pseudo_labelled_pixels": self.pseudo_labelled,
            "labelled_pixels": int(sum(lab.size for lab in self.data.labelled)),
            "class_weights": [float(v) for v in self.class_weights],
            "lr": self.lr,
            "finetuned": self.finetune,
            "config": self.config.to_dict(),
        }
        meta = dict(self.base_meta)
        meta["training"] = summary
        if summary["kept_initial"] and getattr(self, "_init_feature_stats", None):
            meta["feature_stats"] = self._init_feature_stats
        return UNetSegmenter(net, self.classes, self.task, meta, device=self.device)

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors and plain Python values only)."""
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "losses": self.losses[-5000:],
            "scores": self.scores,
            "smooth": self.smooth,
            "best_score": self.best_score,
            "best_state": self.best_state,
            "best_step": self.best_step,
            "rng": self.rng.bit_generator.state,
            "gen": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`."""
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        self.losses = list(state["losses"])
        self.scores = [tuple(s) for s in state["scores"]]
        self.smooth = state["smooth"]
        self.best_score = state["best_score"]
        self.best_state = state["best_state"]
        self.best_step = int(state["best_step"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])


def train_unet(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    config: TrainConfig | None = None,
    init: UNetSegmenter | None = None,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    task: str = "semantic",
    classes: list[str] | None = None,
    masks: bool = False,
    val_images: Sequence[np.ndarray] | None = None,
    val_targets: Sequence[np.ndarray] | None = None,
    replay: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
    preview_image: np.ndarray | None = None,
) -> UNetSegmenter:
    """Train a U-Net and return the best model found within the time budget.

    Parameters
    ----------
    images : sequence of ndarray
        ``(Y, X)``, ``(C, Y, X)`` or ``(Y, X, 3)`` images, any dtype (normalised per image).
    targets : sequence of ndarray
        Strokes (0 = unlabelled, k = class k) or, with ``masks=True``, dense masks
        converted by :func:`targets_from_masks` for ``task``.
    config : TrainConfig or None
        Budget and hyper-parameters.
    init : UNetSegmenter or None
        Fine-tune this model (its classes and task are kept) instead of starting fresh.
    progress : callable or None
        Receives a :class:`TrainingProgress` after each step.
    stop : threading.Event or None
        Set it to end training; the best model so far is returned.
    task, classes
        Task and class names of a new model.
    val_images, val_targets
        Held-out images and targets used to pick the best model.
    replay : (images, targets) or None
        Original training data mixed into each batch when fine-tuning.
    preview_image : ndarray or None
        Predicted every ``config.preview_every`` seconds into ``TrainingProgress.preview``.

    Returns
    -------
    UNetSegmenter
    """
    tgts = list(targets)
    if masks:
        t = init.task if init is not None else task
        tgts = [targets_from_masks(m, t) for m in targets]
    trainer = Trainer(
        images,
        tgts,
        config,
        init=init,
        task=task,
        classes=classes,
        val_images=val_images,
        val_targets=val_targets,
        replay=replay,
        preview_image=preview_image,
    )
    return trainer.run(progress=progress, stop=stop)


# ---------------------------------------------------------------------- background job
@dataclass
class JobProgress:
    """What a user interface shows about a running :class:`TrainingJob`."""

    running: bool = False
    step: int = 0
    seconds: float = 0.0
    eta: float = 0.0
    fraction: float = 0.0
    losses: list[float] = field(default_factory=list)
    val_scores: list[tuple[int, float]] = field(default_factory=list)
    best_score: float | None = None
    preview: np.ndarray | None = None


class TrainingJob:
    """Train in a background thread so that a user interface stays responsive.

    Parameters are those of :func:`train_unet`. ``start()`` launches the thread,
    ``stop()`` ends it (the best model so far becomes ``result``), ``progress``
    is a snapshot safe to read from another thread, and
    ``continue_training(targets)`` resumes from the current weights with new strokes.
    ``after``, when set before ``start()``, is called with the trained model in the
    same thread (the job counts as running until it returns); what it returns is
    ``after_result`` (``None`` when it failed: the model is kept either way).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        config: TrainConfig | None = None,
        **kwargs: Any,
    ) -> None:
        self.images = list(images)
        self.targets = list(targets)
        self.config = config or TrainConfig()
        self.kwargs = kwargs
        self.result: UNetSegmenter | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._progress = JobProgress()
        self._thread: threading.Thread | None = None
        self.after: Callable[[UNetSegmenter], Any] | None = None
        self.after_result: Any = None

    @property
    def progress(self) -> JobProgress:
        """A copy of the latest progress."""
        with self._lock:
            p = copy.copy(self._progress)
            p.losses = list(p.losses)
            p.val_scores = list(p.val_scores)
            return p

    @property
    def running(self) -> bool:
        """True while the training thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _on_progress(self, p: TrainingProgress) -> None:
        with self._lock:
            g = self._progress
            g.step, g.seconds, g.eta = p.step, p.seconds, p.eta
            total = p.seconds + p.eta
            g.fraction = min(1.0, p.seconds / total) if total > 0 else 1.0
            g.losses.append(p.loss)
            if p.val_score is not None:
                g.val_scores.append((p.step, p.val_score))
            g.best_score = p.best_score
            if p.preview is not None:
                g.preview = p.preview

    def _run(self, init: UNetSegmenter | None) -> None:
        try:
            kw = dict(self.kwargs)
            if init is not None:
                kw["init"] = init
            res = train_unet(
                self.images,
                self.targets,
                self.config,
                progress=self._on_progress,
                stop=self._stop,
                **kw,
            )
            self.result = res
            if self.after is not None:
                try:
                    self.after_result = self.after(res)
                except Exception:  # noqa: BLE001 - an extra figure; the model stands without it
                    self.after_result = None
        except BaseException as exc:  # reported to the user interface via .error
            self.error = exc
        finally:
            with self._lock:
                self._progress.running = False

    def start(self, init: UNetSegmenter | None = None) -> TrainingJob:
        """Start training in a daemon thread (no-op while already running)."""
        if self.running:
            return self
        self._stop.clear()
        self.error = None
        with self._lock:
            self._progress = JobProgress(running=True)
        self._thread = threading.Thread(target=self._run, args=(init,), daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: bool = True, timeout: float | None = 60.0) -> UNetSegmenter | None:
        """Ask training to stop; with ``wait``, join it and return the best model."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout)
        return self.result

    def join(self, timeout: float | None = None) -> UNetSegmenter | None:
        """Wait for the job to finish; return its result."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    def continue_training(
        self,
        targets: Sequence[np.ndarray] | None = None,
        images: Sequence[np.ndarray] | None = None,
        seconds: float | None = None,
    ) -> TrainingJob:
        """Continue from the current best weights, with updated strokes (human in the loop)."""
        self.stop(wait=True)
        if images is not None:
            self.images = list(images)
        if targets is not None:
            self.targets = list(targets)
        cfg = self.config
        if self.kwargs.get("init") is None:  # a model trained here: keep its own settings
            cfg = dataclasses.replace(
                cfg, lr=cfg.lr or 2e-3, freeze_norm=bool(cfg.freeze_norm), warmup_steps=0
            )
        if seconds is not None:
            cfg = dataclasses.replace(cfg, seconds=seconds)
        self.config = cfg
        init = self.result if self.result is not None else self.kwargs.get("init")
        self.kwargs.pop("init", None)
        return self.start(init=init)
