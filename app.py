"""microseg: the Streamlit app. Builds the navigation; each page lives in pages/."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
PAGES = [  # (file, title, icon, url path)
    ("pages/0_Home.py", "Home", ":material/home:", None),
    ("pages/1_Image.py", "Image", ":material/image:", "Image"),
    ("pages/2_Annotate.py", "Annotate", ":material/brush:", "Annotate"),
    (
        "pages/3_Inside_the_network.py",
        "Inside the network",
        ":material/neurology:",
        "Inside_the_network",
    ),
    ("pages/4_Nuclei.py", "Nuclei", ":material/blur_circular:", "Nuclei"),
    ("pages/5_Grains.py", "Grains", ":material/grain:", "Grains"),
    ("pages/6_ML_vs_DL.py", "ML vs DL", ":material/compare:", "ML_vs_DL"),
    ("pages/7_QC_review.py", "QC review", ":material/fact_check:", "QC_review"),
]

st.set_page_config(page_title="microseg", page_icon=":material/biotech:", layout="wide")
navigation = st.navigation(
    [
        st.Page(file, title=title, icon=icon, url_path=url, default=(i == 0))
        for i, (file, title, icon, url) in enumerate(PAGES)
        if (ROOT / file).is_file()
    ]
)
try:
    navigation.run()
except Exception as exc:  # noqa: BLE001 - last resort: one sentence, never a traceback
    if os.environ.get("MICROSEG_RAISE_ERRORS"):  # tests want to see the real error
        raise
    logging.getLogger("microseg").exception("unexpected error on a page")
    st.error(
        f"This page hit an unexpected problem ({type(exc).__name__}: {exc}). "
        "Your image, strokes and models are kept; try again or report it."
    )
