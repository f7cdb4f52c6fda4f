"""Machine learning versus deep learning on grain boundaries, with the same strokes (issue 6).

Sections (``--sections``, comma separated; default both):

* ``tbm``    every ``grains/tbm`` tile of micrographs 18-20 (unseen by ``builtin:grains``;
             ``--all-tiles`` adds the tiles of micrographs 10-17, which it was trained on
             or selected with, labelled as such) with the supplied strokes: the random
             forest and the U-Net (``builtin:grains`` fine-tuned on the strokes, as the
             app trains it by default; ``builtin:grains`` as is beside them): boundary F1,
             grain counts and mean intercepts against the ground truth, and how the grain
             size distribution differs (merged and split grains).
* ``synth``  :func:`microseg.synth.synth_grains` microstructures with many faint
             boundaries, strokes drawn from the exact truth on about 1-2 % of the pixels:
             does a model merge grains (fewer, larger grains; median area up)?

The models, fine-tuning recipe and grain maps are those of
``benchmarks/bench_grains_accuracy.py`` (shared code and ``--cache``).

``python benchmarks/bench_ml_vs_dl.py [--out FILE] [--cache DIR]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_grains_accuracy as acc  # noqa: E402

from microseg.grains import fill_boundaries  # noqa: E402
from microseg.metrics import overlaps  # noqa: E402

LABELS = {"rf": "random forest", "fine-tuned": "U-Net fine-tuned", "builtin": "builtin as is"}
ORDER = ("rf", "fine-tuned", "builtin")


# ------------------------------------------------------------------ strokes from truth
def strokes_from_truth(
    boundaries: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    n_interior: int | None = None,
    n_boundary: int | None = None,
) -> np.ndarray:
    """Short strokes a user would paint (1 grain interior, 2 grain boundary).

    Interior: a short line through the deepest point of ``n_interior`` random grains;
    boundary: the traced boundary within 6 px of ``n_boundary`` random boundary points.
    The default numbers scale with the image area (25 and 30 on 384x384, about 1.5 %
    of the pixels on a ``synth_grains`` image of 90 grains).
    """
    from scipy import ndimage as ndi
    from skimage import draw, morphology

    bnd = np.asarray(boundaries) != 0
    rng = np.random.default_rng(seed)
    h, w = bnd.shape
    scale = h * w / 384.0**2
    n_interior = max(3, round(25 * scale)) if n_interior is None else n_interior
    n_boundary = max(3, round(30 * scale)) if n_boundary is None else n_boundary
    inside = (labels > 0) & ~bnd
    dist = ndi.distance_transform_edt(inside)
    out = np.zeros(bnd.shape, np.uint8)
    ids = np.unique(labels[inside])
    peaks = np.asarray(ndi.maximum_position(dist, labels, ids), np.int64).reshape(-1, 2)
    depth = dist[peaks[:, 0], peaks[:, 1]]
    lines = np.zeros(bnd.shape, bool)
    for i in rng.permutation(np.flatnonzero(depth >= 4))[:n_interior]:
        cy, cx = peaks[i]
        half = int(min(depth[i] - 2, 10))
        ang = rng.uniform(0, np.pi)
        dy, dx = round(half * np.sin(ang)), round(half * np.cos(ang))
        rr, cc = draw.line(int(cy - dy), int(cx - dx), int(cy + dy), int(cx + dx))
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        lines[rr[ok], cc[ok]] = True
    out[ndi.binary_dilation(lines) & (dist >= 2)] = 1
    thin = morphology.skeletonize(bnd)
    pts = np.flatnonzero(thin)
    seeds = np.zeros(bnd.size, bool)
    seeds[rng.choice(pts, size=min(n_boundary, pts.size), replace=False)] = True
    zone = ndi.binary_dilation(seeds.reshape(bnd.shape), morphology.disk(6))
    out[zone & ndi.binary_dilation(thin) & bnd] = 2
    return out


def synth_case(seed: int, size: int, n_grains: int, faint: float) -> acc.Case:
    """A synthetic micrograph with faint boundaries, its exact truth and strokes."""
    from microseg.synth import synth_grains

    s = synth_grains((size, size), n_grains=n_grains, seed=seed, faint_fraction=faint)
    strokes = strokes_from_truth(s.boundaries, s.labels, seed=seed)
    return acc.Case(f"synth {seed}", s.image, s.boundaries, strokes, s.pixel_size_um, group="synth")


# ------------------------------------------------------------------ distributions
def merge_split(truth: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """Truth grains merged into one predicted grain with others (a predicted grain holds
    most of two or more of them) and truth grains split (two or more predicted grains
    lie mostly inside one), on boundary-filled maps."""
    o = overlaps(fill_boundaries(truth), fill_boundaries(pred))
    inter = o.intersection.astype(np.float64)
    t_in = inter > 0.5 * o.gt_area[o.gt_index]  # truth grain mostly inside the predicted one
    p_in = inter > 0.5 * o.pred_area[o.pred_index]  # predicted grain mostly inside the truth
    merging = np.bincount(o.pred_index[t_in], minlength=o.pred_ids.size) >= 2
    merged = np.unique(o.gt_index[t_in & merging[o.pred_index]]).size
    split = int((np.bincount(o.gt_index[p_in], minlength=o.gt_ids.size) >= 2).sum())
    return {"merged": int(merged), "split": split, "n_truth": int(o.gt_ids.size)}


def interior_areas(labels: np.ndarray) -> np.ndarray:
    """Areas (px) of the grains not cut by the image edge, boundaries shared out."""
    f = fill_boundaries(labels)
    area = np.bincount(f.ravel())
    edge = np.unique(np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]]))
    keep = np.ones(area.size, bool)
    keep[0] = False
    keep[edge] = False
    return area[keep & (area > 0)].astype(np.float64)


def distribution_rows(
    maps_list: Sequence[dict[str, np.ndarray]], models: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Pooled over images: counts, median area, merged/split shares and the Wasserstein
    distance between log10 area distributions (interior grains) vs the truth."""
    from scipy.stats import wasserstein_distance

    out: dict[str, dict[str, float]] = {}
    gt_a = np.concatenate([interior_areas(m["GT"]) for m in maps_list])
    for key in ("GT", *models):
        areas = np.concatenate([interior_areas(m[key]) for m in maps_list])
        n = sum(int(np.unique(m[key][m[key] > 0]).size) for m in maps_list)
        row = {
            "n": n,
            "median_area": float(np.median(areas)) if areas.size else float("nan"),
            "p90_area": float(np.percentile(areas, 90)) if areas.size else float("nan"),
        }
        if key != "GT":
            ms = [merge_split(m["GT"], m[key]) for m in maps_list]
            nt = sum(x["n_truth"] for x in ms)
            row["merged_pct"] = 100.0 * sum(x["merged"] for x in ms) / nt
            row["split_pct"] = 100.0 * sum(x["split"] for x in ms) / nt
            row["w1"] = (
                wasserstein_distance(np.log10(gt_a), np.log10(areas))
                if areas.size
                else float("nan")
            )
        out[key] = row
    return out


