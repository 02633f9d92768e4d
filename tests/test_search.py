"""Adaptive front search (issue 15 item 2): on a synthetic 3-objective trade-off it reaches >= 95 % of the
exhaustive grid's hypervolume (one reference point) with 20 % of the grid's evaluations; through the real engine
it stores what it evaluates, and an interrupted search resumes, spending only what is left of its budget."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import numpy as np
import pytest

from mva_core import pareto
from mva_core.cli import main
from mva_core.kinds import SearchSpace
from mva_core.search import (MAX_POOL, candidate_pool, dominance_gap, neighbours, propose, search_front,
                              search_method, seed_design, spread_out, stored_history)
from mva_core.workspace import Workspace
from tests.tiny import make_tiny_workspace


def interference(W: np.ndarray) -> np.ndarray:
    """Each value rises with its own weight and falls with the square of the others': a curved 3-D front."""
    others = W.sum(axis=1, keepdims=True) - W
    return W - 0.8 * others ** 2


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.slow
def test_search_reaches_the_grids_hypervolume_with_a_fifth_of_the_evaluations(seed):
    ticks = np.linspace(0, 1, 5)
    grid = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3)  # 125 candidates
    ref = interference(grid).min(axis=0)
    calls = []

    def evaluate(W):
        calls.append(len(W))
        return interference(W)

    result = search_front(evaluate, SearchSpace(n_values=3, C=1.0, step=0.25), budget=25, ref=ref, seed=seed)
    assert sum(calls) == 25 and len(result.weights) == 25
    assert result.hv_history[-1] >= 0.95 * pareto.hypervolume(interference(grid), ref)
    assert all(a <= b + 1e-12 for a, b in zip(result.hv_history, result.hv_history[1:]))  # the front only grows


def test_seed_design_is_the_extremes_of_the_trade_off():
    assert seed_design(SearchSpace(n_values=3, C=2.0, step=0.5)).tolist() == [
        [0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2], [2, 2, 2]]
    assert seed_design(SearchSpace(n_values=1, C=1.0, step=0.5)).tolist() == [[0], [1]]


def test_dominance_gap_by_hand():
    front = np.array([[1.0, 0.0], [0.0, 1.0]])
    points = np.array([[0.5, -0.5],  # below (1, 0) by 0.5 and 0.5: must rise 0.5; (0, 1) needs only -0.5
                       [0.2, 0.3],  # under neither front point's both coordinates: 0.2 > 0 and 0.3 > 0
                       [-1.0, -1.0]])  # must rise 1 in both values to tie either front point
    # max over f of min_j (f_j - p_j): [max(min(.5, .5), min(-.5, 1.5)), max(min(.8, -.3), min(-.2, .7)), 1]
    assert dominance_gap(points, front).tolist() == pytest.approx([0.5, -0.2, 1.0])


def test_candidate_pool_is_the_lattice_left_and_samples_a_large_one():
    small = SearchSpace(n_values=2, C=1.0, step=0.5)
    done = np.array([[0.0, 0.0], [0.5, 1.0]])
    pool = candidate_pool(small, done, done, np.random.default_rng(0))
    assert len(pool) == 9 - 2 and not any((pool == w).all(axis=1).any() for w in done)
    large = SearchSpace(n_values=4, C=1.0, step=0.05)  # 21^4 = 194,481 points: sampled, on the lattice
    assert large.grid_size() > MAX_POOL
    pool = candidate_pool(large, done[:0].reshape(0, 4), np.full((1, 4), 0.5), np.random.default_rng(0))
    assert 0 < len(pool) <= MAX_POOL and len(np.unique(pool, axis=0)) == len(pool)
    assert np.allclose(pool / 0.05, np.rint(pool / 0.05)) and pool.min() >= 0 and pool.max() <= 1


def test_neighbours_are_the_lattice_points_one_step_from_the_front_by_hand():
    space = SearchSpace(n_values=2, C=1.0, step=0.5)  # ticks 0, 0.5, 1
    rng = np.random.default_rng(0)
    corner = neighbours(space, np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]]), 1, rng)
    assert sorted(map(tuple, corner.tolist())) == [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0)]  # itself evaluated
    centre = neighbours(space, np.array([[0.5, 0.5]]), np.array([[0.5, 0.5], [1.0, 1.0]]), 1, rng)
    assert len(centre) == 9 - 2  # the whole 3 x 3 lattice but the two evaluated
    assert len(neighbours(space, np.array([[0.5, 0.5]]), np.zeros((0, 2)), 0, rng)) == 0  # radius 0: none
    wide = SearchSpace(n_values=10, C=1.0, step=0.1)  # 3^10 offsets > MAX_POOL: drawn, still one step at most
    near = neighbours(wide, np.full((1, 10), 0.5), np.zeros((0, 10)), 1, rng)
    assert 0 < len(near) <= MAX_POOL and np.abs(near - 0.5).max() <= 0.1 + 1e-9
    assert np.allclose(near / 0.1, np.rint(near / 0.1))


