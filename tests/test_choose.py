"""Choose with confidence (issue 29): P(front) under prompt resampling, shares of the joint front, attainment
surfaces, the pick query and the elicitation posterior, each checked against a hand-worked or brute-force answer."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mva_core.bootstrap import MethodScores
from mva_core.confidence import (attainment_bands, attainment_surface, attainment_surface_2d, front_probability,
                                 joint_front_shares)
from mva_core.elicit import Elicitation, angle_deg, choice_probabilities, direction_grid, recommend, simulate_pick
from mva_core.kinds import EXTRAPOLATION
from mva_core.pick import PickError, PickQuery, parse_bounds, pick, pick_predicted, pick_stored, weight_lattice
from mva_core.surrogate import fit_surrogate
from mva_core.table import CandidateTable

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "data" / "demo"


def brute_front(F: np.ndarray) -> set[int]:
    """Rows no other row dominates (all ≥, one >), finite rows only."""
    ok = [i for i in range(len(F)) if np.isfinite(F[i]).all()]
    return {i for i in ok if not any((F[j] >= F[i]).all() and (F[j] > F[i]).any() for j in ok)}


def brute_p_front(S: np.ndarray, B: int, seed: int = 0) -> np.ndarray:
    """P(front) by loops: the same resampled prompts (numpy's default_rng(seed).integers), raw means (z is an
    increasing map per value, so the front is the raw means' front)."""
    P = S.shape[1]
    idx = np.random.default_rng(seed).integers(0, P, size=(B, P))
    count = np.zeros(S.shape[0])
    for rows in idx:
        for i in brute_front(S[:, rows, :].mean(axis=1)):
            count[i] += 1
    return count / B


# ---- P(front) ----

def test_p_front_is_one_when_dominating_everywhere_and_zero_when_dominated_everywhere():
    rng = np.random.default_rng(3)
    P = 12
    base = rng.normal(size=(P, 2))
    S = rng.normal(size=(5, P, 2))
    S[0] = S[1:4].max(axis=0) + 0.1  # better than every other candidate on every prompt and value
    S[4] = S[1] - 0.1  # worse than candidate 1 on every prompt and value
    p = front_probability(S, base, n_resamples=300)
    assert p[0] == 1.0 and p[4] == 0.0
    # candidates 1-3 are dominated by 0 on every resample too
    assert p.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_p_front_matches_brute_force_on_random_scores():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(7, 9, 2)) + np.linspace(0, 1, 7)[:, None, None] * np.array([1, -1])
    S[2, 4, 1] = np.nan  # a non-finite reward: off the front of every resample that draws prompt 4
    base = rng.normal(size=(9, 2))
    got = front_probability(S, base, n_resamples=200, seed=5)
    np.testing.assert_allclose(got, brute_p_front(S, 200, seed=5))
    S[3, :, 0] = np.nan  # non-finite on every prompt: never on a front
    assert front_probability(S, base, n_resamples=50)[3] == 0.0


def test_joint_front_share_of_a_method_that_dominates_everywhere_is_one():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(10, 2))
    weak = rng.normal(size=(3, 10, 2))
    strong = weak.max(axis=0, keepdims=True) + 0.5  # one candidate above all of `weak` on every prompt
    shares = joint_front_shares([MethodScores("strong", strong), MethodScores("weak", weak)], base, n_resamples=200)
    assert (shares["strong"].share.estimate, shares["strong"].share.low, shares["strong"].share.high) == (1, 1, 1)
    assert (shares["weak"].share.estimate, shares["weak"].share.high) == (0, 0)


def test_joint_front_share_counts_a_shared_candidate_for_both_methods():
    base = np.zeros((4, 2))
    S = np.array([[[1.0, 0.0]] * 4, [[0.0, 1.0]] * 4, [[0.5, -0.5]] * 4])  # two on the front; 12 dominated by 10
    shares = joint_front_shares([MethodScores("a", S[[0, 1]]), MethodScores("b", S[[1, 2]])], base,
                                ids=[[10, 11], [11, 12]], n_resamples=50)
    assert shares["a"].share.estimate == 1.0  # both front points are a's
    assert shares["b"].share.estimate == 0.5  # 11 is b's too; 12 is dominated


# ---- Attainment surfaces ----