def _dist_table(rows: dict[str, dict[str, float]], models: Sequence[str], unit: str) -> list[str]:
    gt = rows["GT"]
    lines = [
        f"{'':<18}{'grains':>7}{'Δ%':>6}{'median area':>14}{'×GT':>6}{'p90 area':>11}{'×GT':>6}"
        f"{'merged %':>9}{'split %':>8}{'W1 log10':>9}"
    ]
    for key in ("GT", *models):
        r = rows[key]
        name = "ground truth" if key == "GT" else LABELS[key]
        is_gt = key == "GT"
        lines.append(
            f"{name:<18}{r['n']:>7d}{'' if is_gt else format(100 * (r['n'] / gt['n'] - 1), '+.0f'):>6}"
            f"{format(r['median_area'], '.1f') + ' ' + unit:>14}"
            f"{'' if is_gt else format(r['median_area'] / gt['median_area'], '.2f'):>6}"
            f"{format(r['p90_area'], '.0f'):>11}"
            f"{'' if is_gt else format(r['p90_area'] / gt['p90_area'], '.2f'):>6}"
            f"{'' if is_gt else format(r['merged_pct'], '.1f'):>9}"
            f"{'' if is_gt else format(r['split_pct'], '.1f'):>8}"
            f"{'' if is_gt else format(r['w1'], '.3f'):>9}"
        )
    return lines


# ------------------------------------------------------------------ sections
def tile_sets() -> dict[str, str]:
    """tbm tile name → "unseen", "seen (trained)" or "seen (model selection)"."""
    from microseg.zoo.train_builtin import grains_split

    split = grains_split(acc.DATA)
    out = {n: "unseen" for n in split["test"]}
    out.update({n: "seen (trained)" for n in split["train"]})
    out.update({n: "seen (selection)" for n in split["val"]})
    return out


