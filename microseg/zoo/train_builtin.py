"""Train the built-in models on the public data in ``../shared/data``.

Usage::

    python -m microseg.zoo train nuclei --minutes 40 [--resume] [--data DIR] [--threads 1]
    python -m microseg.zoo train grains --minutes 30 [--resume]
    python -m microseg.zoo train grains --init WEIGHTS --styles 60 --tbm-repeat 3 --minutes 28
    python -m microseg.zoo train nuclei --init WEIGHTS --texture 0.6 --minutes 40

nuclei: Data Science Bowl 2018 stage-1 training images (``nuclei/dsb2018_train``),
grey, with instance labels converted to background / nucleus / border. Images are
sorted by id; every 10th (index % 10 == 0) is held out for evaluation and never
used, every 20th from index 5 (index % 20 == 5) selects the best model and is not
trained on. grains: ``grains/tbm`` tiles of micrographs 10-17 (micrographs 18-20
and ``nist_steel`` are kept for evaluation); the first tile (by sorted name) of
micrographs 10, 13 and 16 selects the best model and is not trained on; plus 8
``microseg.synth`` grain images (``--synthetic N``).

The committed weights came from ``train nuclei --minutes 40``, then ``--minutes 75
--resume``, then ``--minutes 155 --resume`` stopped at 118 minutes (19199 steps; the
best by validation F1, at step 14287; the checkpoints to resume from are committed in
``checkpoints/``), then ``train nuclei --init microseg/zoo/weights/nuclei.safetensors
--texture 0.6 --seed 2 --threads 2 --minutes 40`` (15347 steps of fine-tuning with uneven
staining added to the crops, so that textured chromatin is not read as a border between
two nuclei; best by validation F1 at the last step). The grain weights are a generalist:
``train grains --minutes 30`` (one thread; 9033 steps on TBM and 8 synthetic images),
then ``train grains --init microseg/zoo/weights/grains.safetensors --styles 60
--styled-val 3 --minutes 55`` (60 renderings in the SEM, optical, tint-etched, lamellar
and nanometre styles of :mod:`microseg.synth_styles` added), then ``train grains --init
STAGE1 --styles 60 --tbm-repeat 3 --styled-val 0 --lr 2e-4 --minutes 28`` (the real
tiles drawn three times as often and the best model chosen on the TBM validation tiles
alone; stopped at 20 minutes, best at step 3649; ``checkpoints/grains.pt`` is this
stage's last state, to ``--resume`` with the same flags). On a GPU, training runs there
automatically. ``benchmarks/results/generalist_2026-12-07.txt`` compares it with the
first model on the left-out images.

``--tbm-repeat 0`` leaves the TBM tiles out of training and of model selection (the
styled validation images choose the best model): the leave-TBM-out variant that
``benchmarks/bench_adapt.py --weights`` scores on micrographs 18-20 came from
``train grains --tbm-repeat 0 --styles 60 --styled-val 3 --minutes 40`` (a new
network, one thread).

The run checkpoints every minute to ``checkpoints/NAME.pt`` (and the best model so
far to ``checkpoints/NAME_best.safetensors``); ``--resume`` continues from the
checkpoint and ``--minutes`` is the total training time across resumed runs. The
final weights go to ``microseg/zoo/weights/NAME.safetensors``; for nuclei the foreground
threshold and split height are then chosen on the validation split and stored in the file
(``python -m microseg.zoo calibrate nuclei`` does that step alone).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microseg.zoo import BUILTINS, WEIGHTS_DIR

REPO = Path(__file__).resolve().parents[2]
ARCH = {"depth": 4, "base": 8, "norm": "batch"}


def default_data_dir() -> Path:
    """``../shared/data`` beside the repository."""
    return REPO.parent / "shared" / "data"


def _grey(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        return img[..., :3].astype(np.float32).mean(axis=-1)
    return img.astype(np.float32)


def nuclei_split(data: Path) -> dict[str, list[str]]:
    """Sorted DSB ids split into ``train``, ``val`` (model selection) and ``test`` (held out)."""
    ids = sorted(p.stem for p in (data / "nuclei" / "dsb2018_train" / "images").glob("*.png"))
    test = [i for k, i in enumerate(ids) if k % 10 == 0]
    val = [i for k, i in enumerate(ids) if k % 20 == 5]
    train = [i for k, i in enumerate(ids) if k % 10 != 0 and k % 20 != 5]
    return {"train": train, "val": val, "test": test}


def load_dsb(data: Path, ids: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Grey images and instance labels of DSB ids."""
    import tifffile
    from skimage import io

    root = data / "nuclei" / "dsb2018_train"
    images = [_grey(io.imread(root / "images" / f"{i}.png")) for i in ids]
    labels = [tifffile.imread(root / "labels" / f"{i}.tif") for i in ids]
    return images, labels


