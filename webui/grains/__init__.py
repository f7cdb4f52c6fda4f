"""The Grains and the ML-vs-DL pages: grain maps, measurements, linked plots, corrections,
exports, and the side-by-side comparison of a random forest and a U-Net.

Session state used: ``grains_ui`` (settings, edits, selections of both pages),
``grain_result`` (the current grain map with its table and summary) and
``compare_result`` (the models, maps and scores of the last comparison).
"""

from __future__ import annotations

from webui.grains.compare import compare_page
from webui.grains.page import grains_page

__all__ = ["compare_page", "grains_page"]