def test_attainment_surfaces_of_identical_resamples_coincide_with_the_front():
    front = np.array([[0.0, 3.0], [1.0, 2.0], [2.5, 0.5]])
    for level in (0.1, 0.5, 0.9):
        np.testing.assert_array_equal(attainment_surface([front] * 7, level), front)
    front3 = np.array([[0.0, 3.0, 1.0], [1.0, 2.0, 0.0], [2.5, 0.5, 2.0]])
    for level in (0.1, 0.5, 0.9):
        got = attainment_surface([front3] * 5, level)
        assert sorted(map(tuple, got)) == sorted(map(tuple, front3))
    # scores that do not change from prompt to prompt: every resample is the data, every band is the front
    S = np.repeat(np.array([[[0.0, 2.0]], [[1.0, 1.0]], [[2.0, 0.0]], [[0.5, 0.5]]]), 6, axis=1)  # (4, 6, 2)
    base = np.random.default_rng(0).normal(size=(6, 2))
    base_const = np.tile(base[:1], (6, 1))
    bands = attainment_bands(S, base_const, n_resamples=50)
    # z = (raw − base mean) / 1 (a constant base has std 0, counted as 1)
    want = S[[0, 1, 2], 0] - base_const[0]
    for level, pts in bands.items():
        np.testing.assert_allclose(pts, want, err_msg=str(level))


def test_attainment_surface_2d_hand_example():
    # resample 1 reaches (0, 2) and (2, 0); resample 2 reaches (1, 1)
    fronts = [np.array([[0.0, 2.0], [2.0, 0.0]]), np.array([[1.0, 1.0]])]
    # attained by at least one resample (50 % of 2): the union's corners
    np.testing.assert_array_equal(attainment_surface_2d(fronts, 0.5), [[0, 2], [1, 1], [2, 0]])
    # attained by both: (0, 1) (r1 via (0, 2), r2 via (1, 1)) and (1, 0) (r1 via (2, 0), r2 via (1, 1))
    np.testing.assert_array_equal(attainment_surface_2d(fronts, 1.0), [[0, 1], [1, 0]])


# ---- Pick ----

def hand_table() -> CandidateTable:
    rows = [  # id, method, w_warmth, w_brevity, z_warmth, z_brevity
        (1, "m", 0.0, 0.0, 0.0, 0.0),
        (2, "m", 1.0, 0.0, 0.9, -0.2),
        (3, "m", 0.5, 0.5, 0.5, 0.45),
        (4, "m", 0.6, 0.6, 0.5, 0.5),  # ties 3 on warmth and dominates it
        (5, "m", 0.2, 1.0, 0.1, 0.9),
        (6, "n", None, None, 0.7, 0.41),
        (7, "base", None, None, 0.0, 0.0),
    ]
    f = pd.DataFrame(rows, columns=["id", "method", "w_warmth", "w_brevity", "z_warmth", "z_brevity"])
    f["raw_warmth"], f["raw_brevity"] = f["z_warmth"] * 2, f["z_brevity"] * 3
    f["finite"], f["on_front"] = True, True
    return CandidateTable(f, ("warmth", "brevity"))


def test_pick_stored_on_a_hand_made_table():
    t = hand_table()
    # warmth as high as possible with brevity ≥ 0.4: of m, candidates 3, 4, 5 qualify; 3 and 4 tie at 0.5, 4
    # dominates; of every method, 6 (0.7) wins
    s, why = pick_stored(t, PickQuery("warmth", {"brevity": 0.4}), ["m"])
    assert (s.id, s.method, s.weights, s.z, why) == (4, "m", {"warmth": 0.6, "brevity": 0.6},
                                                     {"warmth": 0.5, "brevity": 0.5}, None)
    s, _ = pick_stored(t, PickQuery("warmth", {"brevity": 0.4}))
    assert (s.id, s.weights) == (6, {})  # a fixed model: no weights
    s, _ = pick_stored(t, PickQuery("brevity", {"warmth": 0.05}), ["m"])
    assert s.id == 5
    s, why = pick_stored(t, PickQuery("warmth", {"brevity": 1.0}), ["m"])
    assert s is None and "no stored candidate of m has brevity ≥ 1" in why and "highest brevity is +0.900" in why


