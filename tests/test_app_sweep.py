"""AppTest of the Sweep page on a tiny workspace: a 0.5-step grid is generated once, stored, never recomputed."""

import json

import numpy as np
import pytest

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


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_sweep_stores_grid_once_and_resumes_from_store(ws_root, monkeypatch):
    # One grid point evaluated beforehand (as Explore would): the sweep must reuse it, not regenerate it.
    live = Evaluator(Workspace(ws_root), METHOD).evaluate([[0.5, 0.5]], source="live").candidate_ids[0]
    at = open_page(monkeypatch, ws_root, "pages/sweep.py")
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
    at = open_page(monkeypatch, ws_root, "pages/sweep.py")
    at.number_input(key="sweep_step").set_value(2.0).run()
    assert not at.exception, at.exception
    assert any("step=2.0" in e.value and "C=1.0" in e.value for e in at.error)
    assert not at.button  # nothing to start


# ---- The pickers: C, values, prompt set, scorers ----

@pytest.fixture
def fresh_root(tmp_path):
    make_tiny_workspace(tmp_path, method=METHOD)
    return tmp_path


def test_sweep_C_sets_the_grid_and_bounds_the_stored_weights(fresh_root, monkeypatch):
    at = open_page(monkeypatch, fresh_root, "pages/sweep.py")
    at.number_input(key="sweep_step").set_value(0.25).run()
    assert metric(at, "Grid candidates") == str(5 ** 2)  # ticks 0, .25, .5, .75, 1 per value
    at.number_input(key="sweep_C").set_value(0.5).run()
    assert metric(at, "Grid candidates") == str(3 ** 2) and metric(at, "Weight bound C") == "0.5"
    at.number_input(key="sweep_C").set_value(0.75)
    at.number_input(key="sweep_step").set_value(0.5).run()
    assert metric(at, "Grid candidates") == str(2 ** 2)  # 0, 0.5 (1.0 is above C)
    # Above workspace.json's C = 1: the grid reaches C and the sweep stores those weights.
    at.number_input(key="sweep_C").set_value(2.0)
    at.number_input(key="sweep_step").set_value(1.0).run()
    assert metric(at, "Grid candidates") == str(3 ** 2)
    assert any("above workspace.json's C = 1" in i.value for i in at.info)
    at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception
    weights = sorted(tuple(w) for w in Workspace(fresh_root).store.candidates(METHOD)["weights"])
    assert weights == sorted((a, b) for a in (0.0, 1.0, 2.0) for b in (0.0, 1.0, 2.0))


