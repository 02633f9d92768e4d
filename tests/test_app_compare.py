"""AppTest of the Compare page on a tiny workspace swept for mva-no-hsic (which also gives soup and the
dpo-<value> points): the metrics table equals an independent computation (pymoo HV, brute-force fronts),
and the reference point is shared and editable."""

import json

import numpy as np
import pytest
from pymoo.indicators.hv import HV

from mva_core.results import candidate_table
from mva_core.sweep import evaluate_base, method_groups, sweep_groups
from tests.apptest import open_page
from tests.tiny import make_tiny_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_tiny_workspace(tmp_path_factory.mktemp("cmpws"))
    groups = method_groups(ws, "mva-no-hsic", step=0.5)
    evaluate_base(ws, groups[0][0].base)
    sweep_groups("mva-no-hsic", groups)
    return ws


def brute(F):
    """Indices of rows no other row dominates (maximisation), and the HV above ref by pymoo directly."""
    return [i for i in range(len(F)) if not any((F[j] >= F[i]).all() and (F[j] > F[i]).any() for j in range(len(F)))]


def test_compare_table_matches_independent_metrics(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, "views/compare.py")
    assert set(at.multiselect(key="compare_methods").value) == {"mva-no-hsic", "soup", "dpo-warmth", "dpo-brevity"}
    got = at.dataframe[0].value.set_index("method")
    # independently, from the stored per-prompt scores: z = (mean − base mean) / base sd per value
    cands = ws.store.candidates()
    hashes = json.loads(cands.loc[cands["method"] == "mva-no-hsic", "vector_hashes"].iloc[0])
    base_id = cands.loc[cands["method"] == "base", "id"].iloc[0]
    base_rows = ws.store.responses([int(base_id)])
    mu = np.array([base_rows[s].mean() for s in ("warmth", "brevity")])
    sd = np.array([base_rows[s].std(ddof=0) for s in ("warmth", "brevity")])
    sd = np.where(sd > 0, sd, 1.0)  # the documented rule for a value the base never varies on
    grid = cands[cands["vector_hashes"] == json.dumps(hashes)]
    Z = {int(r.id): (np.array([ws.store.responses([int(r.id)])[s].mean() for s in ("warmth", "brevity")]) - mu) / sd
         for r in grid.itertuples()}
    W = {int(r.id): tuple(r.weights) for r in grid.itertuples()}
    members = {"mva-no-hsic": list(Z), "soup": [i for i in Z if abs(sum(W[i]) - 1) < 1e-9],
               "dpo-warmth": [i for i in Z if W[i] == (1.0, 0.0)], "dpo-brevity": [i for i in Z if W[i] == (0.0, 1.0)]}
    ref = np.min(np.stack(list(Z.values()) + [np.zeros(2)]), axis=0)  # base (z = 0) is a compared candidate too
    for m, ids in members.items():
        F = np.stack([Z[i] for i in ids])
        assert got.loc[m, "candidates"] == len(ids)
        assert got.loc[m, "front size"] == len(brute(F)), m
        better = F[(F > ref).all(axis=1)]
        want = HV(ref_point=-ref)(-better) if len(better) else 0.0
        assert got.loc[m, "hypervolume"] == pytest.approx(want, rel=1e-6, abs=1e-9), m
    assert [at.number_input(key=k).value for k in [n.key for n in at.number_input]] == pytest.approx(ref, abs=1e-4)

    # a lower reference point adds volume: for one point f, HV = Π (f − ref)
    for n, v in zip(at.number_input, ref):
        n.set_value(float(v) - 1.0)
    at.run()
    after = at.dataframe[0].value.set_index("method")
    f = Z[members["dpo-warmth"][0]]
    assert after.loc["dpo-warmth", "hypervolume"] == pytest.approx(float(np.prod(f - (ref - 1.0))), rel=1e-5)



def test_compare_one_method_and_empty_choice(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, "views/compare.py")
    at.multiselect(key="compare_methods").set_value(["soup"]).run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["method"]) == ["soup"]
    at.multiselect(key="compare_methods").set_value([]).run()
    assert any("Choose at least one method" in i.value for i in at.info)


def test_compare_across_workspaces(ws, tmp_path, monkeypatch):
    other = make_tiny_workspace(tmp_path / "second")
    groups = method_groups(other, "mva-no-hsic", step=1.0)
    evaluate_base(other, groups[0][0].base)
    sweep_groups("mva-no-hsic", groups)
    at = open_page(monkeypatch, ws.root, "views/compare.py")
    at.text_area(key="compare_other_ws").set_value(f"{other.root}\n{tmp_path / 'missing'}").run()
    assert not at.exception, at.exception
    got = at.dataframe[0].value.set_index("method")
    assert got.loc["mva-no-hsic @ second", "candidates"] == 4  # the 2 x 2 grid of step 1, written out: 4 points
    assert got.loc["mva-no-hsic", "candidates"] == 9 and "soup @ second" in got.index
    assert any("missing" in e.value and "not an MVA workspace" in e.value for e in at.error)
