"""The quality verdict of a result: looks fine / check this / do not trust, its reasons,
what to do next, and the numbers behind it (:mod:`microseg.quality`)."""

from __future__ import annotations

import streamlit as st

from microseg.quality import CHECK, DO_NOT_TRUST, Quality

ICON = {"ok": ":material/check_circle:", CHECK: ":material/warning:",
        DO_NOT_TRUST: ":material/dangerous:"}  # fmt: skip


def quality_panel(q: Quality, key: str, annotate_link: bool = True) -> None:
    """Show a verdict as a coloured box with one line per reason and next step."""
    lines = [f"**Quality: {q.label}.**"]
    lines += [f"- {r}" for r in q.reasons]
    if q.reasons and q.next_steps:
        lines.append("")
        lines.append("**What to do:** " + " ".join(q.next_steps))
    text = "\n".join(lines)
    show = {"ok": st.success, CHECK: st.warning, DO_NOT_TRUST: st.error}[q.verdict]
    with st.container(key=f"{key}_quality"):
        show(text, icon=ICON[q.verdict])
        for note in q.notes:
            st.caption(note)
        if q.verdict != "ok" and annotate_link:
            st.page_link(
                "pages/2_Annotate.py",
                label="Paint strokes and fine-tune on the Annotate page",
                icon=":material/brush:",
            )
        with st.expander("The numbers behind the verdict"):
            rows = [{"check": k, "value": "—" if v is None else str(v)}
                    for k, v in q.to_json()["checks"].items()]  # fmt: skip
            st.dataframe(rows, hide_index=True, key=f"{key}_quality_checks")
            st.caption(
                "unfamiliarity: how unlike its training images the image looks to the "
                "network (about 1 or less on images like them; not known for random "
                "forests and models trained here); g_spread: G numbers between the "
                "planimetric, intercept and mean-area estimates; median_neighbours: of "
                "an interior grain (about 6 in a grain structure)."
            )
