"""The Grains page's measured region: the micrograph without its data bar (found
automatically, with a switch to keep it) and without margins the user leaves out.

Session state used: ``grains_ui["data_bar"]`` (the bar found on an image, cached per
image) and the widget keys ``grains_drop_bar`` and ``grains_margin_*``.
"""

from __future__ import annotations

import streamlit as st

from microseg.errors import InputError
from microseg.image import MicroImage
from microseg.roi import WHOLE_IMAGE, DataBar, Region, find_data_bar, margins_region
from webui import state
from webui.grains.shared import ui

SIDES = ("top", "bottom", "left", "right")


def data_bar(image: MicroImage) -> DataBar | None:
    """The data bar of the image's first plane (cached per image)."""
    cached = ui().get("data_bar")
    if cached is None or cached[0] != state.get("image_id"):
        cached = (state.get("image_id"), find_data_bar(image.frame(0, 0)))
        ui()["data_bar"] = cached
    return cached[1]


def region_controls(image: MicroImage) -> tuple[Region, str]:
    """Sidebar controls of the measured region; returns ``(region, source)``, the
    source as :func:`microseg.commands.grains.measurement_region` words it."""
    st.subheader("Measured region")
    shape = image.shape_yx
    bar = data_bar(image)
    drop = False
    if bar is not None:
        drop = st.checkbox(f"Leave out {bar.describe()}", value=True, key="grains_drop_bar",
                           help="Text and a scale bar in a strip at the image edge, as SEM "
                           "and camera software write them: they are not grains.")  # fmt: skip
    with st.expander("Leave out margins (px)"):
        cols = st.columns(2)
        user = {
            side: int(
                cols[i % 2].number_input(
                    side.capitalize(), min_value=0, value=0, step=1, key=f"grains_margin_{side}"
                )
            )  # fmt: skip
            for i, side in enumerate(SIDES)
        }
    margins, sources = dict(user), []
    if drop and bar is not None:
        margins[bar.side] += bar.height
        sources.append(bar.left_out)
    if any(user.values()):
        sources.append("margins left out: " + ", ".join(f"{s} {user[s]}" for s in SIDES if user[s]))
    try:
        region = margins_region(shape, **margins)
    except InputError as exc:
        st.error(f"{exc} Measuring the whole image.")
        return Region.full(shape), WHOLE_IMAGE
    if region.is_full(shape):
        st.caption(f"The whole image ({shape[1]}x{shape[0]} px).")
        return region, WHOLE_IMAGE
    h, w = region.shape
    st.caption(f"Measuring {region.describe()} ({w}x{h} px); grain positions are in the "
               "region's pixels.")  # fmt: skip
    return region, "; ".join(sources)
