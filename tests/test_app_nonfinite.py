"""A scorer that returns NaN and inf for some responses (issue #6, item 1): the scores are stored and flagged,
those candidates are left out of the front, and the Explore and Compare pages count them."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from mva_core import scorers
from mva_core.sweep import Evaluator
from mva_core.workspace import MANIFEST, Workspace
from tests.apptest import open_page, plotly_array, switch_page
from tests.tiny import make_tiny_workspace

NAN_PROMPT, INF_PROMPT = "How do I bake bread?", "Tell me a joke about cats."


def broken(prompt: str, response: str) -> float | None:
    """What the broken scorer returns instead of brevity, or None where it behaves (its rule, written once)."""
    if len(response) % 3 == 0 and prompt == NAN_PROMPT:
        return float("nan")
    if len(response) % 3 == 0 and prompt == INF_PROMPT:
        return float("inf")
    return None


class NonFiniteBrevity(scorers.Scorer):
    name = "test_nonfinite_brevity"
    measures = "brevity, but NaN or inf for some responses (a broken reward model)"

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        out = [broken(p, r) for p, r in zip(prompts, responses)]
        return np.array([1.0 / (1.0 + len(r.split()) / 20) if o is None else o for o, r in zip(out, responses)])


@pytest.fixture()
def ws_root(tmp_path, monkeypatch):
    monkeypatch.setitem(scorers._REGISTRY, NonFiniteBrevity.name, NonFiniteBrevity)
    root = tmp_path / "ws"
    make_tiny_workspace(root)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["values"][1]["scorer"] = NonFiniteBrevity.name  # the value "brevity" now uses the broken scorer
    (root / MANIFEST).write_text(json.dumps(manifest))
    grid = np.arange(0, 1.01, 0.25)
    Evaluator(Workspace(root), "mva-no-hsic").evaluate([[a, b] for a in grid for b in grid])
    yield root
    scorers._CACHE.pop(("registered", NonFiniteBrevity.name), None)


@pytest.mark.slow
def test_nonfinite_scores_are_stored_flagged_excluded_and_counted(ws_root, monkeypatch):
    ws = Workspace(ws_root)
    cands = ws.store.candidates()
    resp = ws.store.responses(cands["id"].tolist())
    # expected, from the stored texts and the scorer's rule
    kind = [broken(p, r) for p, r in zip(resp["prompt"], resp["response"])]  # a list: pandas would make None NaN
    resp["bad"] = [k is not None for k in kind]
    bad_ids = sorted(set(resp.loc[resp["bad"], "candidate_id"]))
    n_nan = sum(k is not None and np.isnan(k) for k in kind)
    n_inf = sum(k is not None and np.isinf(k) for k in kind)
    assert n_nan > 0 and n_inf > 0 and 0 < len(bad_ids) < len(cands)  # the case really has both kinds, and a front

    # ---- Stored and flagged: every score row kept, NaN as NULL, inf as inf, finite = 0 ----
    with sqlite3.connect(ws_root / "mva.sqlite") as con:
        rows = con.execute("SELECT value, finite FROM scores WHERE scorer = ?", (NonFiniteBrevity.name,)).fetchall()
    assert len(rows) == len(resp)
    assert sum(f == 0 for _, f in rows) == n_nan + n_inf
    assert sum(v is None for v, _ in rows) == n_nan and sum(v == float("inf") for v, _ in rows) == n_inf
    per_candidate = resp.groupby("candidate_id")["bad"].sum()
    assert cands.set_index("id")["n_nonfinite"].to_dict() == per_candidate.astype(int).to_dict()

    # ---- Explore: counted, not plotted, not on the front ----
    at = open_page(monkeypatch, ws_root)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Candidates"] == str(len(cands))
    assert metrics["Excluded (non-finite)"] == str(len(bad_ids))
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = {t.get("name"): t for t in spec["data"]}
    plotted = [int(i) for n in ("dominated", "Pareto front") for i in plotly_array(traces[n]["customdata"])]
    good = cands[~cands["id"].isin(bad_ids)]
    assert sorted(plotted) == sorted(good["id"].tolist())
    # the front by brute force over the finite candidates' raw means (no base model: z = raw here)
    F = good[["s_warmth", f"s_{NonFiniteBrevity.name}"]].to_numpy(dtype=float)
    front = [int(good["id"].iloc[i]) for i in range(len(F))
             if not any((F[j] >= F[i]).all() and (F[j] > F[i]).any() for j in range(len(F)))]
    assert sorted(int(i) for i in plotly_array(traces["Pareto front"]["customdata"])) == sorted(front)
    assert metrics["Front size"] == str(len(front))

    # ---- Compare: the same count in the method's row ----
    switch_page(at, "pages/compare.py").run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "non-finite" in d.value.columns)
    row = table[table["method"] == "mva-no-hsic"].iloc[0]
    assert int(row["non-finite"]) == len(bad_ids) and int(row["front size"]) == len(front)
