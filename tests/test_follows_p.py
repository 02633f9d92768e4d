"""Follows-p (DESIGN "Metrics"; issue 27 item 3): a conditioned policy's rank correlation between the preference p it
was asked for and the trade-off it realised, with its bootstrap interval over the prompts. Checked against a
hand-worked table, scipy's spearmanr, and a brute-force bootstrap over the raw SQLite rows of a tiny MO-ODPO sweep
(same seed); then through `compare --json` and the Compare page."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.stats import ConstantInputWarning, spearmanr

from mva_core import pareto
from mva_core.metrics import follows_p, follows_p_by_method

RESAMPLES = 1000


def test_two_values_by_hand():
    """p_1 = 0, 1/3, 2/3, 1; realised z_1 − z_2 = 0.1, −0.2, 0.5, 0.4 ranks 2, 1, 4, 3: d = 1, −1, 1, −1,
    ρ = 1 − 6·Σd² / (n(n² − 1)) = 1 − 6·4 / 60 = 0.6."""
    p1 = np.array([0, 1 / 3, 2 / 3, 1])
    W = np.stack([p1, 1 - p1], axis=1)
    Z = np.array([[0.3, 0.2], [0.0, 0.2], [1.0, 0.5], [-0.1, -0.5]])  # z_1 − z_2 = 0.1, −0.2, 0.5, 0.4
    assert follows_p(W, Z) == pytest.approx(0.6)
    assert follows_p(W, Z[::-1]) == pytest.approx(spearmanr(p1, Z[::-1, 0] - Z[::-1, 1]).statistic)
    assert follows_p(W, Z[:, ::-1]) == pytest.approx(-0.6)  # leaning the other way: followed backwards
    # ties in the trade-off share their rank (scipy's average ranks)
    tied = np.array([[0.5, 0.0], [0.5, 0.0], [0.2, 0.0], [0.9, 0.0]])
    assert follows_p(W, tied) == pytest.approx(spearmanr(p1, tied[:, 0]).statistic)
    assert np.isnan(follows_p(W, np.ones((4, 2))))  # the same trade-off for every p: nothing to rank
    assert np.isnan(follows_p(W[:2], Z[:2]))  # two runs are too few


def test_three_values_is_the_mean_of_each_values_spearman():
    """n values: mean over i of Spearman(p_i, z_i − mean of the other z), each term from scipy."""
    P = pareto.preference_vectors(3)  # MI-EPO's 13
    Z = np.random.default_rng(3).normal(size=(len(P), 3))
    want = np.mean([spearmanr(P[:, i], Z[:, i] - np.delete(Z, i, axis=1).mean(axis=1)).statistic for i in range(3)])
    assert follows_p(P, Z) == pytest.approx(want)
    # batched over leading axes (bootstrap resamples) as one row at a time
    batch = np.random.default_rng(4).normal(size=(5, len(P), 3))
    np.testing.assert_allclose(follows_p(P, batch), [follows_p(P, z) for z in batch])


def test_two_value_generalisation_reduces_to_the_difference():
    """With 2 values, t_2 = −t_1 and p_2 = 1 − p_1: the mean of the two terms is Spearman(p_1, z_1 − z_2)."""
    P = pareto.preference_vectors(2)
    Z = np.random.default_rng(5).normal(size=(len(P), 2))
    assert follows_p(P, Z) == pytest.approx(spearmanr(P[:, 0], Z[:, 0] - Z[:, 1]).statistic)


# ---- On a tiny MO-ODPO sweep ----

@pytest.fixture(scope="module")
def conditioned_ws(tmp_path_factory):
    """The tiny MO-ODPO workspace, its policy run at MI-EPO's 11 preferences, and two mva-no-hsic candidates."""
    from mva_core.sweep import Evaluator
    from tests.test_methods_conditioned import mo_odpo_workspace

    ws = mo_odpo_workspace(tmp_path_factory.mktemp("follows"))
    Evaluator(ws, "mo-odpo").evaluate(pareto.preference_vectors(2))
    Evaluator(ws, "mva-no-hsic").evaluate([[0.0, 1.0], [1.0, 0.5]])
    return ws