def grains_split(data: Path) -> dict[str, list[str]]:
    """TBM tile names: ``train`` and ``val`` from micrographs 10-17, ``test`` from 18-20."""
    names = sorted(p.stem for p in (data / "grains" / "tbm" / "tiles256" / "images").glob("*.png"))
    own = [n for n in names if 10 <= int(n.split("-")[0]) <= 17]
    val = []
    for mic in sorted({n.split("-")[0] for n in own}):
        val.append([n for n in own if n.split("-")[0] == mic][0])
    val = val[::3]  # three tiles select the best model
    train = [n for n in own if n not in val]
    test = [n for n in names if int(n.split("-")[0]) >= 18]
    return {"train": train, "val": val, "test": test}


def load_tbm(data: Path, names: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB tiles ``(3, Y, X)`` and their boundary masks."""
    from skimage import io

    root = data / "grains" / "tbm" / "tiles256"
    images = [np.moveaxis(io.imread(root / "images" / f"{n}.png")[..., :3], -1, 0) for n in names]
    masks = [io.imread(root / "masks" / f"{n}.png") for n in names]
    masks = [m[..., 0] if m.ndim == 3 else m for m in masks]
    return images, masks


def synth_grain_data(n: int, seed: int = 1000) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` synthetic grain images (grey, replicated to 3 channels) and boundary maps."""
    try:
        from microseg.synth import synth_grains
    except ImportError:
        return [], []
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for k in range(n):
        s = synth_grains((320, 320), n_grains=int(rng.integers(25, 90)), seed=seed + k)
        images.append(np.repeat(s.image[None].astype(np.float32), 3, axis=0))
        masks.append(s.boundaries.astype(np.uint8))
    return images, masks


def styled_grain_data(
    n: int, seed: int = 5000, side: int = 320
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` grain images in the styles of :mod:`microseg.synth_styles` (the styles in
    turn, the rest drawn by seed), as ``(3, Y, X)`` float32, and their boundary maps."""
    from microseg.synth_styles import STYLES, synth_grain_style

    images, masks = [], []
    for k in range(n):
        s = synth_grain_style((side, side), seed=seed + k, style=STYLES[k % len(STYLES)])
        im = s.image.astype(np.float32)
        images.append(np.moveaxis(im, -1, 0) if im.ndim == 3 else np.repeat(im[None], 3, axis=0))
        masks.append(s.boundaries.astype(np.uint8))
    return images, masks


def _centre_crops(arrays: list[np.ndarray], side: int) -> list[np.ndarray]:
    out = []
    for a in arrays:
        h, w = a.shape[-2:]
        y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
        out.append(a[..., y0 : y0 + side, x0 : x0 + side])
    return out


def _median_diameter(labels: list[np.ndarray]) -> float:
    diam = []
    for lab in labels:
        counts = np.bincount(lab.ravel().astype(np.int64))[1:]
        counts = counts[counts > 0]
        diam.append(2 * np.sqrt(counts / np.pi))
    return float(np.median(np.concatenate(diam)))


def build(
    name: str,
    data: Path,
    n_synth: int = 8,
    n_styled: int = 0,
    tbm_repeat: int = 1,
    styled_val: int = 3,
) -> dict[str, Any]:
    """Training inputs of built-in model ``name``."""
    from microseg.deep.train import targets_from_masks

    if name == "nuclei":
        split = nuclei_split(data)
        tr_x, tr_l = load_dsb(data, split["train"])
        va_x, va_l = load_dsb(data, split["val"])
        va_x, va_l = _centre_crops(va_x, 256), _centre_crops(va_l, 256)  # cheap validation
        return {
            "images": tr_x,
            "targets": [targets_from_masks(m, "nuclei") for m in tr_l],
            "val_images": va_x,
            "val_targets": [targets_from_masks(m, "nuclei") for m in va_l],
            "classes": BUILTINS["nuclei"]["classes"],
            "zoom": (0.6, 1.7),
            "object_diameter_px": round(_median_diameter(tr_l), 1),
            "split": {k: len(v) for k, v in split.items()},
            "held_out_ids": split["test"],
        }
    if name == "grains":
        split = grains_split(data)
        tr_x, tr_m = load_tbm(data, split["train"])
        va_x, va_m = load_tbm(data, split["val"])
        sy_x, sy_m = synth_grain_data(n_synth)
        st_x, st_m = styled_grain_data(n_styled)
        # styled images on seeds never trained on join the validation set
        sv_x, sv_m = styled_grain_data(styled_val if n_styled else 0, seed=9000, side=256)
        reps = max(0, int(tbm_repeat))  # the real tiles, drawn as often as reps copies
        if reps == 0:  # leave TBM out (of training and of model selection)
            if not sv_x:
                raise SystemExit("--tbm-repeat 0 needs styled validation images (--styles N).")
            tr_x, tr_m, va_x, va_m = [], [], [], []
        return {
            "images": tr_x * reps + sy_x + st_x,
            "targets": [targets_from_masks(m, "grains") for m in tr_m * reps + sy_m + st_m],
            "val_images": va_x + sv_x,
            "val_targets": [targets_from_masks(m, "grains") for m in va_m + sv_m],
            "classes": BUILTINS["grains"]["classes"],
            "zoom": (0.75, 1.33),
            "object_diameter_px": None,
            "split": {
                **{k: len(v) for k, v in split.items()},
                "train": len(tr_x),  # the TBM tiles used (none with --tbm-repeat 0)
                "val": len(va_x),
                "synthetic": len(sy_x),
                "styled": len(st_x),
                "styled_val": len(sv_x),
                "tbm_repeat": reps,
            },
            "held_out_ids": split["test"],
            "train_ids": split["train"],
            "val_ids": split["val"],
        }
    raise SystemExit(f"Unknown built-in model '{name}'; choose one of {', '.join(BUILTINS)}.")


@dataclass
class Recipe:
    """How a built-in model is trained (the command-line options of ``train``).

    ``init``: start from these weights instead of a new network (fine-tuning: the
    starting model is a candidate, BatchNorm statistics keep learning, no
    distillation, the starting model's class weights); ``lr`` defaults to 2e-3 for a
    new network and 5e-4 from ``init``. ``texture``, ``channel_jitter``: see
    :class:`~microseg.deep.augment.AugmentConfig`; ``topology_weight``: see
    :class:`~microseg.deep.train.TrainConfig`.
    """

    seed: int = 0
    batch: int = 8
    crop: int = 128
    n_synth: int = 8
    n_styled: int = 0
    tbm_repeat: int = 1
    styled_val: int = 3
    base: int = 8
    channel_jitter: float = 0.0
    texture: float = 0.0
    topology_weight: float = 0.0
    lr: float | None = None
    init: Path | None = None


def train(
    name: str,
    minutes: float,
    resume: bool,
    data: Path,
    threads: int,
    checkpoints: Path,
    out: Path,
    recipe: Recipe | None = None,
) -> Path:
    """Train (or resume training) built-in model ``name``; return the weights path."""
    import torch

    from microseg.deep import UNetSegmenter
    from microseg.deep.augment import AugmentConfig
    from microseg.deep.train import TrainConfig, Trainer

    r = recipe or Recipe()
    torch.set_num_threads(threads)
    t_load = time.perf_counter()
    d = build(name, data, r.n_synth, r.n_styled, r.tbm_repeat, r.styled_val)
    print(
        f"[{name}] loaded {len(d['images'])} training images in "
        f"{time.perf_counter() - t_load:.0f} s; split {d['split']}",
        file=sys.stderr,
    )
    init = UNetSegmenter.load(r.init) if r.init is not None else None
    tuning = {}
    if init is not None:
        tuning = {"freeze_norm": False, "distill": 0.0, "class_weights": "model"}
    cfg = TrainConfig(
        seconds=minutes * 60,
        batch=r.batch,
        crop=r.crop,
        seed=r.seed,
        lr=r.lr if r.lr is not None else (5e-4 if init is not None else 2e-3),
        zoom=d["zoom"],
        arch={**ARCH, "base": r.base},
        augment_config=AugmentConfig(channel_jitter=r.channel_jitter, texture=r.texture),
        topology_weight=r.topology_weight,
        eval_every=150.0 if init is not None else 180.0,
        preview_every=1e9,
        warmup_steps=50 if init is not None else 100,
        num_threads=threads,
        **tuning,
    )
    task = BUILTINS[name]["task"]
    trainer = Trainer(
        d["images"],
        d["targets"],
        cfg,
        init=init,
        task=task,
        classes=list(d["classes"]),
        val_images=d["val_images"],
        val_targets=d["val_targets"],
    )
    checkpoints.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoints / f"{name}.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        trainer.load_state_dict(state)
        print(
            f"[{name}] resumed at step {trainer.step}, {trainer.elapsed / 60:.1f} min",
            file=sys.stderr,
        )
    info = BUILTINS[name]

    def metadata() -> dict[str, Any]:
        return {
            "name": f"builtin:{name}",
            "description": info["description"],
            "data": info["data"],
            "citation": info["citation"],
            "held_out": info["held_out"],
            "split": d["split"],
            "pixel_size_um": info["pixel_size_um"],
            "object_diameter_px": d["object_diameter_px"] or info["object_diameter_px"],
            "training_script": "python -m microseg.zoo train " + name,
            "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(r).items()},
        }

    trainer.base_meta.update(metadata())
    last = [time.perf_counter()]

    def save_checkpoint() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save(trainer.state_dict(), tmp)
        tmp.replace(ckpt)
        trainer.result().save(checkpoints / f"{name}_best.safetensors")

    def progress(p) -> None:  # noqa: ANN001
        now = time.perf_counter()
        if now - last[0] >= 60:
            last[0] = now
            save_checkpoint()
            best = trainer.best_score
            print(
                f"[{name}] step {p.step} {p.seconds / 60:.1f} min loss {trainer.smooth:.4f} "
                f"best val F1 {best if best is None else round(best, 4)} "
                f"(step {trainer.best_step})",
                file=sys.stderr,
                flush=True,
            )

    model = trainer.run(progress=progress)
    save_checkpoint()
    out.mkdir(parents=True, exist_ok=True)
    path = model.save(out / f"{name}.safetensors")
    print(
        f"[{name}] wrote {path} after {trainer.step} steps, {trainer.elapsed / 60:.1f} min; "
        f"best val F1 {trainer.best_score}",
        file=sys.stderr,
    )
    return path


def stats_images(name: str, data: Path) -> list[np.ndarray]:
    """The training images whose feature statistics a built-in model records: for
    nuclei every 4th DSB training image, for grains the TBM training tiles and the
    synthetic images (the styled ones too when the model was trained on them)."""
    if name == "nuclei":
        return load_dsb(data, nuclei_split(data)["train"][::4])[0]
    d = build(name, data, 8, 0)
    return list(d["images"])


def record_stats(path: Path, data: Path, n_styled: int | None = None) -> dict[str, Any]:
    """Record the feature statistics of the model at ``path`` over its training images
    (:func:`microseg.deep.familiarity.record_feature_stats`) in its file."""
    from microseg.deep import UNetSegmenter
    from microseg.deep.familiarity import record_feature_stats

    model = UNetSegmenter.load(path)
    name = "nuclei" if model.task == "nuclei" else "grains"
    images = stats_images(name, data)
    if name == "grains":
        k = (
            n_styled
            if n_styled is not None
            else int(model.metadata.get("recipe", {}).get("n_styled", 0))
        )
        images += styled_grain_data(k)[0]
    stats = record_feature_stats(model, images, crops_per_image=4 if name == "nuclei" else 6)
    model.save(path)
    print(
        f"[{name}] feature statistics of {stats['n_crops']} crops of {stats['n_images']} "
        f"training images written to {path}",
        file=sys.stderr,
    )
    return stats


def calibrate_nuclei(path: Path, data: Path, limit: int | None = None) -> dict[str, Any]:
    """Choose the instance settings of the nuclei model at ``path`` on the DSB validation
    split (never trained on; its first ``limit`` images when given) and store them in its
    file (``metadata["instances"]``)."""
    from microseg.deep import UNetSegmenter
    from microseg.thresholds import choose_instance_settings

    model = UNetSegmenter.load(path)
    ids = nuclei_split(data)["val"][:limit]
    images, labels = load_dsb(data, ids)
    probas = [model.predict_proba(im, object_diameter_px="auto") for im in images]
    chosen = choose_instance_settings(probas, labels, model.classes)
    chosen["chosen_on"] = (
        f"DSB 2018 validation split (index % 20 == 5 of the sorted ids, {len(ids)} images), "
        "pooled AP@0.5, images rescaled to the training nucleus size when it differs by 1.5x"
    )
    model.metadata["instances"] = chosen
    model.save(path)
    print(
        f"[nuclei] instance settings: threshold {chosen['threshold']}, h fraction "
        f"{chosen['h_fraction']} (val AP@0.5 {chosen['ap']} vs {chosen['ap_default']} at 0.5)",
        file=sys.stderr,
    )
    return chosen


def main(argv: list[str] | None = None) -> int:
    """Command line: ``train NAME [--minutes M] [--resume] ...`` and ``calibrate nuclei``."""
    ap = argparse.ArgumentParser(
        prog="python -m microseg.zoo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    tp = sub.add_parser("train", help="train a built-in model")
    tp.add_argument("name", choices=sorted(BUILTINS))
    tp.add_argument("--minutes", type=float, default=40.0, help="total training time")
    tp.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    tp.add_argument("--data", type=Path, default=default_data_dir())
    tp.add_argument("--threads", type=int, default=1)
    tp.add_argument("--checkpoints", type=Path, default=REPO / "checkpoints")
    tp.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--batch", type=int, default=8)
    tp.add_argument("--crop", type=int, default=128)
    tp.add_argument("--synthetic", type=int, default=8, help="grains: synthetic images added")
    tp.add_argument(
        "--styles",
        type=int,
        default=0,
        help="grains: images in the styles of microseg.synth_styles added (SEM, optical, tint...)",
    )
    tp.add_argument(
        "--tbm-repeat",
        type=int,
        default=1,
        help="grains: each TBM training tile counts this many times (0: TBM left out)",
    )
    tp.add_argument(
        "--styled-val",
        type=int,
        default=3,
        help="grains: styled images in the validation set (with --styles)",
    )
    tp.add_argument("--base", type=int, default=8, help="channels of the first U-Net level")
    tp.add_argument(
        "--channel-jitter", type=float, default=0.0, help="per-channel gain range (colour images)"
    )
    tp.add_argument("--topology", type=float, default=0.0, help="weight of the clDice loss")
    tp.add_argument("--texture", type=float, default=0.0, help="uneven-staining augmentation")
    tp.add_argument("--lr", type=float, default=None, help="peak learning rate")
    tp.add_argument("--init", type=Path, default=None, help="start from these weights")
    cp = sub.add_parser(
        "calibrate", help="choose a nuclei model's instance settings on the validation split"
    )
    cp.add_argument("name", choices=["nuclei"])
    cp.add_argument("--weights", type=Path, default=WEIGHTS_DIR / "nuclei.safetensors")
    cp.add_argument("--data", type=Path, default=default_data_dir())
    sp = sub.add_parser(
        "stats", help="record a built-in model's feature statistics over its training images"
    )
    sp.add_argument("name", choices=sorted(BUILTINS))
    sp.add_argument("--weights", type=Path, default=None)
    sp.add_argument("--data", type=Path, default=default_data_dir())
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        print(f"The data folder {a.data} does not exist.", file=sys.stderr)
        return 2
    if a.cmd == "train":
        for what, folder in (("--out", a.out), ("--checkpoints", a.checkpoints)):
            if folder.exists() and not folder.is_dir():
                print(f"{what} must be a folder; {folder} is a file.", file=sys.stderr)
                return 2
    if a.cmd == "calibrate":
        calibrate_nuclei(a.weights, a.data)
        return 0
    if a.cmd == "stats":
        record_stats(a.weights or WEIGHTS_DIR / f"{a.name}.safetensors", a.data)
        return 0
    recipe = Recipe(
        seed=a.seed,
        batch=a.batch,
        crop=a.crop,
        n_synth=a.synthetic,
        n_styled=a.styles,
        tbm_repeat=a.tbm_repeat,
        styled_val=a.styled_val,
        base=a.base,
        channel_jitter=a.channel_jitter,
        texture=a.texture,
        topology_weight=a.topology,
        lr=a.lr,
        init=a.init,
    )
    path = train(a.name, a.minutes, a.resume, a.data, a.threads, a.checkpoints, a.out, recipe)
    if a.name == "nuclei":
        calibrate_nuclei(path, a.data)
    record_stats(path, a.data, recipe.n_styled)
    return 0
