"""SQLite store + evaluator: cache hits, per-scorer scores, non-finite flags, a resumable grid."""

import math

import numpy as np
import pytest

from mva_core.config import WeightsError
from mva_core.store import CandidateSpec, Store
from mva_core.sweep import Evaluator, evaluate_base, sweep
from tests.tiny import make_tiny_workspace


def spec(w, method="m"):
    return CandidateSpec(method, "sweep", ("a", "b"), tuple(w), ("h1", "h2"), "base", "p", "d")


def test_store_roundtrip_and_nonfinite_flags(tmp_path):
    st = Store(tmp_path / "mva.sqlite")
    cid = st.add_candidate(spec((0.5, 1.0)), ["p0", "p1"], ["r0", "r1"])
    assert st.add_candidate(spec((0.5, 1.0)), ["p0", "p1"], ["x", "y"]) == cid  # same key: no duplicate
    assert st.find([spec((0.5, 1.0)).key, spec((0.1, 0.2)).key]) == {spec((0.5, 1.0)).key: cid}
    st.add_scores(cid, "s1", [1.0, 3.0])
    st.add_scores(cid, "s2", [float("nan"), 2.0])
    st.add_scores(cid, "s3", [float("inf"), 2.0])
    table = st.candidates()
    row = table.iloc[0]
    assert row["s_s1"] == 2.0 and math.isnan(row["s_s2"]) and math.isnan(row["s_s3"])
    assert row["n_nonfinite"] == 2 and row["weights"] == [0.5, 1.0] and row["w_a"] == 0.5
    resp = st.responses([cid])
    assert resp["response"].tolist() == ["r0", "r1"] and resp["s1"].tolist() == [1.0, 3.0]
    assert math.isinf(resp["s3"].iloc[0])
    assert st.scored([cid], "s1") == {cid} and st.scored([cid], "other") == set()


def test_weights_key_is_rounding_stable(tmp_path):
    assert spec((0.1 + 0.2, 1.0)).key == spec((0.3, 1.0)).key
    assert spec((0.3, 1.0)).key != spec((0.3, 1.0), method="m").key.upper()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_tiny_workspace(tmp_path_factory.mktemp("ws"))


def test_evaluate_caches_and_scores(ws):
    ev = Evaluator(ws, "mva-no-hsic")
    first = ev.evaluate([[0.5, 1.0], [0.0, 0.25]])
    assert first.generated == 2
    again = ev.evaluate([[0.5, 1.0], [0.0, 0.25]])
    assert again.generated == 0 and again.candidate_ids == first.candidate_ids
    table = ws.store.candidates()
    row = table[table["id"] == first.candidate_ids[0]].iloc[0]
    resp = ws.store.responses([first.candidate_ids[0]])
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    vader = SentimentIntensityAnalyzer()
    expect = np.mean([vader.polarity_scores(r)["compound"] for r in resp["response"]])
    assert row["s_warmth"] == pytest.approx(expect)
    with pytest.raises(WeightsError, match="outside"):
        ev.evaluate([[1.5, 0.0]])
    with pytest.raises(WeightsError, match="2 value vectors"):
        ev.evaluate([[0.5]])


@pytest.mark.slow
def test_sweep_resumes_without_duplicates(ws):
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    grid = ws.space(step=0.5).grid()
    sweep(ev, grid[:4], chunk=2)  # an "interrupted" sweep
    before = ws.store.candidates()
    already = {ev.spec(w, "sweep").key for w in grid} & set(before["key"])
    assert len(already) >= 4
    res = sweep(ev, grid, chunk=2)
    ids = res.candidate_ids
    assert res.generated == len(grid) - len(already)
    after = ws.store.candidates()
    assert len(set(ids)) == len(grid) == 9
    assert len(after) == len(before) + len(grid) - len(already)
    assert after["key"].is_unique


def test_weight_sets_on_a_subset_of_values_fix_the_others_at_zero():
    from pathlib import Path

    from mva_core.config import ConfigError
    from mva_core.workspace import ComparedMethod

    m = ComparedMethod("m", "m", "extrapolation", (Path("a"), Path("b"), Path("c")), ("h1", "h2", "h3"))
    [(_, W)] = m.weight_sets(C=2.0, step=1.0, active=[0, 2])
    assert sorted(map(tuple, W)) == sorted((a, 0.0, c) for a in (0.0, 1.0, 2.0) for c in (0.0, 1.0, 2.0))
    [(_, W)] = m.weight_sets(C=2.0, step=0.5)  # all values: (2 / 0.5 + 1)^3 points
    assert len(W) == 5 ** 3
    [(_, W)] = ComparedMethod("s", "s", "simplex", m.vector_dirs, m.vector_hashes).weight_sets(1.0, 0.5, active=[1, 2])
    assert sorted(map(tuple, W)) == [(0.0, 0.0, 1.0), (0.0, 0.5, 0.5), (0.0, 1.0, 0.0)]
    with pytest.raises(ConfigError, match="choose one or more"):
        next(m.weight_sets(1.0, 0.5, active=[]))
    with pytest.raises(ConfigError, match="no weight grid"):
        next(ComparedMethod("v", "dpo", "vertices", m.vector_dirs, m.vector_hashes, vertex=0).weight_sets(1.0, 1.0, [0]))


def test_forget_other_prompt_sets_keeps_only_the_current_prompts(tmp_path):
    """A workspace re-evaluated on new prompts (the demo rebuild): the old prompt set's candidates, responses,
    scores and sweep runs go, the new ones and the training runs stay, and the file shrinks back."""
    import json

    from mva_core.store import prompts_hash
    from mva_core.sweep import method_groups, sweep_groups
    from mva_core.workspace import Workspace

    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=3)
    ws.store.finish_run(ws.store.start_run("train", {"method": "mva-no-hsic"}, "mva-no-hsic"), "done")
    sweep_groups("mva-no-hsic", method_groups(ws, "mva-no-hsic", 0.5))
    old = len(ws.store.candidates())
    prompts = ws.root / ws.manifest.prompts
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in ["Say hi.", "Name a fruit."]) + "\n")
    ws = Workspace(ws.root)
    sweep_groups("mva-no-hsic", method_groups(ws, "mva-no-hsic", 0.5))
    keep = prompts_hash(ws.prompts())
    assert ws.store.forget_other_prompt_sets(keep) == old
    cands = ws.store.candidates()
    assert len(cands) == old and set(cands["prompts_hash"]) == {keep}
    assert set(ws.store.responses(cands["id"].tolist())["prompt"]) == {"Say hi.", "Name a fruit."}
    import sqlite3
    with sqlite3.connect(ws.store.path) as con:
        orphans = con.execute("SELECT COUNT(*) FROM scores WHERE candidate_id NOT IN (SELECT id FROM candidates)")
        assert orphans.fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM responses WHERE candidate_id NOT IN "
                           "(SELECT id FROM candidates)").fetchone()[0] == 0
    runs = ws.store.runs()
    assert sorted(runs["kind"]) == ["sweep", "train"]  # the old prompts' sweep run went, training stayed
