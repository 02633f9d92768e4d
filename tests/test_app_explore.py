"""AppTest of the Explore page on a tiny workspace: move sliders, evaluate, the point lands and is stored."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mva_core.workspace import Workspace
from tests.apptest import APP, plotly_array
from tests.tiny import make_tiny_workspace


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("appws")
    make_tiny_workspace(root)
    return root


def test_explore_slider_evaluate_adds_point(ws_root, monkeypatch):
    monkeypatch.setenv("MVA_WORKSPACE", str(ws_root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    assert any("No candidates yet" in i.value for i in at.info)
    at.slider(key="w_warmth").set_value(0.8)
    at.slider(key="w_brevity").set_value(0.25)
    at.button(key="explore_evaluate").click().run()
    assert not at.exception, at.exception
    cid = at.session_state["explore_candidate"]
    table = Workspace(ws_root).store.candidates()
    row = table[table["id"] == cid].iloc[0]
    assert row["weights"] == [0.8, 0.25] and row["source"] == "live"
    assert row["s_warmth"] == row["s_warmth"] and row["s_brevity"] == row["s_brevity"]  # scored (not NaN)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t.get("name") for t in spec["data"]]
    assert "your point" in names and "Pareto front" in names
    mine = next(t for t in spec["data"] if t.get("name") == "your point")
    assert len(plotly_array(mine["x"])) == 1
    # Evaluating the same weights again is answered from the store.
    at.button(key="explore_evaluate").click().run()
    assert at.session_state["explore_candidate"] == cid
    assert len(Workspace(ws_root).store.candidates()) == len(table)


def test_explore_reports_missing_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("MVA_WORKSPACE", str(tmp_path / "nowhere"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("not an MVA workspace" in e.value for e in at.error)
