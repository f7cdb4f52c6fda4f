"""webui.widgets: shared widgets."""

from __future__ import annotations


def _kept_slider_script():
    import streamlit as st

    from webui.widgets import kept_slider

    if st.checkbox("show", value=True, key="show"):
        v = kept_slider("Training time (s)", 5, 600, 60, step=5, key="secs")
        st.markdown(f"value {v}")


def test_kept_slider_keeps_its_value_while_it_is_not_drawn():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_kept_slider_script).run()
    assert at.markdown[0].value == "value 60"  # the default
    at.slider(key="secs").set_value(20).run()
    assert at.markdown[0].value == "value 20"
    at.checkbox(key="show").uncheck().run()  # e.g. a training run draws its progress instead
    assert len(at.slider) == 0
    at.checkbox(key="show").check().run()
    assert not at.exception
    assert at.markdown[0].value == "value 20"
    assert at.slider(key="secs").value == 20
