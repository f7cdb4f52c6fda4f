"""Exceptions whose message is one clear sentence for the user."""

from __future__ import annotations


class MicrosegError(Exception):
    """Base class: the message is a complete sentence meant for the user."""


class InputError(MicrosegError, ValueError):
    """Bad input from the user: a file, an image, strokes or arguments."""


class ModelFileError(InputError):
    """A model file that cannot be loaded (corrupt, foreign, unsafe or incompatible)."""