def test_pick_predicted_finds_the_hand_computed_constrained_optimum():
    # z_warmth = w1 − 0.5 w2, z_brevity = w2 − 0.5 w1 (a GP fits a plane on a 5×5 grid almost exactly).
    # max w1 − 0.5 w2 s.t. w2 − 0.5 w1 ≥ 0.4 on [0, 1]²: w2 = 0.4 + 0.5 w1, objective 0.75 w1 − 0.2 → w = (1, 0.9),
    # z = (0.55, 0.4)
    g = np.linspace(0, 1, 5)
    W = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    Z = np.stack([W[:, 0] - 0.5 * W[:, 1], W[:, 1] - 0.5 * W[:, 0]], axis=1)
    model = fit_surrogate(W, Z, ["warmth", "brevity"])
    lattice = weight_lattice(EXTRAPOLATION, 2, 1.0)
    p, why = pick_predicted(model, lattice, PickQuery("warmth", {"brevity": 0.4}), "m", ["warmth", "brevity"])
    assert why is None
    assert p.weights["warmth"] == pytest.approx(1.0, abs=0.011) and p.weights["brevity"] == pytest.approx(0.9, abs=0.02)
    assert p.z["warmth"] == pytest.approx(0.55, abs=0.02) and p.z["brevity"] >= 0.4
    assert 0.4 <= p.p_bounds_met <= 1.0 and p.weights_range["warmth"][1] == pytest.approx(1.0)
    p, why = pick_predicted(model, lattice, PickQuery("warmth", {"brevity": 2.0}), "m", ["warmth", "brevity"])
    assert p is None and "predicts no weights with brevity ≥ 2" in why


def test_pick_query_errors_name_the_fix():
    with pytest.raises(PickError, match="VALUE=NUMBER"):
        parse_bounds(["brevity"])
    with pytest.raises(PickError, match="choose one of"):
        pick(hand_table(), PickQuery("kindness"), {}, 1.0)
    with pytest.raises(PickError, match="has no candidates"):
        pick(hand_table(), PickQuery("warmth"), {}, 1.0, method="nope")
    assert parse_bounds(["brevity=-0.5", "warmth=1"]) == {"brevity": -0.5, "warmth": 1.0}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mva_core", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


