"""Explore keeps its choices across pages, and the preference pick opens, loads or exports its answer (issue 17
item 5). AppTest on a tiny workspace; the pick is checked against a brute-force argmax over the stored z-scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mva_core.results import candidate_table
from mva_core.sweep import Evaluator, evaluate_base
from mva_core.workspace import Workspace
from tests.apptest import open_page, plotly_array, switch_page
from tests.tiny import make_tiny_workspace

GRID = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0], [0.25, 0.75], [0.75, 0.25]]


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    ws = make_tiny_workspace(root)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    ev.evaluate(GRID)
    return root


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_sliders_method_and_p_survive_a_visit_to_another_page(ws_root, monkeypatch):
    at = open_page(monkeypatch, ws_root)
    at.slider(key="w_warmth").set_value(0.8)
    at.slider(key="w_brevity").set_value(0.15)
    at.number_input(key="p_brevity").set_value(0.4).run()
    for page in ("pages/compare.py", "pages/responses.py", "pages/explore.py"):
        switch_page(at, page).run()
        assert not at.exception, at.exception
    assert at.slider(key="w_warmth").value == pytest.approx(0.8)
    assert at.slider(key="w_brevity").value == pytest.approx(0.15)
    assert at.number_input(key="p_brevity").value == pytest.approx(0.4)


def test_pick_loads_its_weights_and_opens_its_details(ws_root, monkeypatch):
    at = open_page(monkeypatch, ws_root)
    at.number_input(key="p_warmth").set_value(0.3)
    at.number_input(key="p_brevity").set_value(0.7).run()
    table = candidate_table(Workspace(ws_root))
    mine = table[table["method"] == "mva-no-hsic"]
    Z = mine[["z_warmth", "z_brevity"]].to_numpy(dtype=float)
    front = [i for i in range(len(Z)) if not any((Z[j] >= Z[i]).all() and (Z[j] > Z[i]).any() for j in range(len(Z)))]
    best = mine.iloc[max(front, key=lambda i: (Z[i] @ np.array([0.3, 0.7]), -mine["id"].iloc[i]))]
    msg = next(i.value for i in at.info if i.value.startswith("Preference p"))
    assert f"#{int(best['id'])}," in msg and "(mva-no-hsic, p·z = " in msg
    at.button(key="explore_pick_load").click().run()
    assert not at.exception, at.exception
    assert at.slider(key="w_warmth").value == pytest.approx(best["w_warmth"])
    assert at.slider(key="w_brevity").value == pytest.approx(best["w_brevity"])
    assert at.selectbox(key="explore_detail").value == int(best["id"])
    assert any(e.label.startswith(f"Candidate #{int(best['id'])} ") for e in at.expander)


def test_rank_reads_as_a_dominance_layer(ws_root, monkeypatch):
    """Issue 17 item 4: "Front rank 1" on a dominated point was the 0-based layer; now it says what it is."""
    at = open_page(monkeypatch, ws_root)
    table = candidate_table(Workspace(ws_root))
    mine = table[table["method"] == "mva-no-hsic"]
    for _, row in mine.iterrows():
        at.selectbox(key="explore_detail").set_value(int(row["id"])).run()
        label = next(e.label for e in at.expander if e.label.startswith(f"Candidate #{int(row['id'])} "))
        want = "on front" if row["rank"] == 0 else f"layer {int(row['rank'])} (dominated)"
        assert label.endswith(want), label


def test_moving_a_slider_shows_the_surrogate_prediction_without_generating(ws_root, monkeypatch):
    """Issue 15 item 1: the predicted point (and ±1 sd bars) follows the sliders at once; nothing is generated or
    stored; the prediction is the surrogate fitted here on the same stored candidates."""
    from mva_core.surrogate import fit_surrogate

    ws = Workspace(ws_root)
    before = len(ws.store.candidates())
    at = open_page(monkeypatch, ws_root)
    at.selectbox(key="explore_method").set_value("mva-no-hsic").run()
    table = candidate_table(ws)
    mine = table[(table["method"] == "mva-no-hsic") & table["finite"]]
    model = fit_surrogate(mine[["w_warmth", "w_brevity"]].to_numpy(dtype=float),
                          mine[["z_warmth", "z_brevity"]].to_numpy(dtype=float), ["w_warmth", "w_brevity"])
    for w in ([0.8, 0.15], [0.1, 0.9]):
        at.slider(key="w_warmth").set_value(w[0])
        at.slider(key="w_brevity").set_value(w[1]).run()
        assert not at.exception, at.exception
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)
        star = next(t for t in spec["data"] if t.get("name") == "predicted (surrogate)")
        mean, sd = model.predict([w])
        assert [plotly_array(star["x"])[0], plotly_array(star["y"])[0]] == pytest.approx(mean[0], abs=1e-6)
        assert plotly_array(star["error_x"]["array"])[0] == pytest.approx(sd[0][0], abs=1e-6)
    assert any("Leave-one-out error" in c.value for c in at.caption)
    assert len(Workspace(ws_root).store.candidates()) == before  # nothing generated
