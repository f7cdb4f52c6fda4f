"""QC review: every image of a batch run with its quality verdict, worst first."""

from __future__ import annotations

from webui.qc_review import qc_page

qc_page()
