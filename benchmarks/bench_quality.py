"""Do the quality checks flag the results that are wrong, and only those? (issue 17)

Every result is scored against ground truth and checked with :mod:`microseg.quality`;
the report prints, per check and for the verdict, how often it flags a **bad** result
and how often a **good** one.

Grains (bad: boundary F1 (2 px) < 0.5 or |ΔG planimetric| > 0.5 vs the reference's
grain map; for Ti-6Al-4V, whose reference has gaps that merge grains, F1 alone): NIST steel, TBM tiles of micrographs 18-20 and the SEM Ti-6Al-4V micrograph
(NIST's algorithmic boundaries as reference), each with

* ``builtin``  ``builtin:grains``;
* ``rf``       the random forest on the image's strokes (Ti-6Al-4V: strokes made from
  the reference, as in ``bench_adapt``);
* ``rf-other`` a random forest trained on another kind of image (NIST steel's strokes;
  for NIST steel, a TBM tile's): a wrong model;

on the image as it is and transformed to look unlike any training image: inverted,
heavy noise, blurred, and downscaled 4x (the reference transformed alike).

Nuclei (bad: AP@0.5 < 0.5): DSB 2018 held-out images (``builtin:nuclei``'s test split),
the four fully annotated GOWT1 frames, the same transforms, and the nuclei model on the
grain images (no nuclei there: any object found is wrong).

Targets (issue 17): >= 90 % of bad results flagged ``check`` or ``do_not_trust``,
<= 10 % of good results flagged.

The focus check's thresholds (:data:`microseg.quality.BLUR_EDGE_PX`) were looked at on
the first 20 DSB held-out images; ``--dsb-from 20`` scores images they were not.

``python benchmarks/bench_quality.py [--out FILE] [--dsb 20] [--dsb-from 0] [--tiles 10]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_adapt as adapt  # noqa: E402
import bench_grains_accuracy as acc  # noqa: E402

from microseg.quality import (  # noqa: E402
    CHECK,
    DO_NOT_TRUST,
    Quality,
    grain_quality,
    model_unfamiliarity,
    nuclei_quality,
)

DATA = acc.DATA
F1_BAD, DG_BAD, AP_BAD = 0.5, 0.5, 0.5


# ------------------------------------------------------------------ transforms
def _grey01(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image, np.float32)
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)


def transforms() -> dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    """Image transforms that make an image unlike training (values back to 0-255)."""
    from scipy import ndimage as ndi

    def inverted(x, rng):  # noqa: ANN001, ANN202
        return 255 * (1 - _grey01(x))

    def noisy(x, rng):  # noqa: ANN001, ANN202
        return 255 * np.clip(_grey01(x) + rng.normal(0, 0.35, x.shape), 0, 1)

    def blurred(x, rng):  # noqa: ANN001, ANN202
        sig = (0, 4, 4) if x.ndim == 3 else 4
        return 255 * _grey01(ndi.gaussian_filter(np.asarray(x, np.float32), sig))

    return {"as is": lambda x, rng: x, "inverted": inverted, "noise": noisy, "blurred": blurred}


def downscale(a: np.ndarray, f: int, order: int) -> np.ndarray:
    """``a`` (``(Y, X)`` or ``(C, Y, X)``) reduced ``f`` times (area mean or nearest)."""
    from skimage.transform import resize

    shape = a.shape[:-2] + (a.shape[-2] // f, a.shape[-1] // f)
    if order == 0:
        return a[..., ::f, ::f][..., : shape[-2], : shape[-1]]
    return resize(np.asarray(a, np.float32), shape, order=1, anti_aliasing=True,
                  preserve_range=True)  # fmt: skip


# ------------------------------------------------------------------ grains
def grain_result(model, image: np.ndarray, gt_boundary: np.ndarray, ps: float | None,  # noqa: ANN001
                 f1_only: bool = False) -> dict:  # fmt: skip
    """Truth scores and the quality verdict of one grain map (``f1_only``: the reference
    has gaps, so its grain sizes are not truth: bad by F1 alone)."""
    from microseg.astm import grain_summary
    from microseg.grains import grain_map, grain_map_from_boundaries

    need = getattr(model, "n_channels", None)  # a random forest wants its own channel count
    if need == 3 and image.ndim == 2:
        image = np.repeat(image[None], 3, axis=0)
    elif need == 1 and image.ndim == 3:
        image = image.mean(axis=0)
    proba = acc.boundary_proba(model, image)
    labels = grain_map(proba)
    u = model_unfamiliarity(model, image)
    q = grain_quality(labels, grain_summary(labels, ps), proba, ps, unfamiliarity=u)
    gt_labels = grain_map_from_boundaries(gt_boundary)
    f1 = acc.pixel_f1(gt_boundary, proba)
    dg = acc.measure(labels, ps)["g_plan"] - acc.measure(gt_labels, ps)["g_plan"]
    bad = not (f1 >= F1_BAD) or (not f1_only and not (abs(dg) <= DG_BAD))
    return {"bad": bad, "quality": q, "f1": f1, "dg": dg}


def grain_cases(n_tiles: int) -> list[acc.Case]:
    """NIST steel, TBM 18-20 tiles and Ti-6Al-4V."""
    cases = [acc.nist_case()] + [acc.tbm_case(n) for n in acc.heldout_tiles()[:n_tiles]]
    return cases + [adapt.ti64_case()]


def bench_grains(n_tiles: int, log) -> list[dict]:  # noqa: ANN001
    from scipy import ndimage as ndi

    from microseg.zoo import load_builtin

    builtin = load_builtin("grains")
    cases = grain_cases(n_tiles)
    rf_nist = acc.fit_rf(cases[0])
    rf_tbm = acc.fit_rf(cases[1])
    rows = []
    for case in cases:
        t0 = time.perf_counter()
        models = {"builtin": builtin, "rf": acc.fit_rf(case),
                  "rf-other": rf_tbm if case.group == "nist" else rf_nist}  # fmt: skip
        for tname, tf in transforms().items():
            rng = np.random.default_rng(0)
            img = tf(case.image, rng)
            for mname, model in models.items():
                r = grain_result(model, img, case.gt_boundary, case.pixel_size_um,
                                 f1_only=case.group == "sem")  # fmt: skip
                rows.append({"image": case.name, "model": mname, "transform": tname, **r})
        # 4x smaller: the reference's grain map downscaled alike
        from microseg.grains import grain_map_from_boundaries

        gt_lab = downscale(grain_map_from_boundaries(case.gt_boundary), 4, 0)
        gt_small = (ndi.maximum_filter(gt_lab, 3) != ndi.minimum_filter(gt_lab, 3)) | (gt_lab == 0)
        small = downscale(case.image, 4, 1)
        ps = case.pixel_size_um * 4 if case.pixel_size_um else None
        for mname, model in models.items():
            r = grain_result(model, small, gt_small, ps, f1_only=case.group == "sem")
            rows.append({"image": case.name, "model": mname, "transform": "1/4 size", **r})
        log(f"  grains {case.name}: {time.perf_counter() - t0:.0f} s")
    return rows


# ------------------------------------------------------------------ nuclei
def nuclei_result(model, image: np.ndarray, gt: np.ndarray | None) -> dict:  # noqa: ANN001
    """AP@0.5 and the quality verdict of one nuclei segmentation (``gt`` None: no nuclei)."""
    from microseg.metrics import average_precision
    from microseg.nuclei import FrameSegmenter

    seg = FrameSegmenter(model)
    proba = seg.probabilities(image)
    labels = seg.instances(proba)
    u = model_unfamiliarity(model, seg.model_input(image), zoom=seg.network_zoom(labels))
    q = nuclei_quality(
        labels,
        proba,
        list(model.classes),
        None,
        None,
        unfamiliarity=u,
        image=seg.model_input(image),
    )
    if gt is None:
        ap = 1.0 if labels.max() == 0 else 0.0
    else:
        ap = float(average_precision(gt, labels, (0.5,)).ap[0])
    return {"bad": ap < AP_BAD, "quality": q, "ap": ap}


def nuclei_cases(n_dsb: int, first: int = 0) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """DSB held-out images, GOWT1 annotated frames, and grain images (no nuclei)."""
    import tifffile

    sys.path.insert(0, str(HERE.parents[0]))
    from microseg.zoo.train_builtin import load_dsb, nuclei_split

    ids = nuclei_split(DATA)["test"][first : first + n_dsb]
    images, labels = load_dsb(DATA, ids)
    cases = [(f"dsb {i[:8]}", im, lab) for i, im, lab in zip(ids, images, labels, strict=True)]
    root = DATA / "timelapse" / "ctc_gowt1_01"
    for t in ("021", "031", "033", "039"):
        im = tifffile.imread(root / "01" / f"t{t}.tif")
        gt = tifffile.imread(root / "01_GT" / "SEG" / f"man_seg{t}.tif")
        cases.append((f"gowt1 t{t}", im, gt))
    for c in [acc.nist_case()] + [acc.tbm_case(n) for n in acc.heldout_tiles()[:2]]:
        im = c.image.mean(axis=0) if c.image.ndim == 3 else c.image
        cases.append((f"grains {c.name}", im, None))
    return cases


def bench_nuclei(n_dsb: int, log, first: int = 0) -> list[dict]:  # noqa: ANN001
    from microseg.zoo import load_builtin

    model = load_builtin("nuclei")
    rows = []
    for name, image, gt in nuclei_cases(n_dsb, first):
        t0 = time.perf_counter()
        for tname, tf in transforms().items():
            if gt is None and tname != "as is":
                continue
            img = tf(image, np.random.default_rng(0))
            r = nuclei_result(model, img, gt)
            rows.append({"image": name, "model": "builtin", "transform": tname, **r})
        if gt is not None:
            r = nuclei_result(model, downscale(image, 4, 1), downscale(gt, 4, 0))
            rows.append({"image": name, "model": "builtin", "transform": "1/4 size", **r})
        log(f"  nuclei {name}: {time.perf_counter() - t0:.0f} s")
    return rows


# ------------------------------------------------------------------ report
def flag_table(rows: list[dict], title: str) -> list[str]:
    """Per check and for the verdict: share of bad and of good results flagged."""
    bad = [r for r in rows if r["bad"]]
    good = [r for r in rows if not r["bad"]]

    def flagged(r: dict, check: str | None) -> bool:
        q: Quality = r["quality"]
        if check is None:
            return q.verdict in (CHECK, DO_NOT_TRUST)
        return any(f.check == check and f.level in (CHECK, DO_NOT_TRUST) for f in q.findings)

    checks = sorted({f.check for r in rows for f in r["quality"].findings})
    out = [f"## {title}: {len(rows)} results, {len(bad)} bad, {len(good)} good", ""]
    out.append(f"{'check':<28}{'bad flagged':>12}{'good flagged':>14}")
    for c in [None, *checks]:
        nb = sum(flagged(r, c) for r in bad)
        ng = sum(flagged(r, c) for r in good)
        name = "VERDICT (check or worse)" if c is None else c
        out.append(
            f"{name:<28}{_pct(nb, len(bad)):>12}{_pct(ng, len(good)):>14}"
            f"   ({nb}/{len(bad)}, {ng}/{len(good)})"
        )
    nd = sum(r["quality"].verdict == DO_NOT_TRUST for r in bad)
    ngd = sum(r["quality"].verdict == DO_NOT_TRUST for r in good)
    out.append(f"{'verdict do_not_trust':<28}{_pct(nd, len(bad)):>12}{_pct(ngd, len(good)):>14}")
    return out + [""]


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:.0f} %" if n else "—"


def detail(rows: list[dict], score: str) -> list[str]:
    """One line per result: truth, verdict and the findings that fired."""
    out = []
    for r in rows:
        q: Quality = r["quality"]
        fired = ", ".join(f"{f.check}" for f in q.findings if f.level != "info") or "-"
        s = f"F1 {r['f1']:.2f} ΔG {r['dg']:+.2f}" if score == "grains" else f"AP {r['ap']:.2f}"
        out.append(
            f"{r['image']:<18}{r['model']:<10}{r['transform']:<10}{s:<20}"
            f"{'BAD' if r['bad'] else 'good':<6}{q.verdict:<14}{fired}"
        )
    return out


def _dumpable(section: str, r: dict) -> dict:
    q: Quality = r["quality"]
    keep = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in r.items() if k != "quality"}  # fmt: skip
    return {"section": section, **keep, **q.to_json()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) its report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--tiles", type=int, default=10, help="TBM 18-20 tiles")
    ap.add_argument("--dsb", type=int, default=20, help="DSB held-out images")
    ap.add_argument(
        "--dsb-from",
        type=int,
        default=0,
        help="first DSB held-out image (20: images no threshold was set on)",
    )
    ap.add_argument("--sections", default="grains,nuclei")
    ap.add_argument("--dump", type=Path, default=None, help="write every result's checks (JSON)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    sections = a.sections.split(",")
    out = [
        f"$ python benchmarks/bench_quality.py --tiles {a.tiles} --dsb {a.dsb}"
        f" --dsb-from {a.dsb_from}"
        f" --sections {a.sections}",
        f"Quality checks vs ground truth (issue 17); python {platform.python_version()}; "
        f"bad grains: F1 < {F1_BAD} or |ΔG| > {DG_BAD}; bad nuclei: AP@0.5 < {AP_BAD}",
        "",
    ]
    details: list[str] = []
    dump: list[dict] = []
    if "grains" in sections:
        rows = bench_grains(a.tiles, log)
        dump += [_dumpable("grains", r) for r in rows]
        out += flag_table(rows, "grains")
        details += ["## grains, per result", *detail(rows, "grains"), ""]
    if "nuclei" in sections:
        rows = bench_nuclei(a.dsb, log, a.dsb_from)
        dump += [_dumpable("nuclei", r) for r in rows]
        out += flag_table(rows, "nuclei")
        details += ["## nuclei, per result", *detail(rows, "nuclei"), ""]
    out += details + [f"total {time.perf_counter() - t0:.0f} s"]
    if a.dump:
        import json

        a.dump.write_text(json.dumps(dump, indent=0), encoding="utf-8")
    text = "\n".join(out)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
