"""AppTest of the Sweep page on a tiny workspace: a 0.5-step grid is generated once, stored, never recomputed."""

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mva_core.sweep import Evaluator
from mva_core.workspace import Workspace
from tests.apptest import open_page, plotly_array
from tests.tiny import make_tiny_workspace

METHOD = "mva-no-hsic"


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweepws")
    make_tiny_workspace(root, method=METHOD)
    return root


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_sweep_stores_grid_once_and_resumes_from_store(ws_root, monkeypatch):
    # One grid point evaluated beforehand (as Explore would): the sweep must reuse it, not regenerate it.
    live = Evaluator(Workspace(ws_root), METHOD).evaluate([[0.5, 0.5]], source="live").candidate_ids[0]
    at = open_page(monkeypatch, ws_root, "views/sweep.py")
    at.number_input(key="sweep_step").set_value(0.5).run()
    assert metric(at, "Grid candidates") == "9" and metric(at, "Already stored") == "1"
    assert at.button(key="sweep_start").label.startswith("Resume")
    at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception

    cands = Workspace(ws_root).store.candidates(METHOD)
    assert cands.loc[cands["id"] == live, "source"].item() == "live"  # kept, not replaced
    ticks = [0.0, 0.5, 1.0]
    expected = sorted((a, b) for a in ticks for b in ticks)  # the 3 x 3 grid, written out by hand
    assert sorted(tuple(w) for w in cands["weights"]) == expected
    assert np.isfinite(cands[["s_warmth", "s_brevity"]].to_numpy()).all()  # every candidate scored
    assert at.session_state["sweep_last"]["generated"] == 8
    assert metric(at, "Already stored") == "9" and metric(at, "To generate") == "0"

    # Again: every candidate comes from the store, nothing new is generated.
    at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception
    store = Workspace(ws_root).store
    assert len(store.candidates(METHOD)) == 9
    assert at.session_state["sweep_last"]["generated"] == 0
    runs = store.runs()
    assert runs["status"].tolist() == ["done", "done"]
    assert (store.candidates(METHOD)["run_id"] == runs["id"].iloc[0]).sum() == 8  # the first run made the rest
    assert len(at.dataframe[-1].value) == 2  # both runs listed
    # The chart shows the method's 9 candidates (front + dominated) and the base model.
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    n = {t["name"]: t for t in spec["data"]}
    assert len(plotly_array(n["Pareto front"]["x"])) + len(plotly_array(n["dominated"]["x"])) == 9
    assert len(plotly_array(n["base model"]["x"])) == 1 and len(plotly_array(n["in this grid"]["x"])) == 9


def test_sweep_rejects_step_larger_than_C(ws_root, monkeypatch):
    at = open_page(monkeypatch, ws_root, "views/sweep.py")
    at.number_input(key="sweep_step").set_value(2.0).run()
    assert not at.exception, at.exception
    assert any("step=2.0" in e.value and "C=1.0" in e.value for e in at.error)
    assert not at.button  # nothing to start
