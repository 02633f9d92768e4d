"""Widgets whose state the app writes (Explore's sliders and preference boxes, kept across pages; the pick's "load
its weights") are initialised one way: through Session State, with no `value=` on the widget (issue 31 item 8).
Streamlit logs "created with a default value but also had its value set via the Session State API" otherwise."""

from __future__ import annotations

import logging

import pytest
from streamlit.elements.lib import policies

from mva_core.sweep import Evaluator, evaluate_base
from tests.apptest import open_page, switch_page
from tests.tiny import make_tiny_workspace


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("widgets")
    ws = make_tiny_workspace(root, n_prompts=2)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    ev.evaluate([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0], [0.25, 0.75]])
    return root


def spy_on_the_rule(monkeypatch) -> list[tuple[str, object]]:
    """Every widget created with a default while Session State also set it: what Streamlit warns about once per
    process (so the log alone would miss all but the first)."""
    seen: list[tuple[str, object]] = []
    check = policies.check_session_state_rules

    def spy(default_value, key, writes_allowed=True):  # what Streamlit's rule sees, whether or not it logs
        from streamlit.runtime.state import get_session_state

        if key is not None and default_value is not None and get_session_state().is_new_state_value(key):
            seen.append((key, default_value))
        return check(default_value, key, writes_allowed)

    monkeypatch.setattr(policies, "check_session_state_rules", spy)
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    return seen


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_no_widget_is_set_both_ways(ws_root, monkeypatch, caplog):
    seen = spy_on_the_rule(monkeypatch)
    caplog.set_level(logging.WARNING)
    at = open_page(monkeypatch, ws_root)
    at.slider(key="w_warmth").set_value(0.8)
    at.number_input(key="p_warmth").set_value(0.3)
    at.number_input(key="p_brevity").set_value(0.7).run()
    for page in ("pages/compare.py", "pages/explore.py"):  # the sidebar writes the kept choices back on every run
        switch_page(at, page).run()
        assert not at.exception, at.exception
    at.button(key="explore_pick_load").click().run()  # writes the sliders' state
    assert not at.exception, at.exception
    assert seen == [], seen
    assert not [r for r in caplog.records if "default value but also had its value set" in r.getMessage()]


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_three_values_axis_pickers_too(tmp_path, monkeypatch):
    """With three values the 2-D axis pickers and the 3-D axes are kept across pages as well."""
    import shutil

    from mva_core.demo import DEMOS

    shutil.copytree(DEMOS["demo3"].root, tmp_path / "demo3")
    seen = spy_on_the_rule(monkeypatch)
    at = open_page(monkeypatch, tmp_path / "demo3")
    at.selectbox(key="explore_y").set_value("relevance").run()
    for page in ("pages/compare.py", "pages/explore.py"):
        switch_page(at, page).run()
        assert not at.exception, at.exception
    assert at.selectbox(key="explore_y").value == "relevance"
    assert at.multiselect(key="explore_axes3d").value == ["warmth", "brevity", "relevance"]
    assert seen == [], seen


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_picking_a_shipped_demo_sets_the_workspace_box_one_way(monkeypatch):
    """The sidebar's "Shipped demos" writes the Workspace box through Session State (its callback)."""
    import shutil

    from streamlit.testing.v1 import AppTest

    from mva_core.demo import working_copy
    from tests.apptest import APP

    copy = working_copy.__globals__["REPO_ROOT"] / "data" / "workspace-demo3"
    existed = copy.exists()
    monkeypatch.delenv("MVA_WORKSPACE", raising=False)
    seen = spy_on_the_rule(monkeypatch)
    try:
        at = AppTest.from_file(APP, default_timeout=180).run()
        next(s for s in at.selectbox if s.key == "shipped_demo").select("demo3").run()
        assert not at.exception, at.exception
        assert at.text_input(key="workspace").value == str(copy)
        assert seen == [], seen
    finally:
        if not existed:
            shutil.rmtree(copy, ignore_errors=True)
