"""``microseg batch``: run ``nuclei``, ``grains`` or ``predict`` (task semantic) over many inputs.

Inputs are files, folders (their image files, not recursive) or glob patterns.
Every input gets the same outputs as the single command would write; inputs that
share a file name (``a/img.tif``, ``b/img.tif``) get their folder's name in front
(``a_img_*``, ``b_img_*``), so none overwrites another. A failing
input is reported on stderr and the others go on; the run fails (exit status 2)
only when no input succeeds. ``DIR/batch_summary.json`` holds the run summary with
every input's quality verdict, and ``DIR/qc.csv`` one row per input (``input, ok,
verdict, reasons, next_steps, summary, error``), worst first. With ``--scheduler tcp://HOST:PORT`` the inputs are
processed on a Dask cluster (each worker loads the model once, so the model file
and the inputs must be readable at the same paths on the workers).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from microseg.errors import InputError, MicrosegError

_HAS_MAGIC = ("*", "?", "[")


def expand_inputs(inputs: list[str] | list[Path]) -> list[Path]:
    """Files named by ``inputs``: files, the image files of folders, and glob matches.

    Folders are listed without recursion; only files with a supported image suffix
    are taken from folders and globs. Duplicates are dropped, order is kept.

    Raises
    ------
    InputError
        When an input names nothing, or no image file is found at all.
    """
    from microseg.io import supported_suffixes

    suffixes = supported_suffixes()
    found: list[Path] = []
    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and _is_image(p, suffixes))
            if not files:
                raise InputError(f"The folder {path} holds no image files.")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        elif any(ch in text for ch in _HAS_MAGIC):
            files = sorted(
                Path(p)
                for p in glob.glob(text)
                if Path(p).is_file() and _is_image(Path(p), suffixes)
            )
            if not files:
                raise InputError(f"The pattern {text} matches no image files.")
            found.extend(files)
        else:
            raise InputError(f"Input {text} does not exist.")
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _is_image(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.suffix.lower() in suffixes


def _namespace(args: argparse.Namespace, path: Path, stem: str | None) -> argparse.Namespace:
    """Arguments of the single command for one input (``stem``: of its output names)."""
    common = {"model": args.model, "out": Path(args.out), "stems": [stem] if stem else None,
              "geojson": bool(getattr(args, "geojson", False))}  # fmt: skip
    if args.task == "nuclei":
        return argparse.Namespace(
            **common, pixel_size=args.pixel_size, channel=None, track=False, images=[path]
        )
    if args.task == "grains":
        return argparse.Namespace(**common, pixel_size=args.pixel_size, images=[path],
                                  drop_data_bar=args.drop_data_bar)  # fmt: skip
    return argparse.Namespace(**common, probabilities=False, images=[path])


def _command(task: str) -> Callable[[argparse.Namespace, Callable[[str], None]], dict]:
    if task == "nuclei":
        from microseg.commands.nuclei import cmd_nuclei

        return cmd_nuclei
    if task == "grains":
        from microseg.commands.grains import cmd_grains

        return cmd_grains
    if task == "semantic":
        from microseg.commands.predict import cmd_predict

        return cmd_predict
    raise InputError(f"Unknown task '{task}'; choose nuclei, grains or semantic.")


@lru_cache(maxsize=2)
def _load_model(spec: str):  # noqa: ANN202 - loaded once per process (and per Dask worker)
    from microseg.segmenter import load_segmenter

    return load_segmenter(spec)


def run_one(
    task: str,
    model: str,
    out: str,
    pixel_size: float | None,
    path: str,
    progress: Callable[[str], None] | None = None,
    drop_data_bar: bool = False,
    stem: str | None = None,
    geojson: bool = False,
) -> dict[str, Any]:
    """Process one input; never raises for a bad input (``drop_data_bar``: grains,
    leave the image's data bar out; ``stem``: of the output names, unique in the run;
    ``geojson``: nuclei and grains also write ``<stem>.geojson``).

    Returns
    -------
    dict
        ``{"input", "ok": True, "result"}`` or ``{"input", "ok": False, "error"}``
        (one sentence).
    """
    report = progress or (lambda msg: None)
    ns = argparse.Namespace(
        task=task,
        model=model,
        out=out,
        pixel_size=pixel_size,
        drop_data_bar=drop_data_bar,
        geojson=geojson,
    )
    try:
        if task == "nuclei":
            from microseg.commands.nuclei import process_file

            result = process_file(
                Path(path),
                _load_model(model),
                model,
                Path(out),
                pixel_size_um=pixel_size,
                progress=report,
                stem=stem,
                geojson=geojson,
            )
        else:
            result = _command(task)(_namespace(ns, Path(path), stem), report)
        return {"input": path, "ok": True, "result": result}
    except MicrosegError as exc:
        return {"input": path, "ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one failing input must not stop the batch
        return {"input": path, "ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _check_model(args: argparse.Namespace, progress: Callable[[str], None]) -> None:
    """Fail early (exit status 2) on a model that cannot be loaded or fits another task."""
    model = _load_model(str(args.model))
    progress(
        f"model: {args.model} ({model.metadata.get('kind', '?')}, task {model.task}, "
        f"classes {', '.join(model.classes)})"
    )
    if args.task in ("nuclei", "grains") and model.task not in (args.task, "semantic"):
        raise InputError(f"{args.model} is a {model.task} model, not a {args.task} model.")


def _run_dask(
    args: argparse.Namespace,
    paths: list[Path],
    stems: list[str],
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    from distributed import Client, as_completed

    address = str(args.scheduler)
    if "://" not in address:
        raise InputError(f"--scheduler must look like tcp://HOST:PORT, not {address}.")
    try:
        client = Client(address, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"No Dask scheduler answers at {address}.") from exc
    try:
        n = sum(client.nthreads().values())
        progress(f"Dask scheduler {address}: {n} worker thread(s)")
        futures = client.map(
            run_one,
            [args.task] * len(paths),
            [str(args.model)] * len(paths),
            [str(Path(args.out).resolve())] * len(paths),
            [args.pixel_size] * len(paths),
            [str(p.resolve()) for p in paths],
            [None] * len(paths),
            [args.drop_data_bar] * len(paths),
            stems,
            [bool(args.geojson)] * len(paths),
            pure=False,
        )
        order = {f.key: i for i, f in enumerate(futures)}
        results: list[dict[str, Any] | None] = [None] * len(paths)
        for fut in as_completed(futures):
            res = fut.result()
            results[order[fut.key]] = res
            _report(res, progress)
        return [r for r in results if r is not None]
    finally:
        client.close()


def _report(res: dict[str, Any], progress: Callable[[str], None]) -> None:
    name = Path(res["input"]).name
    if res["ok"]:
        progress(f"{name}: done")
    else:
        print(f"microseg: error: {name}: {res['error']}", file=sys.stderr, flush=True)


def cmd_batch(args: argparse.Namespace, progress: Callable[[str], None]) -> dict:
    """Run the task's command on every input; report failures and go on."""
    from microseg.io import image_stem, output_folder, output_stems

    paths = expand_inputs(args.inputs)
    if args.pixel_size is not None:
        from microseg.pixel_size import check_pixel_size

        check_pixel_size(args.pixel_size, "--pixel-size")
    progress(f"batch: {len(paths)} input(s), task {args.task}")
    _check_model(args, progress)
    output_folder(args.out)
    stems = output_stems(paths)
    for path, stem in zip(paths, stems, strict=True):
        if stem != image_stem(path):
            progress(f"{path}: outputs named {stem}_* (another input has the same name)")
    if args.scheduler:
        results = _run_dask(args, paths, stems, progress)
    else:
        results = []
        for i, (path, stem) in enumerate(zip(paths, stems, strict=True), start=1):
            progress(f"[{i}/{len(paths)}] {path.name}")
            res = run_one(args.task, str(args.model), str(args.out), args.pixel_size, str(path),
                          progress, drop_data_bar=args.drop_data_bar, stem=stem,
                          geojson=bool(getattr(args, "geojson", False)))  # fmt: skip
            _report(res, progress)
            results.append(res)
    failed = [r for r in results if not r["ok"]]
    if failed and len(failed) == len(results):
        raise InputError(f"None of the {len(results)} input(s) could be processed.")
    if failed:
        progress(f"{len(failed)} of {len(results)} input(s) failed; see the errors above")
    rows = qc_rows(results)
    run = {
        "task": args.task,
        "model": str(args.model),
        "n_inputs": len(results),
        "n_failed": len(failed),
        "failed": [{"input": r["input"], "error": r["error"]} for r in failed],
        "quality": {
            v: sum(r["verdict"] == v for r in rows) for v in ("ok", "check", "do_not_trust")
        },
        "qc": rows,
        "outputs": [r["result"] for r in results if r["ok"]],
    }
    out = Path(args.out)
    write_qc(rows, out / "qc.csv")
    from microseg.io import jsonable

    (out / "batch_summary.json").write_text(json.dumps(jsonable(run), indent=1), encoding="utf-8")
    bad = run["quality"]["check"] + run["quality"]["do_not_trust"]
    if bad:
        progress(f"quality: {bad} of {len(rows)} result(s) to check; see {out / 'qc.csv'}")
    return run


