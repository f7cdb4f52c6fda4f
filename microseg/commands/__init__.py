"""Implementations of the ``microseg`` subcommands (one module per command).

Each ``cmd_NAME(args, progress)`` takes the parsed arguments and a function that
writes one progress line to stderr, and returns a small JSON-serialisable
summary (printed on stdout) or ``None``. Bad input raises
:class:`microseg.errors.InputError`.
"""

from __future__ import annotations

COMMANDS = ("train", "predict", "nuclei", "grains", "batch", "synth", "export-model", "project")


def get_command(name: str):
    """The ``cmd_NAME`` function of subcommand ``name`` (its module is imported on demand)."""
    import importlib

    ident = name.replace("-", "_")
    module = importlib.import_module(f"microseg.commands.{ident}")
    return getattr(module, f"cmd_{ident}")
