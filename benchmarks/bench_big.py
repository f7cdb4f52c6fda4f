"""Images larger than memory (issue 19): ``microseg predict`` tile by tile.

Writes synthetic micrographs of growing size as tiled TIFFs (a mosaic of 2048 x 2048
renderings of :func:`microseg.synth.synth_grains` and of nuclei frames of
:func:`microseg.synth.synth_nuclei_series`, each placed flipped or turned, written tile
by tile so the benchmark itself holds no big array) and runs ``microseg predict
--ome-zarr`` on each, one process per run, with three models: ``builtin:grains`` (U-Net),
a random forest trained on strokes of one grain rendering, and ``builtin:nuclei``.

Printed per model and size: seconds, megapixels per second, the per-megapixel
efficiency relative to the 2048 x 2048 run of the same model in the same benchmark
(target >= 0.8), and the process's peak resident memory (target < 3 GB, the same at
every size). Beside them, the whole-image path (``predict`` without ``--ome-zarr`` on
an image at the streaming threshold) is run on the largest size it takes, as the
reference for memory, and the class maps of the two paths are compared on a 4096 x 4096
image (pixel agreement, target >= 99.9 %).

It then runs ``microseg nuclei --ome-zarr`` (nuclei found window by window) on nuclei
mosaics of growing size (seconds, nuclei, peak memory), compares its nuclei with the
whole-image run on 4096 x 4096 (count within 0.1 %, matches at IoU 0.5), does the same
for ``microseg grains --ome-zarr`` (grain count and the three ASTM G), and times
``predict --scheduler`` on a 1-worker and a 2-worker ``LocalCluster`` (target >= 1.7x).

``python benchmarks/bench_big.py [--sizes 2048,8192,16384] [--models unet,rf,nuclei]
[--nuclei-sizes 2048,8192,16384] [--grain-sizes 2048,8192,16384] [--cluster-side 8192]
[--out FILE]``
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BASE = 2048
RSS_TARGET_GB = 3.0


def render_tiles(kind: str, n_variants: int = 4) -> list[np.ndarray]:
    """Distinct 2048 x 2048 renderings (uint8) to tile a mosaic with."""
    from microseg.synth import synth_grains, synth_nuclei_series

    out = []
    for seed in range(n_variants):
        if kind == "grains":
            out.append(synth_grains((BASE, BASE), 2400, seed=seed).image)
        else:
            s = synth_nuclei_series(1, (BASE, BASE), n_nuclei=900, seed=seed)
            frame = np.asarray(s.frames[0], np.float32)
            lo, hi = np.percentile(frame, [0.1, 99.9])
            out.append(np.clip((frame - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8))
    return out


def write_mosaic(path: Path, side: int, tiles: list[np.ndarray], tile: int = 512) -> Path:
    """A ``side`` x ``side`` uint8 tiled TIFF of turned and flipped copies of ``tiles``."""
    import tifffile

    n = side // BASE if side >= BASE else 1

    def block(by: int, bx: int) -> np.ndarray:
        i = (by * 7 + bx * 3) % (len(tiles) * 8)
        t = tiles[i % len(tiles)]
        t = np.rot90(t, (i // len(tiles)) % 4)
        return t[:, ::-1] if i // (4 * len(tiles)) else t

    def chunks():
        for y0 in range(0, side, tile):
            by, oy = divmod(y0, BASE)
            row = np.concatenate([block(by % n, bx)[oy : oy + tile] for bx in range(n)], axis=1)
            for x0 in range(0, side, tile):
                yield np.ascontiguousarray(row[:, x0 : x0 + tile])

    tifffile.imwrite(
        path,
        chunks(),
        shape=(side, side),
        dtype=np.uint8,
        tile=(tile, tile),
        bigtiff=True,
        compression="zlib",
        photometric="minisblack",
    )
    return path


def train_rf(tiles: list[np.ndarray], out: Path) -> Path:
    """A grains random forest from sparse truth strokes on one rendering."""
    from microseg.classical import RandomForestSegmenter
    from microseg.synth import synth_grains

    g = synth_grains((1024, 1024), 600, seed=11)
    rng = np.random.default_rng(0)
    strokes = np.zeros(g.image.shape, np.uint8)
    idx = rng.choice(g.image.size, 6000, replace=False)
    strokes.flat[idx] = np.where(g.boundaries.flat[idx], 2, 1)
    RandomForestSegmenter().fit(g.image, strokes, task="grains", seed=0).save(out)
    return out


# runs the command line in-process, then reports the process's own peak resident memory
# (VmHWM; a child's ru_maxrss would include the parent's memory at fork time)
_WRAP = """import sys
from microseg.cli import main
rc = main(sys.argv[1:])
hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0].split()[1]
print('VMHWM_KB', hwm, file=sys.stderr)
sys.exit(rc)
"""


def run_predict(
    model: str,
    image: Path,
    out: Path,
    streamed: bool,
    command: str = "predict",
    extra: tuple[str, ...] = (),
) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one ``microseg predict`` (or ``nuclei``) process."""
    cmd = [sys.executable, "-c", _WRAP, command, "--model", model, "--out", str(out), *extra]
    cmd += (["--ome-zarr"] if streamed else []) + [str(image)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed:\n{proc.stderr[-2000:]}")
    hwm = [ln for ln in proc.stderr.splitlines() if ln.startswith("VMHWM_KB")][-1]
    return seconds, int(hwm.split()[1]) / 1024**2


def agreement(model: str, image: Path, work: Path) -> float:
    """Pixel agreement of the whole-image and the tiled class maps of ``image``."""
    import tifffile

    run_predict(model, image, work / "whole", streamed=False)
    run_predict(model, image, work / "tiled", streamed=True)
    a = tifffile.imread(work / "whole" / f"{image.stem}_classes.tif")
    b = tifffile.imread(work / "tiled" / f"{image.stem}_classes.tif")
    return float((a == b).mean())


def nuclei_agreement(image: Path, work: Path) -> str:
    """``microseg nuclei`` whole-image vs tile by tile on ``image``: counts and matches."""
    import tifffile

    from microseg.metrics import match_instances

    run_predict("builtin:nuclei", image, work / "whole", False, "nuclei")
    run_predict("builtin:nuclei", image, work / "tiled", True, "nuclei")
    a = tifffile.imread(work / "whole" / f"{image.stem}_labels.tif")
    b = tifffile.imread(work / "tiled" / f"{image.stem}_labels.tif")
    m = match_instances(a, b, 0.5)
    na, nb = int(a.max()), int(b.max())
    return (
        f"nuclei: whole-image {na} vs tile by tile {nb} nuclei ({100 * (nb - na) / max(1, na):+.2f} %; "
        f"target within 0.1 %); matched at IoU 0.5: {m.tp}, only whole {m.fn}, only tiled {m.fp}, "
        f"mean IoU of matches {m.mean_matched_iou:.4f}"
    )


def grains_agreement(image: Path, work: Path) -> list[str]:
    """``microseg grains`` whole-image vs tile by tile on ``image``: counts and G."""
    import json

    extra = ("--pixel-size", "0.5")
    run_predict("builtin:grains", image, work / "whole", False, "grains", extra)
    run_predict("builtin:grains", image, work / "tiled", True, "grains", extra)
    a = json.loads((work / "whole" / f"{image.stem}_summary.json").read_text())
    b = json.loads((work / "tiled" / f"{image.stem}_summary.json").read_text())
    rows = [f"{'':<22}{'whole image':>14}{'tile by tile':>14}"]
    for key in (
        "n_grains",
        "n_interior_grains",
        "n_edge_grains",
        "astm_g_planimetric",
        "astm_g_intercept",
        "astm_g_mean_area",
        "mean_area",
    ):
        rows.append(f"{key:<22}{a[key]:>14.4g}{b[key]:>14.4g}")
    d = 100 * (b["n_grains"] - a["n_grains"]) / max(1, a["n_grains"])
    rows.append(f"grain count difference {d:+.2f} % (target within 0.1 %)")
    return rows


def cluster_speedup(model: str, image: Path, work: Path) -> list[str]:
    """Seconds of ``predict --scheduler`` on a 1-worker and a 2-worker LocalCluster."""
    from distributed import LocalCluster

    out, times = [], {}
    for n in (1, 2):
        with LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster:
            secs, _ = run_predict(
                model,
                image,
                work / f"cluster{n}",
                False,
                extra=("--scheduler", cluster.scheduler_address),
            )
        times[n] = secs
        out.append(f"{model} on a LocalCluster of {n} worker(s) x 1 thread: {secs:.1f} s")
    out.append(f"speed-up 2 workers vs 1: {times[1] / times[2]:.2f}x (target >= 1.7x)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2048,8192,16384")
    ap.add_argument("--models", default="unet,rf,nuclei")
    ap.add_argument("--whole", type=int, default=8192, help="side of the whole-image reference")
    ap.add_argument(
        "--nuclei-sizes",
        default="2048,8192,16384",
        help="sides for microseg nuclei tile by tile ('' to skip)",
    )
    ap.add_argument(
        "--grain-sizes",
        default="2048,8192,16384",
        help="sides for microseg grains tile by tile ('' to skip)",
    )
    ap.add_argument(
        "--cluster-side",
        type=int,
        default=8192,
        help="side of the 1- vs 2-worker Dask run (0 to skip)",
    )
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    sizes = [int(s) for s in a.sizes.split(",")]
    models = a.models.split(",")
    tmp = tempfile.TemporaryDirectory(dir=a.work) if a.work is None else None
    work = Path(tmp.name) if tmp else a.work
    work.mkdir(parents=True, exist_ok=True)
    lines = [
        f"$ python benchmarks/bench_big.py {' '.join(argv if argv is not None else sys.argv[1:])}",
        f"microseg predict --ome-zarr, tile by tile (issue 19); python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}",
        "",
    ]
    tiles = {"grains": render_tiles("grains")}
    if "nuclei" in models:
        tiles["nuclei"] = render_tiles("nuclei")
    spec = {"unet": ("builtin:grains", "grains"), "nuclei": ("builtin:nuclei", "nuclei")}
    if "rf" in models:
        spec["rf"] = (str(train_rf(tiles["grains"], work / "rf.safetensors")), "grains")
    header = f"{'model':<16}{'side':>7}{'MP':>8}{'s':>9}{'MP/s':>8}{'eff.':>7}{'peak RSS GB':>13}"
    lines.append(header)
    for name in models:
        model, kind = spec[name]
        base_rate = None
        for side in sizes:
            image = write_mosaic(work / f"{kind}_{side}.tif", side, tiles[kind])
            secs, rss = run_predict(model, image, work / f"out_{name}_{side}", streamed=True)
            mp_ = side * side / 1e6
            rate = mp_ / secs
            base_rate = rate if side == BASE or base_rate is None else base_rate
            lines.append(
                f"{name:<16}{side:>7}{mp_:>8.0f}{secs:>9.1f}{rate:>8.2f}"
                f"{rate / base_rate:>7.2f}{rss:>13.2f}"
            )
            print(lines[-1], file=sys.stderr, flush=True)
            image.unlink()
            import shutil

            shutil.rmtree(work / f"out_{name}_{side}", ignore_errors=True)
        if a.whole:
            image = write_mosaic(work / f"{kind}_{a.whole}.tif", a.whole, tiles[kind])
            secs, rss = run_predict(model, image, work / f"whole_{name}", streamed=False)
            mp_ = a.whole**2 / 1e6
            lines.append(
                f"{name + ' whole':<16}{a.whole:>7}{mp_:>8.0f}{secs:>9.1f}"
                f"{mp_ / secs:>8.2f}{'':>7}{rss:>13.2f}"
            )
            print(lines[-1], file=sys.stderr, flush=True)
            image.unlink()
    lines += [
        "",
        "eff.: MP/s relative to the 2048 x 2048 run of the same model (target >= 0.8); "
        f"peak RSS: the predict process's maximum resident memory (target < {RSS_TARGET_GB:g} GB "
        "at every size); 'whole': predict without --ome-zarr (the whole image in memory), "
        "the reference",
        "",
    ]
    for name in models:
        model, kind = spec[name]
        image = write_mosaic(work / f"{kind}_agree.tif", 4096, tiles[kind])
        agree = agreement(model, image, work / f"agree_{name}")
        lines.append(
            f"{name}: class maps whole-image vs tiled on 4096 x 4096: {100 * agree:.4f} % "
            "of pixels agree (target >= 99.9 %)"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    if a.nuclei_sizes:
        import shutil

        if "nuclei" not in tiles:
            tiles["nuclei"] = render_tiles("nuclei")
        lines += [
            "",
            "microseg nuclei tile by tile (builtin:nuclei, --ome-zarr)",
            f"{'side':>7}{'MP':>8}{'s':>9}{'MP/s':>8}{'nuclei':>10}{'peak RSS GB':>13}",
        ]
        for side in [int(v) for v in a.nuclei_sizes.split(",")]:
            image = write_mosaic(work / f"nuc_{side}.tif", side, tiles["nuclei"])
            out = work / f"nuc_out_{side}"
            secs, rss = run_predict("builtin:nuclei", image, out, True, "nuclei")
            n_obj = len(pd.read_csv(out / f"nuc_{side}_objects.csv"))
            mp_ = side * side / 1e6
            lines.append(
                f"{side:>7}{mp_:>8.0f}{secs:>9.1f}{mp_ / secs:>8.2f}{n_obj:>10}{rss:>13.2f}"
            )
            print(lines[-1], file=sys.stderr, flush=True)
            image.unlink()
            shutil.rmtree(out, ignore_errors=True)
        image = write_mosaic(work / "nuc_agree.tif", 4096, tiles["nuclei"])
        lines.append(nuclei_agreement(image, work / "nuc_agree"))
        print(lines[-1], file=sys.stderr, flush=True)
    if a.grain_sizes:
        import json
        import shutil

        lines += [
            "",
            "microseg grains tile by tile (builtin:grains, --ome-zarr, 0.5 µm/px)",
            f"{'side':>7}{'MP':>8}{'s':>9}{'MP/s':>8}{'grains':>10}{'G planim.':>11}"
            f"{'peak RSS GB':>13}",
        ]
        for side in [int(v) for v in a.grain_sizes.split(",")]:
            image = write_mosaic(work / f"gr_{side}.tif", side, tiles["grains"])
            out = work / f"gr_out_{side}"
            secs, rss = run_predict(
                "builtin:grains", image, out, True, "grains", ("--pixel-size", "0.5")
            )
            summ = json.loads((out / f"gr_{side}_summary.json").read_text())
            mp_ = side * side / 1e6
            lines.append(
                f"{side:>7}{mp_:>8.0f}{secs:>9.1f}{mp_ / secs:>8.2f}{summ['n_grains']:>10}"
                f"{summ['astm_g_planimetric']:>11.2f}{rss:>13.2f}"
            )
            print(lines[-1], file=sys.stderr, flush=True)
            image.unlink()
            shutil.rmtree(out, ignore_errors=True)
        image = write_mosaic(work / "gr_agree.tif", 4096, tiles["grains"])
        lines += grains_agreement(image, work / "gr_agree")
        print("\n".join(lines[-9:]), file=sys.stderr, flush=True)
    if a.cluster_side:
        image = write_mosaic(work / "grains_cluster.tif", a.cluster_side, tiles["grains"])
        lines += [""] + cluster_speedup("builtin:grains", image, work)
        print("\n".join(lines[-3:]), file=sys.stderr, flush=True)
    lines += ["", f"total run time {time.perf_counter() - t_start:.0f} s"]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