QC_COLUMNS = ["input", "ok", "verdict", "reasons", "next_steps", "summary", "error"]


def _quality_of(result: dict[str, Any]) -> tuple[dict | None, str | None]:
    """The quality record and summary path of one input's result (grains or nuclei)."""
    if "quality" in result:  # nuclei: one summary per input
        return result["quality"], result.get("outputs", {}).get("summary")
    outs = result.get("outputs") or []
    if outs and isinstance(outs[0], dict) and "quality" in outs[0]:  # grains
        return outs[0]["quality"], outs[0].get("summary")
    return None, None


def qc_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per input: its verdict and reasons, worst first (failed inputs first)."""
    rows = []
    for r in results:
        if not r["ok"]:
            rows.append({"input": r["input"], "ok": False, "verdict": "failed", "reasons": "",
                         "next_steps": "", "summary": "", "error": r["error"]})  # fmt: skip
            continue
        q, summary = _quality_of(r["result"])
        rows.append({
            "input": r["input"], "ok": True, "verdict": (q or {}).get("verdict", ""),
            "reasons": " ".join((q or {}).get("reasons", [])),
            "next_steps": " ".join((q or {}).get("next_steps", [])),
            "summary": summary or "", "error": "",
        })  # fmt: skip
    order = {"failed": 0, "do_not_trust": 1, "check": 2, "ok": 3, "": 4}
    return sorted(rows, key=lambda row: order.get(row["verdict"], 4))


def write_qc(rows: list[dict[str, Any]], path: Path) -> Path:
    """``qc.csv``: one row per input (:data:`QC_COLUMNS`), worst first."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=QC_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path
