"""``microseg export-model``: a trained U-Net as a bioimage.io model package or ONNX.

``--format bioimageio`` writes a ZIP (spec 0.5: ``rdf.yaml``, ONNX weights, the
normalisation as pre-processing, softmax post-processing, test input and output, a
cover image and a README) that bioimage.io tools validate and run; ``--format onnx``
writes the network alone (input normalised ``image``, output ``logits``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from microseg.errors import InputError

FORMATS = ("bioimageio", "onnx")


def cmd_export_model(args: argparse.Namespace, progress: Callable[[str], None]) -> dict:
    """Write the model in the asked format; returns what was written."""
    from microseg.commands.predict import load_model_arg
    from microseg.deep.segmenter import UNetSegmenter

    out = Path(args.output)
    suffix = ".zip" if args.format == "bioimageio" else ".onnx"
    if out.suffix.lower() != suffix:
        raise InputError(f"--format {args.format} writes a {suffix} file; {out.name} is not one.")
    if out.is_dir():
        raise InputError(f"{out} is a folder; give the {suffix} file to write.")
    model = load_model_arg(args.model, progress)
    if not isinstance(model, UNetSegmenter):
        raise InputError(
            f"{args.model} is not a U-Net: only deep-learning models can be exported (a "
            "random forest has no bioimage.io or ONNX form)."
        )
    test_image = None
    if args.test_image is not None:
        from microseg.commands.predict import read_input

        test_image = read_input(Path(args.test_image)).frame(0, 0)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"The folder for {out.name} cannot be made ({exc.strerror}).") from None
    progress(f"writing {args.format} to {out} ...")
    if args.format == "bioimageio":
        from microseg.deep.bioimageio import export_bioimageio

        authors = [a.strip() for a in (args.authors or "").split(",") if a.strip()] or None
        path = export_bioimageio(model, out, name=args.name, authors=authors,
                                 license_id=args.license, test_image=test_image)  # fmt: skip
    else:
        from microseg.deep.onnx_export import export_onnx

        path = export_onnx(model, out)
    progress(f"wrote {path}")
    return {"model": args.model, "format": args.format, "output": str(path)}
