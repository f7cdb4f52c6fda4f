"""Two grain models side by side on images left out of both: does a generalist keep its
figures? (issue 16, part 3)

``--a`` (default: the committed ``builtin:grains``) and ``--b`` (a candidate, e.g. trained
with ``python -m microseg.zoo train grains --styles N``) are scored, as they are (no
fine-tuning), on

* NIST steel and the TBM tiles of micrographs 18-20 (held out of both trainings): boundary
  F1 (2 px), grains, and the pooled mean-intercept error over the TBM tiles (summed
  intercepts and line lengths);
* the SEM Ti-6Al-4V micrograph (a kind neither saw; its reference is NIST's algorithmic
  segmentation with gaps): boundary F1;
* styled synthetic grain images of :mod:`microseg.synth_styles` on seeds never trained on
  (20000+): boundary F1 per style.

Beside each: the image's unfamiliarity to the model (:mod:`microseg.deep.familiarity`).

``python benchmarks/bench_generalist.py --b NEW.safetensors [--a OLD] [--out FILE]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_adapt as adapt  # noqa: E402
import bench_grains_accuracy as acc  # noqa: E402

from microseg.deep.familiarity import unfamiliarity  # noqa: E402
from microseg.grains import grain_map, grain_map_from_boundaries  # noqa: E402

STYLE_SEED = 20000


def score(model, case: acc.Case) -> dict:  # noqa: ANN001
    """F1, grain statistics and unfamiliarity of a model on one case."""
    proba = acc.boundary_proba(model, case.image)
    m = acc.measure(grain_map(proba), case.pixel_size_um)
    return {"f1": acc.pixel_f1(case.gt_boundary, proba), **m,
            "unfam": unfamiliarity(model, case.image)}  # fmt: skip


def styled_cases(n_per_style: int) -> list[acc.Case]:
    """Styled synthetic images on seeds no training used."""
    from microseg.synth_styles import STYLES, synth_grain_style

    cases = []
    for i, style in enumerate(STYLES):
        for k in range(n_per_style):
            s = synth_grain_style((320, 320), seed=STYLE_SEED + 10 * i + k, style=style)
            im = s.image.astype(np.float32)
            im = np.moveaxis(im, -1, 0) if im.ndim == 3 else im
            cases.append(acc.Case(f"{style}-{k}", im, s.boundaries, None, None, group=style))
    return cases


def main(argv: list[str] | None = None) -> int:
    """Score both models and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", default=None, help="model A (default builtin:grains)")
    ap.add_argument("--b", required=True, help="model B")
    ap.add_argument("--styles", type=int, default=2, help="synthetic images per style")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    models = {"A": acc.load_init(a.a), "B": acc.load_init(a.b)}
    names = {"A": a.a or "builtin:grains", "B": a.b}
    out = [
        f"$ python benchmarks/bench_generalist.py --b {a.b}" + (f" --a {a.a}" if a.a else ""),
        f"Two grain models on left-out images (issue 16); python {platform.python_version()}",
        *(
            f"{k}: {names[k]} ({models[k].metadata.get('training', {}).get('steps', '?')} steps)"
            for k in models
        ),  # fmt: skip
        "F1: boundary F1 (2 px) of p >= 0.5; u: unfamiliarity (about 1 on training-like images)",
        "",
        f"{'image':<16}{'GT grains':>10}"
        + "".join(f"{k + ' F1':>8}{k + ' grains':>10}{k + ' u':>6}" for k in models),  # fmt: skip
    ]
    tbm = [acc.tbm_case(n) for n in acc.heldout_tiles()]
    real = [acc.nist_case(), *tbm, adapt.ti64_case()]
    rows: dict[str, dict[str, dict]] = {}
    for case in real + styled_cases(a.styles):
        gt = acc.measure(grain_map_from_boundaries(case.gt_boundary), case.pixel_size_um)
        rows[case.name] = {"GT": gt, **{k: score(m, case) for k, m in models.items()}}
        r = rows[case.name]
        out.append(f"{case.name:<16}{gt['n_grains']:>10}" + "".join(
            f"{r[k]['f1']:>8.3f}{r[k]['n_grains']:>10}"
            f"{(r[k]['unfam'] if r[k]['unfam'] is not None else float('nan')):>6.2f}"
            for k in models))  # fmt: skip
        print(out[-1], file=sys.stderr, flush=True)
    out.append("")
    gt_rows = [rows[c.name]["GT"] for c in tbm]
    gt_pool = acc.pooled(gt_rows, acc.NOMINAL_PX_UM)
    for k in models:
        pool = acc.pooled([rows[c.name][k] for c in tbm], acc.NOMINAL_PX_UM)
        err = 100 * (pool["mean_intercept"] / gt_pool["mean_intercept"] - 1)
        f1 = np.mean([rows[c.name][k]["f1"] for c in tbm])
        styled = [v[k]["f1"] for n, v in rows.items() if n not in {c.name for c in real}]
        out.append(f"{k}: TBM 18-20 mean F1 {f1:.3f}, pooled mean-intercept error {err:+.1f} %; "
                   f"NIST F1 {rows['nist_steel'][k]['f1']:.3f}; Ti-6Al-4V F1 "
                   f"{rows['ti64_sem'][k]['f1']:.3f}; styled synthetic mean F1 "
                   f"{np.mean(styled):.3f}")  # fmt: skip
    out.append(f"total {time.perf_counter() - t0:.0f} s")
    text = "\n".join(out)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
