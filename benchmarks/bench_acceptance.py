"""Does the score that decides whether a fine-tuned U-Net replaces its starting model
follow the boundary F1 a user cares about? (issue 16)

Fine-tuning from strokes holds out a fifth of the stroke pieces and keeps the starting
model unless the trained one scores higher on them by a margin
(:func:`microseg.deep.train.replace_margin`). This benchmark fine-tunes as the app
does (``TrainConfig`` defaults) and, at every validation, records the held-out-stroke
score beside the boundary F1 (2 px) of the model at that moment against the full
reference. Per image it prints the starting and last state, the Spearman correlation
of the two over the run, and the F1 the run would end at if the starting model were
replaced at a margin of 0.1 (the rule now, for few held-out strokes), 0.05, 0.02 or 0.

``python benchmarks/bench_acceptance.py [--weights FILE] [--images a,b] [--seconds 120] [--out FILE]``
(images: ``ti64_sem``, ``nist_steel`` and tbm tile names such as ``18-0-0``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_adapt as ba  # noqa: E402
import bench_grains_accuracy as acc  # noqa: E402

from microseg.metrics import boundary_f1  # noqa: E402

MARGINS = (0.1, 0.05, 0.02, 0.0)


def trajectory(init, case: acc.Case, seconds: float, **config: object) -> dict:  # noqa: ANN001
    """(step, held-out score, boundary F1 of the pixels, boundary F1 of the grain map) at
    every validation of the app's fine-tuning."""
    from microseg.deep import TrainConfig
    from microseg.deep.train import Trainer
    from microseg.grains import grain_map, grain_map_from_boundaries

    gt_lines = grain_map_from_boundaries(case.gt_boundary) == 0
    rec: list[tuple[int, float, float, float]] = []

    class Recording(Trainer):
        def validate(self) -> float | None:
            score = super().validate()
            step = getattr(self, "step", 0)  # also called while the trainer is set up
            if score is not None and (not rec or rec[-1][0] != step):
                proba = self._predict(self.data.x[0])[-1]
                f1 = boundary_f1(case.gt_boundary, proba >= 0.5, acc.TOLERANCE_PX).f1
                lines = grain_map(proba) == 0
                f1_map = boundary_f1(gt_lines, lines, acc.TOLERANCE_PX).f1
                rec.append((step, float(score), float(f1), float(f1_map)))
            return score

    cfg = TrainConfig(seconds=seconds, preview_every=1e9, **config)
    tr = Recording(
        [case.image], [case.strokes], cfg, init=init, task=init.task, classes=list(init.classes)
    )
    tr.run()
    return {"rec": rec, "margin": tr.replace_margin, "teacher": tr.teacher}


def ended_at(rec: list[tuple[float, ...]], margin: float) -> tuple[float, ...]:
    """The record of the model a run keeps when replacing the starting one needs ``margin``."""
    s0, kept = rec[0][1], rec[0]
    best, replaced = s0, False
    for r in rec[1:]:
        score = r[1]
        if (not replaced and score > s0 + max(margin, 1e-6)) or (replaced and score > best + 1e-6):
            best, kept, replaced = score, r, True
    return kept


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho (nan when either side is constant)."""
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None, help="a grains U-Net file instead of builtin:grains")
    ap.add_argument("--images", default="ti64_sem,nist_steel,18-0-0,18-256-256,18-256-768")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="a TrainConfig field other than the app's (as bench_adapt.py --set)")  # fmt: skip
    ap.add_argument("--crop", type=int, default=0, help="crop every image (smoke runs)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    init = acc.load_init(a.weights)
    out = [f"$ python benchmarks/bench_acceptance.py {' '.join(argv if argv is not None else sys.argv[1:])}",
           f"Held-out-stroke score vs boundary F1 while fine-tuning (issue 16); python "
           f"{platform.python_version()}; code: microseg/deep/train.py sha256 {acc.TRAIN_CODE[:12]}",
           "", f"{'image':<12}{'start score/F1/map':>20}{'last score/F1/map':>20}{'rho':>7}  "
           + "  ".join(f"F1@m{m:g}" for m in MARGINS) + f"  {'kept F1/map':>12}"]  # fmt: skip
    for name in a.images.split(","):
        if name == "ti64_sem":
            case = ba.ti64_case(a.crop or None)
        elif name == "nist_steel":
            case = acc.nist_case(a.crop or None)
        else:
            case = acc.tbm_case(name, a.crop or None)
        t = trajectory(init, case, a.seconds, **ba.config_overrides(a.set))
        rec = t["rec"]
        if not rec:
            out.append(f"{name:<12}  too few strokes to hold some out: no acceptance test")
            continue
        rho = spearman([r[1] for r in rec], [r[2] for r in rec])
        print(f"{name}: {len(rec)} validations, teacher {t['teacher']}, margin {t['margin']:.3f}",
              file=sys.stderr, flush=True)  # fmt: skip
        kept = ended_at(rec, t["margin"])
        out.append(f"{name:<12}{rec[0][1]:>8.3f}/{rec[0][2]:.3f}/{rec[0][3]:.3f}"
                   f"{rec[-1][1]:>8.3f}/{rec[-1][2]:.3f}/{rec[-1][3]:.3f}{rho:>7.2f}  "
                   + "  ".join(f"{ended_at(rec, m)[2]:>7.3f}" for m in MARGINS)
                   + f"  {kept[2]:>6.3f}/{kept[3]:.3f}")  # fmt: skip
    out += ["", "score: macro pixel F1 on the held-out strokes; F1: boundary F1 (2 px) of the "
            "pixel boundaries vs the reference; map: the same for the lines of the grain map "
            "(microseg.grains.grain_map) vs those of the reference's; rho (score vs F1) over the "
            "validations of the run; F1@m: where the run ends when replacing the starting model "
            "needs a held-out gain of m; kept: where it ends with the app's margin "
            "(microseg.deep.train.replace_margin)"]  # fmt: skip
    acc.finish_report(out, t_start, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
