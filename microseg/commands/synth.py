"""``microseg synth``: write a seeded synthetic sample with its ground truth."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def cmd_synth(args: argparse.Namespace, progress: Callable[[str], None]) -> dict:
    """Write ``args.kind`` sample number ``args.seed`` into ``args.out``."""
    from microseg.synth import write_sample

    progress(f"generating {args.kind} sample (seed {args.seed}) ...")
    files = write_sample(args.kind, args.out, seed=args.seed)
    return {"kind": args.kind, "seed": args.seed, "files": {k: str(v) for k, v in files.items()}}
