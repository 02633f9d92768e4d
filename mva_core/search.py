"""Adaptive front search: spend evaluations where the Pareto front is, instead of on every point of a grid (issue 15).

A coarse space-filling seed (scrambled Sobol' points in [0, C]^n, the corners of the box included), then batches
chosen by the surrogate (`mva_core.surrogate`: one Gaussian process per value): among many proposals (Sobol' points
and perturbations of the current front's weights), the one whose optimistic outcome (mean + κ·sd per value, an
upper confidence bound) adds the most hypervolume to the current front; then the next, with the first's predicted
mean added to the front so a batch spreads out instead of piling on one spot (a "kriging believer" batch). Every
evaluation goes through the caller's evaluator (the weight-batched engine, stored as it goes), so a killed search
resumes from what is stored. Hypervolumes use one fixed reference point (`ref`), so the history is comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import pareto
from .errors import MVAError
from .results import candidate_table
from .store import prompts_hash
from .surrogate import fit_surrogate
from .sweep import Evaluator, evaluate_base, score_missing
from .workspace import Workspace

Evaluate = Callable[[np.ndarray], np.ndarray]  # weights (B, n) -> z-scores (B, V)


class SearchError(MVAError):
    """The search was asked for something it cannot do (budget, bounds)."""


@dataclass
class SearchResult:
    weights: np.ndarray  # (N, n) every evaluated point, in evaluation order
    z: np.ndarray  # (N, V)
    ref: np.ndarray  # (V,) the reference point of every hypervolume here
    hv_history: list[float] = field(default_factory=list)  # HV of the front after each evaluation

    @property
    def front(self) -> np.ndarray:
        return pareto.front_indices(self.z)


def seed_design(n_values: int, C: float, n_points: int, seed: int = 0) -> np.ndarray:
    """The box's 2^n corners (each value alone, all, none: the extremes of the trade-off), then scrambled Sobol'
    points, `n_points` in all (at least the corners)."""
    from scipy.stats import qmc  # scipy is a dependency of scikit-learn and pymoo

    corners = np.stack(np.meshgrid(*[[0.0, C]] * n_values, indexing="ij"), axis=-1).reshape(-1, n_values)
    extra = max(n_points - len(corners), 0)
    sobol = qmc.Sobol(n_values, scramble=True, seed=seed).random(max(extra, 1))[:extra] * C
    return np.concatenate([corners, sobol])


def hypervolume_history(z: np.ndarray, ref: np.ndarray) -> list[float]:
    """HV of the first k rows' front, for k = 1 … N."""
    return [pareto.hypervolume(z[:k], ref) for k in range(1, len(z) + 1)]


