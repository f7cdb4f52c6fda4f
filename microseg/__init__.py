"""microseg: AI segmentation for the microscope bench.

The engine: image input/output, engineered features and a random forest,
a U-Net, instance segmentation, measurements, time series and tracking.
It never imports a user interface, so the app, the command line and batch
jobs share it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from microseg.errors import InputError, MicrosegError, ModelFileError

__all__ = ["InputError", "MicrosegError", "ModelFileError", "__version__"]
