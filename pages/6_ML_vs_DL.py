"""A random forest and a U-Net trained on the same strokes, side by side."""

from __future__ import annotations

from webui.grains import compare_page

compare_page()
