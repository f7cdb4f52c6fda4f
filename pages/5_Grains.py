"""Grain maps from boundary predictions, ASTM E112 grain size, linked plots, corrections."""

from __future__ import annotations

from webui.grains import grains_page

grains_page()
