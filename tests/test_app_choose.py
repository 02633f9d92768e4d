"""AppTests of issue 29's page additions: Explore's P(front) rings, pick box and "which answer is better?" panel,
Compare's attainment bands, joint-front shares and 3-D 50 % surface, Export's default selection. On copies of the
shipped demos (never written) and a tiny workspace for the one click that evaluates."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mva_core.metrics import prompt_rewards
from mva_core.results import candidate_table
from mva_core.sweep import Evaluator, evaluate_base
from mva_core.workspace import Workspace, open_workspace
from streamlit.testing.v1 import AppTest

from tests.apptest import APP, open_page, plotly_array, switch_page
from tests.test_choose import brute_front, brute_p_front
from tests.tiny import make_tiny_workspace

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("choose") / "demo"
    shutil.copytree(REPO / "data" / "demo", root)
    return root


def trace(at, name: str, chart: int = 0) -> dict:
    spec = json.loads(at.get("plotly_chart")[chart].proto.spec)
    return next(t for t in spec["data"] if t.get("name") == name)


def trace_names(at, chart: int = 0) -> list[str]:
    return [t.get("name") for t in json.loads(at.get("plotly_chart")[chart].proto.spec)["data"]]


@pytest.mark.slow
def test_explore_rings_pick_box_and_elicitation(demo, monkeypatch):
    at = open_page(monkeypatch, demo)
    at.selectbox(key="explore_method").set_value("mva").run()
    assert not at.exception, at.exception
    ws = open_workspace(demo, read_only=True)
    table = candidate_table(ws)
    mva = table[(table["method"] == "mva") & table["finite"]]

    # ---- P(front): ring opacity = the share of resamples on the front, by brute force over the stored scores ----
    ring = trace(at, "P(front) ring")
    want = dict(zip(mva["id"].astype(int), brute_p_front(prompt_rewards(ws, mva["id"].tolist()), 1000)))
    got = dict(zip(plotly_array(ring["customdata"]).astype(int).tolist(), ring["marker"]["opacity"]))
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[i] for i in want], list(want.values()), atol=1e-12)
    front = trace(at, "Pareto front")
    assert all("on the front in" in h and "% of resamples" in h for h in front["hovertext"])

    # ---- Pick: the highest warmth with brevity ≥ 0 among mva's candidates (z units, as the chart) ----
    at.number_input(key="pick_at_least_brevity").set_value(0.0).run()
    assert not at.exception, at.exception
    ok = mva[mva["z_brevity"] >= 0.0].sort_values(["z_warmth", "id"], ascending=[False, True])
    stored = next(m.value for m in at.markdown if m.value.startswith("**Stored:**"))
    assert f"candidate #{int(ok['id'].iloc[0])}," in stored
    mark = trace(at, "pick: stored answer")
    assert plotly_array(mark["x"])[0] == pytest.approx(ok["z_warmth"].iloc[0])
    predicted = next(m.value for m in at.markdown if m.value.startswith("**Predicted**"))
    assert "all bounds met with probability" in predicted and "pick: predicted answer" in trace_names(at)
    at.number_input(key="pick_at_least_brevity").set_value(5.0).run()
    assert any(m.value.startswith("**Stored:** none. No stored candidate of mva has brevity ≥ 5") for m in at.markdown)

    # ---- Which answer is better? 10 picks, then the recommendation and its region on the chart ----
    for k in range(10):
        at.button(key=("elicit_A", "elicit_B", "elicit_same")[k % 3 if k < 6 else 0]).click().run()
        assert not at.exception, at.exception
    assert len(at.session_state["elicit_picks_mva"]) == 10
    rec = next(m.value for m in at.markdown if m.value.startswith("**Recommended weights**"))
    p = np.array([float(x.split()[1].rstrip(";")) for x in rec.split(": ", 1)[1].split("; ")[0].split(", ")])
    assert p.sum() == pytest.approx(1.0, abs=0.011)
    names = trace_names(at)
    assert "your weights: 90% credible directions" in names and "your weights: nearest front candidate" in names
    # the nearest front candidate: maximises p·z over mva's front (brute force), p as printed (2 decimals)
    F = mva[["z_warmth", "z_brevity"]].to_numpy()
    on_front = sorted(brute_front(F))
    best = max(on_front, key=lambda i: F[i] @ p)
    near = next(m.value for m in at.markdown if m.value.startswith("Nearest front candidate"))
    assert f"**#{int(mva['id'].iloc[best])}**" in near
    at.button(key="elicit_load").click().run()
    row = mva.iloc[best]
    assert at.slider(key="w_warmth").value == pytest.approx(row["w_warmth"])


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_explore_pick_confirm_evaluates_and_stores_the_predicted_point(tmp_path, monkeypatch):
    ws = make_tiny_workspace(tmp_path)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    # off the pick's lattice (steps of 0.01), so the predicted point is never one of these
    ev.evaluate([[0.005, 0.005], [0.305, 0.305], [0.605, 0.305], [0.305, 0.605], [0.605, 0.605]])
    at = open_page(monkeypatch, tmp_path)
    at.selectbox(key="explore_method").set_value("mva-no-hsic").run()
    at.selectbox(key="pick_maximize").set_value("brevity").run()  # the tiny model's responses vary in length
    predicted = next(m.value for m in at.markdown if m.value.startswith("**Predicted**"))
    weights = [float(x.split()[1].rstrip(",)")) for x in predicted.split("weights (", 1)[1].split(")")[0].split(", ")]
    before = Workspace(tmp_path).store.candidates()
    assert not any(len(w) == 2 and np.allclose(w, weights) for w in before["weights"]), (weights, predicted)
    at.button(key="pick_confirm").click().run()
    assert not at.exception, at.exception
    cands = Workspace(tmp_path).store.candidates()
    new = cands[~cands["id"].isin(before["id"])]
    assert len(new) == 1 and new["source"].iloc[0] == "pick"
    np.testing.assert_allclose(new["weights"].iloc[0], weights)  # the predicted weights, evaluated for real
    assert at.session_state["explore_candidate"] == int(new["id"].iloc[0])
    assert any(c.value.startswith(f"Evaluated: candidate #{int(new['id'].iloc[0])} measured") for c in at.caption)


@pytest.mark.slow
def test_compare_attainment_bands_and_joint_front_shares(demo, monkeypatch):
    at = open_page(monkeypatch, demo, "pages/compare.py")
    at.multiselect(key="compare_methods").set_value(["mva", "soup", "ric"]).run()
    assert not at.exception, at.exception
    names = trace_names(at)
    for m in ("mva", "soup", "ric"):
        assert f"{m}: 10–90 % attainment band" in names and f"{m}: 50 % attainment surface" in names
    # the 50 % surface is a staircase: x never decreases, y never increases along it
    mid = trace(at, "mva: 50 % attainment surface")
    x, y = plotly_array(mid["x"]), plotly_array(mid["y"])
    assert (np.diff(x) >= 0).all() and (np.diff(y) <= 0).all()
    # shares of the joint front on the prompts as they are, by brute force over the pooled candidates
    shares = next(d.value for d in at.dataframe if "share of the joint front" in d.value.columns).set_index("method")
    table = candidate_table(open_workspace(demo, read_only=True))
    pooled = table[table["method"].isin(["mva", "soup", "ric"]) & table["finite"]]
    unique = pooled.drop_duplicates("id")
    F = unique[["z_warmth", "z_brevity"]].to_numpy()
    joint = set(unique["id"].iloc[sorted(brute_front(F))].astype(int))
    for m in ("mva", "soup", "ric"):
        mine = set(pooled.loc[pooled["method"] == m, "id"].astype(int))
        assert shares.loc[m, "share of the joint front"] == pytest.approx(len(joint & mine) / len(joint))
    at.toggle(key="compare_bands").set_value(False).run()
    assert not any("attainment" in (n or "") for n in trace_names(at))


@pytest.mark.slow
def test_compare_3d_shows_the_median_surface_and_the_others_on_demand(tmp_path, monkeypatch):
    root = tmp_path / "demo3"
    shutil.copytree(REPO / "data" / "demo3", root)
    monkeypatch.setenv("MVA_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=900).run()  # every method's bands on 2 cores: minutes
    switch_page(at, "pages/compare.py").run()
    assert not at.exception, at.exception
    at.multiselect(key="compare_methods").set_value(["mva-no-hsic"]).run()
    assert not at.exception, at.exception
    chart = next(i for i in range(len(at.get("plotly_chart"))) if "mva-no-hsic front" in trace_names(at, i))
    names = trace_names(at, chart)
    assert "mva-no-hsic: 50% attainment" in names and not any(n.endswith(("10% attainment", "90% attainment"))
                                                               for n in names)
    at.multiselect(key="compare_band_levels").set_value([0.1, 0.5, 0.9]).run()
    names = trace_names(at, chart)
    assert {"mva-no-hsic: 10% attainment", "mva-no-hsic: 90% attainment"} <= set(names)


@pytest.mark.slow
def test_export_default_selection_is_the_front_in_half_the_resamples(demo, monkeypatch):
    at = open_page(monkeypatch, demo, "pages/export.py")
    at.selectbox(key="export_method").set_value("soup").run()
    assert not at.exception, at.exception
    ws = open_workspace(demo, read_only=True)
    table = candidate_table(ws)
    soup = table[(table["method"] == "soup") & table["finite"]]
    p = brute_p_front(prompt_rewards(ws, soup["id"].tolist()), 1000)
    want = sorted(int(i) for i, x in zip(soup["id"], p) if x >= 0.5)
    assert sorted(at.multiselect(key="export_pick_soup").value) == want and want
    assert any("P(front)" in o for o in at.multiselect(key="export_pick_soup").options)