def section_tbm(a: argparse.Namespace, init, out: list[str], log, info: list) -> None:  # noqa: ANN001
    sets = tile_sets()
    names = a.tiles.split(",") if a.tiles else acc.heldout_tiles()
    if a.all_tiles:
        names = sorted(sets, key=lambda n: (sets[n] != "unseen", n))
    head = f"{'tile':<13}{'set':<17}{'GT n':>5}{'GT int':>7}"
    for m in ORDER:
        head += f" | {m:<10}{'F1':>5}{'n':>5}{'int':>6}"
    out.append(
        "## grains/tbm with the supplied strokes: boundary F1 (2 px, pixels), grain count n "
        "and Heyn mean intercept (px) vs GT"
    )
    out.append(
        "rf = random forest on the strokes; fine-tuned = builtin:grains fine-tuned "
        f"{a.seconds:.0f} s on the strokes (the app's default deep path); builtin = as is"
    )
    out.append(head)
    per_set: dict[str, list[tuple[dict, dict]]] = {}
    for n in names:
        case = acc.tbm_case(n, a.crop)
        log(f"{n} ...")
        res = acc.run_models(case, init, a.seconds, acc.curve_marks(a.seconds), a.cache, log)
        info.append(res)
        maps = acc.grain_maps(case, res)
        sc = acc.score_case(case, res, maps)
        per_set.setdefault(sets.get(n, "unseen"), []).append((sc, maps))
        row = f"{n:<13}{sets.get(n, '?'):<17}{sc['GT']['n_grains']:>5d}"
        row += f"{sc['GT']['mean_intercept']:>7.1f}"
        for m in ORDER:
            r = sc[m]
            row += f" | {'':<10}{r['f1_px']:>5.2f}{r['n_grains']:>5d}{r['mean_intercept']:>6.1f}"
        out.append(row)
    for s, items in per_set.items():
        pool = {
            k: acc.pooled([sc[k] for sc, _ in items], acc.NOMINAL_PX_UM) for k in ("GT", *ORDER)
        }
        row = (
            f"{'pooled':<13}{s:<17}{pool['GT']['n_grains']:>5d}{pool['GT']['mean_intercept']:>7.1f}"
        )
        for m in ORDER:
            f1 = np.mean([sc[m]["f1_px"] for sc, _ in items])
            row += (
                f" | {'':<10}{f1:>5.2f}{pool[m]['n_grains']:>5d}{pool[m]['mean_intercept']:>6.1f}"
            )
        out.append(row)
    for s, items in per_set.items():
        out.append("")
        out.append(f"grain-size distribution, tbm {s} tiles pooled ({len(items)}), areas in px:")
        out.extend(_dist_table(distribution_rows([mp for _, mp in items], ORDER), ORDER, "px"))
    unseen = per_set.get("unseen", [])
    if unseen:
        f_rf = np.mean([sc["rf"]["f1_px"] for sc, _ in unseen])
        f_dl = np.mean([sc["fine-tuned"]["f1_px"] for sc, _ in unseen])
        wins = sum(sc["fine-tuned"]["f1_px"] > sc["rf"]["f1_px"] for sc, _ in unseen)
        out.append(
            f"unseen tiles: U-Net fine-tuned F1 {f_dl:.3f} vs random forest {f_rf:.3f} "
            f"({f_dl - f_rf:+.3f}; U-Net higher on {wins}/{len(unseen)} tiles)"
        )


