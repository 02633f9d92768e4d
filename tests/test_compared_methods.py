"""Comparison rows (DESIGN §1 method table) from a workspace's vectors: which stored candidate is a point of
which method, decided by its content (vectors + weights), and sweeps of methods with one model per vector."""

import json

import numpy as np
import pytest
import torch

from mva_core.compose import merge
from mva_core.export import export_candidate
from mva_core.methods import register_method
from mva_core.models import load_base
from mva_core.results import candidate_table
from mva_core.sweep import Evaluator, evaluate_base, method_groups, sweep_groups
from mva_core.vectors import load_value_vector
from mva_core.workspace import WorkspaceError
from tests.tiny import make_tiny_workspace, make_value_vector


@register_method("test-each")
class _EachForTest:
    """A method with one model per preference, as dpo-lw and modpo are."""

    paper = "https://example.org/test"
    composition = "each"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    ws = make_tiny_workspace(root, method="mva-no-hsic")
    for i, pref in enumerate([[0.25, 0.75], [0.75, 0.25]]):
        d = make_value_vector(root / "base", root / "vectors" / "test-each" / f"w={pref[0]},{pref[1]}", "mixed",
                              seed=40 + i)
        meta = json.loads((d / "mva_vector.json").read_text())
        (d / "mva_vector.json").write_text(json.dumps({**meta, "preference": pref}))
    return ws


def test_rows_from_vectors(ws):
    rows = {m.name: m for m in ws.compared_methods()}
    # mva-no-hsic has its own vectors; soup and dpo read them (vectors_from); test-each has its two models.
    assert {"mva-no-hsic", "soup", "dpo-warmth", "dpo-brevity", "test-each"} <= set(rows)
    assert "mva" not in rows  # no vectors/mva here
    assert rows["soup"].vector_dirs == rows["mva-no-hsic"].vector_dirs == tuple(ws.vector_dirs("mva-no-hsic"))
    assert rows["mod"].vector_dirs == rows["mva-no-hsic"].vector_dirs and rows["mod"].composition == "decode-time"
    # the same vectors and weights, decoded another way: a decode-time candidate is mod's alone
    h = rows["mod"].vector_hashes
    assert rows["mod"].contains(h, (1.0, 1.0), "fp|decode-time") and not rows["mod"].contains(h, (1.0, 1.0), "fp")
    assert rows["mva-no-hsic"].contains(h, (1.0, 1.0), "fp") and not rows["mva-no-hsic"].contains(h, (1.0, 1.0),
                                                                                                   "fp|decode-time")
    assert (rows["dpo-warmth"].vertex, rows["dpo-brevity"].vertex) == (0, 1)
    assert [d.name for d in rows["test-each"].vector_dirs] == ["w=0.25,0.75", "w=0.75,0.25"]
    assert [m.composition for m in ws.compared_methods()][0] == "extrapolation"  # grids first
    with pytest.raises(WorkspaceError, match="mva.*train it"):
        ws.compared_method("mva")


@pytest.mark.slow
def test_membership_by_content(ws):
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    W = [[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.25, 0.5]]
    ids = ev.evaluate(W).candidate_ids
    t = candidate_table(ws)
    members = {m: sorted(t.loc[t["method"] == m, "id"]) for m in ("mva-no-hsic", "soup", "dpo-warmth", "dpo-brevity")}
    # written out by hand: all 5 are grid points; 3 sum to 1; the vertices are (1,0) and (0,1)
    assert members["mva-no-hsic"] == sorted(ids)
    assert members["soup"] == sorted([ids[0], ids[1], ids[2]])
    assert members["dpo-warmth"] == [ids[1]] and members["dpo-brevity"] == [ids[2]]
    assert (t.loc[t["id"] == ids[0], "generated_by"] == "mva-no-hsic").all()
    # a shared candidate has the same scores in every method it belongs to
    shared = t[t["id"] == ids[0]]
    assert len(shared) == 2 and shared["raw_warmth"].nunique() == 1
    # ranks are per method: (0.5, 0.5) may be dominated in the grid yet be compared only to soup's points in soup
    for m, grp in t[t["method"] != "base"].groupby("method"):
        assert grp["id"].is_unique


def test_each_method_sweeps_every_model_alone(ws):
    groups = method_groups(ws, "test-each", step=0.5)
    assert [W.tolist() for _, W in groups] == [[[1.0]], [[1.0]]]
    res = sweep_groups("test-each", groups, chunk=4)
    assert res.generated == 2 and len(set(res.candidate_ids)) == 2
    again = sweep_groups("test-each", method_groups(ws, "test-each", step=0.5), chunk=4)
    assert again.generated == 0 and again.candidate_ids == res.candidate_ids
    t = candidate_table(ws)
    rows = t[t["method"] == "test-each"].sort_values("w_warmth")
    # w_<value> is the preference each model was trained for (from its metadata), not a composition weight
    assert rows[["w_warmth", "w_brevity"]].to_numpy().tolist() == [[0.25, 0.75], [0.75, 0.25]]
    assert not [c for c in t.columns if c.startswith("w_") and c not in ("w_warmth", "w_brevity")]

    # its export composes that one vector at weight 1: the merged model equals base + ΔW of that vector
    cid = int(rows["id"].iloc[0])
    out = export_candidate(ws, cid, "merged", ws.inside("exports", "each0"))
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    base = load_base(ws.manifest.base)
    vec = load_value_vector(ws.compared_method("test-each").vector_dirs[0])
    ref = merge(base.model, [vec], [1.0]).eval()
    ids = torch.tensor([[5, 9, 17, 3, 22]])
    with torch.no_grad():
        assert torch.allclose(exported(ids).logits, ref(ids).logits, atol=1e-5)


def test_stale_candidates_keep_their_name(ws, tmp_path):
    # a candidate whose vectors no method reads any more is listed under "<method> (old vectors)", not lost
    ev = Evaluator(ws, "mva-no-hsic")
    spec = ev.spec([0.3, 0.3], "live")
    from dataclasses import replace

    stale = replace(spec, vector_hashes=("0" * 16, "1" * 16))
    ws.store.add_candidate(stale, ev.prompts, ["a"] * len(ev.prompts))
    t = candidate_table(ws)
    assert (t["method"] == "mva-no-hsic (old vectors)").sum() == 1
    assert np.isin("mva-no-hsic (old vectors)", t["method"].unique())