def brute_force(ws, seed: int = 0) -> tuple[float, float, float]:
    """Follows-p of mo-odpo and its 95 % percentile interval, from the raw SQLite rows, one resample at a time:
    prompts drawn as the bootstrap draws them (numpy's default_rng(seed), B × P integers), the base's mean and
    population sd on the drawn prompts, each run's z per value, scipy's spearmanr of p_warmth and z_w − z_b."""
    con = sqlite3.connect(f"file:{ws.root / 'mva.sqlite'}?mode=ro", uri=True)
    cands = {cid: (method, json.loads(p or "null")) for cid, method, p in  # a conditioned run's p: `preference`
             con.execute("SELECT id, method, preference FROM candidates")}
    rows = con.execute("SELECT candidate_id, prompt_idx, scorer, value FROM scores").fetchall()
    n_prompts = 1 + max(r[1] for r in rows)
    R: dict[int, np.ndarray] = {}
    for cid, j, scorer, value in rows:
        R.setdefault(cid, np.full((n_prompts, 2), np.nan))[j, ["warmth", "brevity"].index(scorer)] = value
    base = R[max(c for c, (m, _) in cands.items() if m == "base")]
    runs = sorted(c for c, (m, _) in cands.items() if m == "mo-odpo")
    p1 = np.array([cands[c][1][0] for c in runs])

    def one(prompts):
        b = base[prompts]
        sd = b.std(axis=0)
        sd[sd == 0] = 1.0
        z = np.array([(R[c][prompts].mean(axis=0) - b.mean(axis=0)) / sd for c in runs])
        return spearmanr(p1, z[:, 0] - z[:, 1]).statistic

    estimate = one(np.arange(n_prompts))
    draws = np.random.default_rng(seed).integers(0, n_prompts, size=(RESAMPLES, n_prompts))
    with warnings.catch_warnings():  # resamples where every run ties: undefined, left out (as the code does)
        warnings.simplefilter("ignore", ConstantInputWarning)
        values = np.array([one(d) for d in draws])
    values = values[np.isfinite(values)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(estimate), float(low), float(high)


@pytest.mark.slow
def test_interval_is_the_brute_force_bootstrap(conditioned_ws):
    from mva_core.results import load_table

    got = follows_p_by_method(conditioned_ws, load_table(conditioned_ws), ["mo-odpo", "mva-no-hsic"],
                              RESAMPLES, seed=7)
    estimate, low, high = brute_force(conditioned_ws, seed=7)
    assert got["mo-odpo"].runs == 11
    assert got["mo-odpo"].value == pytest.approx(estimate, abs=1e-9)
    assert got["mo-odpo"].interval.as_list() == pytest.approx([low, high], abs=1e-9)
    assert low < high  # the resamples differ: the interval is not a point
    assert got["mva-no-hsic"].value is None and "not a conditioned policy" in got["mva-no-hsic"].why


@pytest.mark.slow
def test_compare_json_carries_follows_p(conditioned_ws):
    out = subprocess.run([sys.executable, "-m", "mva_core", "compare", "--workspace", str(conditioned_ws.root),
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)["methods"]
    estimate, low, high = brute_force(conditioned_ws, seed=0)  # compare's default seed
    assert doc["mo-odpo"]["follows_p"] == pytest.approx(estimate, abs=1e-9)
    assert doc["mo-odpo"]["follows_p_ci"] == pytest.approx([low, high], abs=1e-9)
    assert doc["mva-no-hsic"]["follows_p"] is None and doc["mva-no-hsic"]["follows_p_ci"] is None


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_compare_page_shows_follows_p_with_its_interval(conditioned_ws, monkeypatch):
    from tests.apptest import open_page

    at = open_page(monkeypatch, conditioned_ws.root, "pages/compare.py")
    shown = at.dataframe[0].value.set_index("method")
    estimate, low, high = brute_force(conditioned_ws, seed=0)
    assert shown.loc["mo-odpo", "follows p"] == pytest.approx(estimate, abs=1e-9)
    assert shown.loc["mo-odpo", "follows p 95% CI"] == f"[{low:+.2f}, {high:+.2f}]"
    assert np.isnan(shown.loc["mva-no-hsic", "follows p"]) and shown.loc["mva-no-hsic", "follows p 95% CI"] == "—"
    assert any("follows p" in c.value for c in at.caption)