def test_picks_stay_next_to_the_measured_front_until_its_neighbourhood_is_spent():
    space = SearchSpace(n_values=2, C=1.0, step=0.1)
    W = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    Z = interference(np.pad(W, ((0, 0), (0, 1))))[:, :2]
    front_w = W[pareto.front_indices(Z)]
    ref = Z.min(axis=0)
    nearby = neighbours(space, front_w, W, 1, np.random.default_rng(0))

    def steps(points):  # each point's Chebyshev distance, in steps, to the nearest front weight
        return np.rint(np.abs(points[:, None] - front_w[None]).max(axis=2).min(axis=1) / 0.1)

    picks = propose(W, Z, space, len(nearby) + 3, ref, np.random.default_rng(0))
    assert (steps(picks[: len(nearby)]) == 1).all()  # first every neighbour, in the acquisition's order
    assert (steps(picks[len(nearby):]) > 1).all()  # then anywhere on the lattice
    anywhere = propose(W, Z, space, len(nearby), ref, np.random.default_rng(0), radius=0)
    assert (steps(anywhere) > 1).any()  # radius 0: as many picks, not all of them next to the front


def test_spread_out_takes_the_farthest_points_first():
    pool = np.array([[0.25], [0.5], [0.75]])
    assert spread_out(pool, np.array([[0.0], [1.0]]), 2).tolist() == [[0.5], [0.25]]  # 0.25 and 0.75 tie: first


def test_search_stops_when_the_lattice_is_spent():
    space = SearchSpace(n_values=2, C=1.0, step=0.5)  # 9 points
    result = search_front(lambda W: interference(np.pad(W, ((0, 0), (0, 1))))[:, :2], space, budget=20, batch=4)
    assert len(result.weights) == 9 and len(np.unique(result.weights, axis=0)) == 9


def test_search_through_the_engine_stores_and_resumes(tmp_path):
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    stop = {"after": 0}

    def interrupt(stage, done, total):
        if stage == "evaluations" and done > 0:
            stop["after"] -= 1
            if stop["after"] < 0:
                raise KeyboardInterrupt  # Ctrl-C once the seed design is stored

    with pytest.raises(KeyboardInterrupt):
        search_method(ws, "mva-no-hsic", budget=9, batch=3, progress=interrupt)
    first = ws.store.candidates("mva-no-hsic")
    assert 0 < len(first) < 9 and set(first["source"]) == {"search"}
    assert ws.store.runs()["status"].tolist() == ["stopped"]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["search", "--workspace", str(ws.root), "--method", "mva-no-hsic", "--budget", "9",
                     "--batch", "3"]) == 0
    cands = Workspace(ws.root).store.candidates("mva-no-hsic")
    assert len(cands) == 9 and set(first["id"]) <= set(cands["id"])  # the first batch kept, the rest added
    runs = Workspace(ws.root).store.runs()
    assert runs["status"].tolist() == ["done"] and set(cands["run_id"]) == {int(runs["id"].iloc[0])}  # adopted
    assert "front of" in out.getvalue()


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_sweep_page_search_mode_runs_and_draws_the_hypervolume_history(tmp_path, monkeypatch):
    import json

    from tests.apptest import open_page, plotly_array

    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    at = open_page(monkeypatch, ws.root, "pages/sweep.py")
    at.selectbox(key="sweep_method").set_value("mva-no-hsic").run()
    at.number_input(key="search_budget").set_value(7)
    at.number_input(key="search_batch").set_value(3).run()
    at.button(key="search_start").click().run()
    assert not at.exception, at.exception
    cands = Workspace(ws.root).store.candidates("mva-no-hsic")
    assert len(cands) == 7 and set(cands["source"]) == {"search"}
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith("-search_history"))
    log = json.loads(Workspace(ws.root).store.runs().query("kind == 'search'")["log"].iloc[-1])
    assert plotly_array(chart["data"][0]["y"]).tolist() == pytest.approx(log["hv_history"])
    assert len(log["hv_history"]) == 7
    # the live curve, drawn from the store after every batch, ends where the logged one does
    live, ref = stored_history(Workspace(ws.root), "mva-no-hsic")
    assert live == pytest.approx(log["hv_history"]) and ref.tolist() == pytest.approx(log["ref"])


@pytest.mark.slow
def test_search_resumes_candidates_stored_but_not_yet_scored(tmp_path):
    """Stopped between storing its first candidates and scoring them (what a SIGKILL at that moment leaves): the
    rerun scores the stored rows and uses them; it used to see them as non-finite and fail to fit its surrogate."""
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)

    def stop_after_first_store(stage, done, total):
        if stage == "store":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search_method(ws, "mva-no-hsic", budget=9, batch=3, progress=stop_after_first_store)
    first = ws.store.candidates("mva-no-hsic")
    assert len(first) == 1 and not ws.store.scored(first["id"].tolist(), "warmth")  # stored, unscored
    result, _ = search_method(Workspace(ws.root), "mva-no-hsic", budget=9, batch=3)
    cands = Workspace(ws.root).store.candidates("mva-no-hsic")
    assert len(cands) == 9 and int(first["id"].iloc[0]) in set(cands["id"])
    assert np.isfinite(cands[["s_warmth", "s_brevity"]].to_numpy(dtype=float)).all()


def test_search_over_a_subset_of_values_keeps_the_others_at_zero(tmp_path):
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    first = ws.value_names[0]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["search", "--workspace", str(ws.root), "--method", "mva-no-hsic", "--budget", "4",
                     "--step", "0.25", "--values", first]) == 0
    W = np.array(Workspace(ws.root).store.candidates("mva-no-hsic")["weights"].tolist())
    assert len(W) == 4 and (W[:, 1:] == 0).all()  # the seed design of one value (0 and C), then the lattice
    assert sorted(W[:, 0].tolist()) == sorted(set(W[:, 0].tolist())) and set(W[:, 0]) <= {0, 0.25, 0.5, 0.75, 1}
    with pytest.raises(Exception, match="choose one or more of"):
        search_method(Workspace(ws.root), "mva-no-hsic", budget=2, values=["kindness"])