@pytest.mark.slow
def test_sweep_a_subset_of_values_fixes_the_others_at_zero(fresh_root, monkeypatch):
    at = open_page(monkeypatch, fresh_root, "pages/sweep.py")
    at.number_input(key="sweep_step").set_value(0.5).run()
    at.multiselect(key="sweep_values").unselect("brevity").run()
    assert metric(at, "Grid candidates") == "3"  # warmth in {0, .5, 1}, brevity = 0
    assert any("brevity stay at 0" in c.value for c in at.caption)
    at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception
    cands = Workspace(fresh_root).store.candidates(METHOD)
    assert sorted(tuple(w) for w in cands["weights"]) == [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0)]
    # Both values again: the three stored points are part of the 3 x 3 grid, not generated twice.
    at.multiselect(key="sweep_values").select("brevity").run()
    assert metric(at, "Grid candidates") == "9" and metric(at, "Already stored") == "3"


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_sweep_on_another_prompt_set_keeps_the_default_sets_results(fresh_root, monkeypatch):
    other = ["Name a colour.", "What is two plus two?"]
    (fresh_root / "prompts" / "other.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in other))
    default = [json.loads(line)["prompt"] for line in (fresh_root / "prompts" / "validation.jsonl").read_text().splitlines()]
    at = open_page(monkeypatch, fresh_root, "pages/sweep.py")
    at.number_input(key="sweep_step").set_value(1.0).run()
    at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception
    store = Workspace(fresh_root).store
    before = store.candidates()
    first = before[before["method"] == METHOD]
    first_resp = store.responses(first["id"].tolist())[["candidate_id", "prompt", "response"]]
    assert len(first) == 4 and set(first_resp["prompt"]) == set(default)

    at.selectbox(key="sweep_prompts").set_value("prompts/other.jsonl (workspace)").run()
    assert metric(at, "Prompts") == "2" and metric(at, "Already stored") == "0"  # same weights, other prompts
    at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception
    assert at.session_state["sweep_last"]["generated"] == 4
    after = store.candidates()
    new = after[~after["id"].isin(before["id"])]
    assert sorted(new["method"]) == sorted([METHOD] * 4 + ["base"])  # its own base model: its z-score reference
    assert set(store.responses(new["id"].tolist())["prompt"]) == set(other)
    # The default set's candidates are untouched: same ids, keys, runs and responses.
    kept = after[after["id"].isin(before["id"])]
    assert kept[["id", "key", "run_id"]].equals(before[["id", "key", "run_id"]])
    assert store.responses(first["id"].tolist())[["candidate_id", "prompt", "response"]].equals(first_resp)
    # The chart shows this set's 4 candidates and its base model only.
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    n = {t["name"]: t for t in spec["data"]}
    assert len(plotly_array(n["Pareto front"]["x"])) + len(plotly_array(n["dominated"]["x"])) == 4
    assert len(plotly_array(n["base model"]["x"])) == 1

    # Back on the default set: all 4 answered from the store, nothing generated.
    at.selectbox(key="sweep_prompts").set_value("prompts/validation.jsonl (workspace.json)").run()
    assert metric(at, "Already stored") == "4" and metric(at, "Prompts") == str(len(default))
    at.button(key="sweep_start").click().run()
    assert at.session_state["sweep_last"]["generated"] == 0 and len(store.candidates()) == len(after)


def test_sweep_shows_each_values_scorer_and_adds_an_extra_scorer(fresh_root, monkeypatch):
    from profanity_check import predict_prob

    at = open_page(monkeypatch, fresh_root, "pages/sweep.py")
    scorers = at.dataframe[0].value
    assert scorers[["value", "scorer"]].values.tolist() == [["warmth", "warmth"], ["brevity", "brevity"]]
    assert "civility" in at.multiselect(key="sweep_extra").options
    assert "warmth" not in at.multiselect(key="sweep_extra").options  # already a value's scorer
    at.number_input(key="sweep_step").set_value(1.0).run()
    at.multiselect(key="sweep_extra").select("civility").run()
    at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception
    store = Workspace(fresh_root).store
    ids = store.candidates(METHOD)["id"].tolist()
    rows = store.responses(ids)
    assert len(ids) == 4 and rows["civility"].notna().all()
    # civility = 1 - alt-profanity-check's probability, per response, computed here from the library itself
    np.testing.assert_allclose(rows["civility"], 1.0 - predict_prob(rows["response"].tolist()), rtol=1e-12)
    shown = at.dataframe[1].value  # the extra-scores table: one row per candidate of this grid
    means = rows.groupby("candidate_id")["civility"].mean()
    assert sorted(shown["id"]) == sorted(ids)
    np.testing.assert_allclose(shown.set_index("id")["civility"].sort_index(), means.sort_index())


def test_sweep_pickers_reject_bad_input(ws_root, monkeypatch):
    (ws_root / "prompts" / "broken.jsonl").write_text('{"prompt": "fine"}\n{"text": "no prompt field"}\n')
    at = open_page(monkeypatch, ws_root, "pages/sweep.py")
    at.number_input(key="sweep_C").set_value(0.0).run()
    assert not at.exception, at.exception
    assert any("C=0.0" in e.value and "positive" in e.value for e in at.error) and not at.button
    at.number_input(key="sweep_C").set_value(1.0)
    at.multiselect(key="sweep_values").unselect("warmth").unselect("brevity").run()
    assert any("at least one value" in e.value for e in at.error) and not at.button
    at.multiselect(key="sweep_values").select("warmth").run()
    at.selectbox(key="sweep_prompts").set_value("prompts/broken.jsonl (workspace)").run()
    assert any("broken.jsonl:2" in e.value and "missing field 'prompt'" in e.value for e in at.error)
    assert not at.button
    # A method without a weight grid always uses every value: the picker is disabled for it.
    at.selectbox(key="sweep_prompts").set_value("prompts/validation.jsonl (workspace.json)").run()
    at.selectbox(key="sweep_method").set_value("dpo-warmth").run()
    assert at.multiselect(key="sweep_values").disabled and not at.error
