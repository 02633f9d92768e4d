"""AppTest: the front chart (Explore, Compare) marks candidates off the simplex (|Σ w − 1| > 1e-9) as diamonds with a
legend entry, and Compare lists `mod` (decode-time) beside the parameter-space methods with its cost per candidate."""

import json

import numpy as np
import pytest

from mva_core.sweep import evaluate_base, method_groups, sweep_groups
from tests.apptest import open_page, plotly_array
from tests.tiny import make_tiny_workspace

OFF = "off the simplex (extrapolated)"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_tiny_workspace(tmp_path_factory.mktemp("offsimplex"), n_prompts=2)
    for method in ("mva-no-hsic", "mod"):
        groups = method_groups(ws, method, step=0.5)
        evaluate_base(ws, groups[0][0].base)
        sweep_groups(method, groups)
    return ws


def symbols_by_id(trace: dict) -> dict[int, str]:
    ids = plotly_array(trace["customdata"]).astype(int).tolist()
    symbols = trace["marker"]["symbol"]
    return dict(zip(ids, [symbols] * len(ids) if isinstance(symbols, str) else symbols))


def expected_symbols(ws, method: str) -> dict[int, str]:
    """From the stored weights, by hand: a diamond where the weights do not sum to 1."""
    cands = ws.store.candidates()
    mine = cands[cands["decoding"].str.endswith("|decode-time") == (method == "mod")]
    mine = mine[mine["method"] != "base"]
    return {int(i): "diamond" if abs(sum(w) - 1) > 1e-9 else "circle" for i, w in zip(mine["id"], mine["weights"])}


@pytest.mark.slow
def test_explore_marks_off_simplex_candidates(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root)
    at.selectbox(key="explore_method").set_value("mva-no-hsic").run()
    assert not at.exception, at.exception
    traces = {t.get("name"): t for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert OFF in traces and traces[OFF]["marker"]["symbol"] == "diamond"
    got = {**symbols_by_id(traces["dominated"]), **symbols_by_id(traces["Pareto front"])}
    want = expected_symbols(ws, "mva-no-hsic")
    assert got == want and list(want.values()).count("circle") == 3  # (0,1), (½,½), (1,0) of the 9
    at.selectbox(key="explore_method").set_value("mod").run()  # mod's grid is the same [0, C]^n: marked the same way
    assert not at.exception, at.exception
    assert any("Decode-time (MOD)" in c.value and "3 rows per token" in c.value for c in at.caption)
    traces = {t.get("name"): t for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert {**symbols_by_id(traces["dominated"]), **symbols_by_id(traces["Pareto front"])} == expected_symbols(ws, "mod")


@pytest.mark.slow
def test_compare_marks_off_simplex_and_shows_mod_with_its_cost(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, "pages/compare.py")
    assert {"mva-no-hsic", "mod", "soup"} <= set(at.multiselect(key="compare_methods").value)
    traces = {t.get("name"): t for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert OFF in traces
    assert symbols_by_id(traces["mva-no-hsic (all)"]) == expected_symbols(ws, "mva-no-hsic")
    assert symbols_by_id(traces["mod (all)"]) == expected_symbols(ws, "mod")
    assert set(symbols_by_id(traces["soup (all)"]).values()) == {"circle"}  # the simplex itself
    # single-model methods keep symbols of their own, never the off-simplex diamond
    assert all(traces[m]["marker"]["symbol"] != "diamond" for m in ("dpo-warmth", "dpo-brevity"))
    table = at.dataframe[0].value.set_index("method")
    assert table.loc["mod", "rows / token"] == 3 and table.loc["mva-no-hsic", "rows / token"] == 1
    assert table.loc["mod", "s / candidate"] > 0 and table.loc["mva-no-hsic", "s / candidate"] > 0
    assert np.isnan(table.loc["soup", "s / candidate"])  # soup's candidates were all mva-no-hsic's: none generated
    assert table.loc["mod", "hypervolume 95% CI"].startswith("[")


@pytest.mark.slow
def test_export_offers_only_the_table_for_a_decode_time_method(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, "pages/export.py")
    at.selectbox(key="export_method").set_value("mod").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="export_format").options == ["csv"]
    assert any("decode-time" in c.value for c in at.caption)
    at.selectbox(key="export_method").set_value("mva-no-hsic").run()
    assert "merged" in at.selectbox(key="export_format").options
