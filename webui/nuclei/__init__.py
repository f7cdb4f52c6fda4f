"""The Nuclei page: segment frames and series, linked plots, tracks, corrections, exports.

Numerical work is done by the engine (:mod:`microseg.nuclei`, :mod:`microseg.instances`,
:mod:`microseg.tracking`, :mod:`microseg.exports`); these modules draw widgets and keep
the results of the session (:mod:`webui.nuclei.session`). The page calls the functions
listed here.
"""

from __future__ import annotations

from webui.nuclei.corrections import corrections_tab
from webui.nuclei.exports import exports_tab
from webui.nuclei.model_choice import model_sidebar
from webui.nuclei.plots import plots_tab, table_tab, time_tab
from webui.nuclei.retrain import finish_retraining
from webui.nuclei.segmentation import action_bar, collect_job, frame_slider, remeasure
from webui.nuclei.selection import selected_keys
from webui.nuclei.session import NucleiResult, current_result, show_message
from webui.nuclei.tracking import tracks_tab
from webui.nuclei.verdict import verdict_panel
from webui.nuclei.viewer import viewer

__all__ = [
    "NucleiResult",
    "action_bar",
    "collect_job",
    "corrections_tab",
    "current_result",
    "exports_tab",
    "finish_retraining",
    "frame_slider",
    "model_sidebar",
    "plots_tab",
    "remeasure",
    "selected_keys",
    "show_message",
    "table_tab",
    "time_tab",
    "tracks_tab",
    "verdict_panel",
    "viewer",
]