@pytest.mark.slow
def test_cli_pick_json_on_the_demo_equals_the_brute_force_answer():
    out = run_cli("pick", "--workspace", str(DEMO), "--maximize", "warmth", "--at-least", "brevity=0.0",
                  "--method", "mva", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    table = pd.read_csv(io.StringIO(run_cli("results", "--workspace", str(DEMO), "--method",
                                                          "mva").stdout))
    mva = table[table["method"] == "mva"]
    ok = mva[mva["z_brevity"] >= 0.0]
    best = ok.sort_values(["z_warmth", "id"], ascending=[False, True]).iloc[0]
    assert doc["stored"]["id"] == int(best["id"]) and doc["units"] == "z"
    assert doc["predicted"]["method"] == "mva" and set(doc["predicted"]["weights"]) == {"warmth", "brevity"}
    assert doc["predicted"]["z"]["brevity"] >= 0.0
    none = run_cli("pick", "--workspace", str(DEMO), "--maximize", "warmth", "--at-least", "brevity=5",
                   "--method", "mva")
    assert none.returncode == 1 and "stored:    none: no stored candidate of mva has brevity ≥ 5" in none.stdout


@pytest.mark.slow
def test_cli_results_has_p_front_matching_brute_force():
    out = run_cli("results", "--workspace", str(DEMO), "--method", "soup")
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(io.StringIO(out.stdout))
    assert table.columns[-1] == "p_front"
    assert table.loc[table["method"] == "base", "p_front"].isna().all()
    soup = table[table["method"] == "soup"]
    from mva_core.metrics import prompt_rewards
    from mva_core.workspace import open_workspace
    ws = open_workspace(DEMO, read_only=True)
    S = prompt_rewards(ws, soup["id"].tolist())
    np.testing.assert_allclose(soup["p_front"].to_numpy(), brute_p_front(S, 1000), atol=1e-12)


# ---- Elicitation ----

def test_choice_probabilities_follow_davidson():
    d, nu = np.array([-2.0, 0.0, 0.7, 50.0]), 0.5
    p = choice_probabilities(d, nu)
    want_a = 1 / (1 + np.exp(-d) + nu * np.exp(-d / 2))  # Davidson 1970 with π_a/π_b = e^d
    want_b = 1 / (1 + np.exp(d) + nu * np.exp(d / 2))
    np.testing.assert_allclose(p[:, 0], want_a)
    np.testing.assert_allclose(p[:, 1], want_b)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_posterior_after_one_pick_is_the_likelihood_on_the_grid():
    Z = np.zeros((2, 1, 2))
    Z[0, 0] = [1.0, 0.0]  # A is warmer, B is shorter
    Z[1, 0] = [0.0, 1.0]
    e = Elicitation(Z, beta=2.0, nu=0.5)
    e.answer(0, 1, 0, "A")
    u = e.grid
    like = 1 / (1 + np.exp(-2.0 * (u[:, 0] - u[:, 1])) + 0.5 * np.exp(-(u[:, 0] - u[:, 1])))
    np.testing.assert_allclose(e.posterior(), like / like.sum())
    assert e.preference()[0] > 0.5  # leans to warmth


@pytest.mark.parametrize("n_values", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_posterior_concentrates_on_the_true_direction_for_a_noiseless_user(n_values):
    rng = np.random.default_rng(7)
    Z = rng.normal(size=(15, 20, n_values))
    for _ in range(3):
        u = np.abs(rng.normal(size=n_values))
        u /= np.linalg.norm(u)
        e = Elicitation(Z, beta=10.0)
        for _ in range(20):
            a, b, j = e.next_pair()
            e.answer(a, b, j, simulate_pick(rng, u, Z[a, j] - Z[b, j], noiseless=True))
        grid_gap = angle_deg(e.grid, u).min()  # the true direction may lie between grid points
        assert angle_deg(e.mean_direction(), u) < 4.0 + grid_gap
        assert e.posterior()[angle_deg(e.grid, u) < 10.0].sum() > 0.95
        rec = recommend(e, Z.mean(axis=1))
        assert rec.candidate is not None and rec.spread_deg < 15.0


def test_direction_grid_is_unit_and_non_negative():
    for n in (2, 3, 4):
        g = direction_grid(n)
        np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0)
        assert (g >= 0).all()


def test_attainment_surface_2d_matches_the_definition_on_random_fronts():
    rng = np.random.default_rng(4)
    fronts = []
    for _ in range(9):
        pts = rng.normal(size=(6, 2))
        fronts.append(pts[sorted(brute_front(pts))])
    fronts.append(np.zeros((0, 2)))  # a resample whose front is empty still counts (it attains nothing)

    def attained(y):  # how many resamples weakly dominate y
        return sum(bool(len(f)) and bool(((f >= y).all(axis=1)).any()) for f in fronts)

    for level in (0.1, 0.5, 0.9):
        k = int(np.ceil(level * len(fronts)))
        surface = attainment_surface_2d(fronts, level)
        assert len(surface)
        for c in surface:  # each corner is attained k times, and nothing just above or right of it is
            assert attained(c) >= k
            assert attained(c + [0, 1e-9]) < k and attained(c + [1e-9, 0]) < k


@pytest.mark.slow
def test_cli_pick_confirm_evaluates_and_stores_the_predicted_point(tmp_path, capsys):
    from mva_core.cli import main
    from mva_core.sweep import Evaluator, evaluate_base
    from tests.tiny import make_tiny_workspace

    ws = make_tiny_workspace(tmp_path)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    # off the pick's lattice (steps of 0.01), so the predicted point is never one of these
    ev.evaluate([[0.005, 0.005], [0.305, 0.305], [0.605, 0.305], [0.305, 0.605], [0.605, 0.605]])
    before = set(ws.store.candidates()["id"])
    assert main(["pick", "--workspace", str(tmp_path), "--maximize", "brevity", "--method", "mva-no-hsic",
                 "--confirm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    cands = ws.store.candidates()
    new = cands[~cands["id"].isin(before)]
    assert len(new) == 1 and new["source"].iloc[0] == "pick" and doc["confirmed"]["id"] == int(new["id"].iloc[0])
    np.testing.assert_allclose(new["weights"].iloc[0], [doc["predicted"]["weights"][v] for v in ("warmth", "brevity")])
    assert doc["confirmed"]["generated"] == 1 and set(doc["confirmed"]["z"]) == {"warmth", "brevity"}


@pytest.mark.slow
def test_cli_compare_json_has_each_methods_share_of_the_joint_front():
    out = run_cli("compare", "--workspace", str(DEMO), "--methods", "mva,soup,ric", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    table = pd.read_csv(io.StringIO(run_cli("results", "--workspace", str(DEMO)).stdout))
    pooled = table[table["method"].isin(["mva", "soup", "ric"])].dropna(subset=["z_warmth", "z_brevity"])
    unique = pooled.drop_duplicates("id")
    F = unique[["z_warmth", "z_brevity"]].to_numpy()
    joint = set(unique["id"].iloc[sorted(brute_front(F))].astype(int))
    for m in ("mva", "soup", "ric"):
        mine = set(pooled.loc[pooled["method"] == m, "id"].astype(int))
        got = doc["methods"][m]
        assert got["front_share"] == pytest.approx(len(joint & mine) / len(joint))
        assert 0.0 <= got["front_share_ci"][0] <= got["front_share_ci"][1] <= 1.0