def section_synth(a: argparse.Namespace, init, out: list[str], log, info: list) -> None:  # noqa: ANN001
    seeds = [int(s) for s in a.seeds.split(",")]
    out.append(
        f"## microseg.synth.synth_grains, {a.size}x{a.size}, ~{a.n_grains} grains, "
        f"faint_fraction {a.faint} (boundaries with 1.5-7 % contrast), seeds "
        f"{', '.join(map(str, seeds))} (builtin:grains' synthetic training images used seeds "
        "1000-1007); strokes from the exact truth"
    )
    head = f"{'image':<10}{'strokes %':>10}{'GT n':>6}"
    for m in ORDER:
        head += f" | {m:<10}{'F1':>5}{'F1map':>6}{'n':>5}"
    out.append(head)
    maps_list = []
    for seed in seeds:
        case = synth_case(seed, a.size, a.n_grains, a.faint)
        log(f"{case.name} ...")
        res = acc.run_models(case, init, a.seconds, acc.curve_marks(a.seconds), a.cache, log)
        info.append(res)
        maps = acc.grain_maps(case, res)
        sc = acc.score_case(case, res, maps)
        maps_list.append(maps)
        cover = 100.0 * np.count_nonzero(case.strokes) / case.strokes.size
        row = f"{case.name:<10}{cover:>10.2f}{sc['GT']['n_grains']:>6d}"
        for m in ORDER:
            r = sc[m]
            row += f" | {'':<10}{r['f1_px']:>5.2f}{r['f1_map']:>6.2f}{r['n_grains']:>5d}"
        out.append(row)
    out.append("")
    out.append(f"grain-size distribution, pooled over the {len(seeds)} images, areas in px:")
    rows = distribution_rows(maps_list, ORDER)
    out.extend(_dist_table(rows, ORDER, "px"))
    gt = rows["GT"]
    for m in ("rf", "fine-tuned"):
        r = rows[m]
        shifted = r["median_area"] > 1.2 * gt["median_area"] and r["n"] < gt["n"]
        out.append(
            f"{LABELS[m]}: {r['n']} grains vs {gt['n']} ({100 * (r['n'] / gt['n'] - 1):+.0f} %), "
            f"median area x{r['median_area'] / gt['median_area']:.2f}, "
            f"{r['merged_pct']:.1f} % of the true grains merged, {r['split_pct']:.1f} % split: "
            + (
                "merged grains, distribution shifted to large sizes"
                if shifted
                else "no shift to large sizes"
            )
        )


def main(argv: list[str] | None = None) -> int:
    """Run the sections and print (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="tbm,synth")
    ap.add_argument("--tiles", default=None, help="comma-separated tbm tiles (default 18-20)")
    ap.add_argument("--all-tiles", action="store_true", help="all 40 tbm tiles (slow)")
    ap.add_argument("--crop", type=int, default=None, help="tbm: top-left NxN pixels only")
    ap.add_argument("--seconds", type=float, default=60.0, help="fine-tuning budget")
    ap.add_argument("--seeds", default="11,12,13", help="synthetic images")
    ap.add_argument("--size", type=int, default=384, help="synthetic image side")
    ap.add_argument("--n-grains", type=int, default=90)
    ap.add_argument("--faint", type=float, default=0.4, help="share of faint boundaries")
    ap.add_argument("--weights", default=None, help="U-Net file instead of builtin:grains")
    ap.add_argument("--cache", type=Path, default=None, help="reuse/store model outputs here")
    ap.add_argument("--out", type=Path, default=None, help="write the report to this file")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    init = acc.load_init(a.weights)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    info: list[dict[str, Any]] = []
    out: list[str] = [
        "$ python benchmarks/bench_ml_vs_dl.py " + " ".join(argv or sys.argv[1:]),
        f"Machine learning vs deep learning on grain boundaries, same strokes; python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load average {load:.1f}",
        f"code: {acc.code_version()}",
        f"U-Net: {a.weights or 'builtin:grains'} fine-tuned {a.seconds:.0f} s with "
        "TrainConfig's fine-tuning defaults (one setting for every image); "
        "random forest: microseg.classical defaults; grain maps: microseg.grains.grain_map "
        "defaults; F1 = boundary F1 (2 px) of pixels with boundary probability >= 0.5, "
        "F1map = of the grain-map lines; merged % = share of true grains of which a predicted "
        "grain holds most together with another; split % = share of true grains holding "
        "most of two or more predicted grains; W1 = Wasserstein distance between the log10 "
        "area distributions of grains not cut by the edge",
        "",
    ]
    for s in a.sections.split(","):
        s = s.strip()
        if s == "tbm":
            section_tbm(a, init, out, log, info)
        elif s == "synth":
            section_synth(a, init, out, log, info)
        else:
            raise SystemExit(f"Unknown section '{s}'; use tbm and/or synth.")
        out.append("")
    if info:
        t = info[0]["train"]
        out.append(
            f"fine-tuning: lr {t['lr']:g}, distill {t['distill']:g}, frozen BatchNorm "
            f"{t['freeze_norm']}; steps done in the budget per image: "
            + ", ".join(str(r["train"]["steps"]) for r in info)
        )
    n_cached = sum(r["cached"] for r in info)
    if n_cached:
        out.append(
            f"(model outputs of {n_cached} of {len(info)} images reused from {a.cache}, "
            "written by the same code with the same settings)"
        )
    acc.finish_report(out, t0, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