def propose(W: np.ndarray, Z: np.ndarray, C: float, batch: int, ref: np.ndarray, rng: np.random.Generator,
            kappa: float = 1.0, n_pool: int = 512) -> np.ndarray:
    """The next `batch` weights: greedy upper-confidence hypervolume improvement under the fitted surrogate."""
    from scipy.stats import qmc  # scipy is a dependency of scikit-learn and pymoo

    n = W.shape[1]
    model = fit_surrogate(W, Z, [f"v{j}" for j in range(Z.shape[1])], seed=int(rng.integers(1 << 31)))
    front_w = W[pareto.front_indices(Z)]
    local = np.clip(front_w[rng.integers(len(front_w), size=n_pool // 2)]
                    + rng.normal(0, 0.1 * C, size=(n_pool // 2, n)), 0, C)
    pool = np.concatenate([qmc.Sobol(n, scramble=True, seed=int(rng.integers(1 << 31))).random(n_pool // 2) * C,
                           local])
    pool = np.unique(np.round(pool, 3), axis=0)  # clipping makes copies of the box's faces and corners
    seen = (np.abs(pool[:, None, :] - W[None, :, :]).max(axis=2) < 1e-9).any(axis=1)  # already evaluated
    mean, sd = model.predict(pool)
    optimistic = mean + kappa * sd
    front = Z[pareto.front_indices(Z)]
    chosen: list[int] = []
    for _ in range(batch):
        base = pareto.hypervolume(front, ref)
        gain = np.array([-np.inf if i in chosen or seen[i] else
                         pareto.hypervolume(np.vstack([front, optimistic[i]]), ref) - base for i in range(len(pool))])
        best = int(np.argmax(gain))
        chosen.append(best)
        front = np.vstack([front, mean[best]])  # believe the prediction, so the next pick goes elsewhere
        front = front[pareto.front_indices(front)]
    return pool[chosen]


def search_front(evaluate: Evaluate, n_values: int, C: float, budget: int, ref: np.ndarray | None = None,
                 seed: int = 0, batch: int = 8, n_seed: int | None = None,
                 done: tuple[np.ndarray, np.ndarray] | None = None,
                 progress: Callable[[SearchResult], None] | None = None) -> SearchResult:
    """Evaluate up to `budget` weight vectors in [0, C]^n, adaptively (see the module docstring).

    `done` = (weights, z) already evaluated by an earlier, interrupted run of this search: counted in the budget and
    not evaluated again. `ref` fixes the reference point (default: the per-value minimum of the seed design's
    results). `progress(result)` is called after every batch.
    """
    if budget < 1 or C <= 0 or n_values < 1:
        raise SearchError(f"budget={budget}, C={C}, n_values={n_values}: need budget >= 1, C > 0 and a value")
    rng = np.random.default_rng(seed)
    W = np.zeros((0, n_values)) if done is None else np.asarray(done[0], dtype=float)
    Z = np.zeros((0, 0)) if done is None else np.asarray(done[1], dtype=float)
    seeds = seed_design(n_values, C, min(budget, n_seed or max(2 ** n_values + 2, budget // 5)), seed)
    todo = [w for w in seeds if not any(np.allclose(w, x) for x in W)]
    if todo and len(W) < budget:
        part = np.array(todo[:budget - len(W)])
        W = np.concatenate([W, part]) if len(W) else part
        Zp = evaluate(part)
        Z = np.concatenate([Z, Zp]) if Z.size else Zp
    finite = np.isfinite(Z).all(axis=1)
    ref = pareto.reference_point(Z[finite]) if ref is None else np.asarray(ref, dtype=float)
    result = SearchResult(W, Z, ref)
    if progress:
        progress(result)
    while len(W) < budget:
        finite = np.isfinite(Z).all(axis=1)
        part = propose(W[finite], Z[finite], C, min(batch, budget - len(W)), ref, rng)
        W, Z = np.concatenate([W, part]), np.concatenate([Z, evaluate(part)])
        result = SearchResult(W, Z, ref)
        if progress:
            progress(result)
    result.hv_history = hypervolume_history(Z, ref)
    return result


def search_method(ws: Workspace, method: str, budget: int, seed: int = 0, batch: int = 8,
                  progress: Callable[[str, int, int], None] | None = None) -> tuple[SearchResult, int]:
    """Adaptive search over `method`'s weights [0, C]^n (C from workspace.json), evaluated and stored like a sweep.

    Every candidate of the method already stored on the workspace's prompts is known for free; `budget` counts the
    new evaluations of this search, so a rerun after a kill (the same method, budget, seed and batch: the same run,
    adopted) spends only what is left. Returns the result (known and new points) and the run id."""
    compared = ws.compared_method(method)
    if not compared.kind.has_grid or not compared.kind.extrapolates:
        raise SearchError(f"method {method!r} has no weight box to search ({compared.kind.name}); search a method "
                          "whose candidates are base + Σ wᵢ·θᵢ with wᵢ in [0, C], e.g. mva")
    ev = Evaluator(ws, method)
    evaluate_base(ws, ev.base)
    config = {"method": method, "budget": budget, "seed": seed, "batch": batch, "C": float(ws.manifest.C),
              "prompts_hash": prompts_hash(ev.prompts)}
    run_id = ws.store.start_run("search", config, method, adopt=True)
    zc = [f"z_{v}" for v in ws.value_names]

    def known() -> tuple[np.ndarray, np.ndarray, int]:
        table = candidate_table(ws)
        rows = table[(table["method"] == method)].sort_values("id")
        W = np.array(rows["weights"].tolist(), dtype=float).reshape(-1, len(ws.value_names))
        spent = int((ws.store.candidates(method).set_index("id").reindex(rows["id"])["run_id"] == run_id).sum())
        return W, rows[zc].to_numpy(dtype=float), spent

    def evaluate(W: np.ndarray) -> np.ndarray:
        ids = ev.evaluate(W, "search", progress=progress, run_id=run_id).candidate_ids
        table = candidate_table(ws)
        rows = table[table["method"] == method].set_index("id")
        return rows.loc[ids, zc].to_numpy(dtype=float)

    def report(result: SearchResult) -> None:
        if progress:
            progress("evaluations", len(result.weights) - len(W0) + spent, budget)

    # a run killed between storing candidates and scoring them left rows without scores: score them first, or
    # they would read as non-finite and the search would spend its budget again around them
    table = candidate_table(ws)
    score_missing(ws, table.loc[table["method"] == method, "id"].astype(int).tolist(), progress)
    W0, Z0, spent = known()
    try:
        result = search_front(evaluate, len(ws.value_names), float(ws.manifest.C), len(W0) + budget - spent,
                              seed=seed, batch=batch, done=(W0, Z0) if len(W0) else None, progress=report)
    except BaseException as exc:
        ws.store.finish_run(run_id, "stopped", {"error": repr(exc)})
        raise
    ws.store.finish_run(run_id, "done", {"evaluations": budget, "hv_history": result.hv_history,
                                         "ref": result.ref.tolist()})
    return result, run_id
