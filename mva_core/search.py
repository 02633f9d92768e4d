"""Adaptive front search: spend evaluations where the Pareto front is, instead of on every point of a grid (issue 15).

The search picks among the points of the sweep's lattice (weights 0, step, 2·step, … ≤ C per value, `SearchSpace`),
so its weights read like a sweep's and a later sweep at that step answers them from the store. First the extremes of
the trade-off (the base model, each value's vector alone at C, all of them at C: n + 2 points); then points chosen
by the surrogate (`mva_core.surrogate`: one Gaussian process per value, its hyperparameters refitted on each
problem's points before every batch), among the lattice points one step (in every weight) from the weights of the
measured front (`neighbours`; anywhere on the lattice once those are spent): the one of largest expected
hypervolume improvement (EHVI, `mva_core.acquisition` Eq. A2, under the predictive distribution of an evaluation:
the GP's noise included, so a point near the front counts for the chance that its prompt noise lifts it above),
then, in a batch of more than one, the next with the first's predicted mean added to the front (a "kriging
believer" batch). Every evaluation goes through the caller's evaluator (the weight-batched engine, stored as it
goes), so a killed search resumes from what is stored. The reference point of each batch's hypervolumes is the
per-value minimum of the points evaluated so far (it widens as the extremes are found); the hypervolume history is
computed afterwards with the final one.

Chosen on problems drawn with seeds 0-7 around the 3-value demo's grid and around the 2-value demo's (bench/
adaptive_search.py `--emulate`; README "Benchmarks" gives these and the held-out seeds): EHVI with batches of 1
beat the posterior mean's hypervolume gain (the search before issue 29) and batches of 2 or 4, and adding a maximin
space-filling design to the n + 2 extremes did worse. Picking next to the measured front (item 5): replaying
the stored grids it lifted demo3 from 0.934 to 0.952 (+0.017 [+0.008, +0.029], 6 seeds) and the 2-value demo's
step-0.1 grid from 0.892 to 0.962 (within the seeds' noise), and left 48 emulated problems within noise (README
"Benchmarks"). Why, measured only in part: a grid's front is partly its luckiest points, and where the prompt noise
of adjacent weights is correlated (warmth residuals +0.44 one step apart on that step-0.1 grid) a lucky point's
neighbours are lucky too, which the GP's white noise does not model and a local search exploits.
Before that (issue 15): the 2^n corners as seed design and an optimistic acquisition (mean + sd) spent evaluations
on corners and noise.

Early stop (`hv_noise`, `search --early-stop`): the search ends when the expected hypervolume gain of the rest of
its budget is below the sd of the hypervolume of its front under prompt resampling, i.e. when what is left to gain
is within what another draw of the prompts would change.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import pareto
from .kinds import SearchSpace
from .errors import MVAError
from .generate import Cancelled
from .metrics import prompt_rewards
from .results import load_table
from .store import prompts_hash
from .acquisition import expected_improvement, hv_bootstrap_sd, improvement
from .surrogate import MIN_CANDIDATES, fit_surrogate
from .sweep import Evaluator, Executor, LocalExecutor, evaluate_base, score_missing
from .workspace import Workspace

Evaluate = Callable[[np.ndarray], np.ndarray]  # weights (B, n) -> z-scores (B, V)
HVNoise = Callable[[np.ndarray, np.ndarray, np.ndarray], float]  # (weights, z, ref) -> sd of their front's HV
ACQUISITIONS = ("ehvi", "mean")
ACQUISITION = "ehvi"
N_DRAWS = 32  # Monte-Carlo draws of each point's EHVI (acquisition Eq. A2)
MAX_POOL = 8192  # lattice points scored per batch; a larger lattice is sampled (half near the front)
NEIGHBOURHOOD = 1  # each pick among the lattice points this many steps (Chebyshev) from a front point; 0: anywhere


class SearchError(MVAError):
    """The search was asked for something it cannot do (budget, bounds)."""


@dataclass
class SearchResult:
    weights: np.ndarray  # (N, n) every evaluated point, in evaluation order
    z: np.ndarray  # (N, V)
    ref: np.ndarray  # (V,) the reference point of every hypervolume here
    hv_history: list[float] = field(default_factory=list)  # HV of the front after each evaluation
    nothing_new: str | None = None  # why nothing was evaluated nor recorded (the whole budget is already stored)
    stop_reason: str = ""  # why the search ended: its budget spent, the lattice spent, or an early stop
    saved: int = 0  # evaluations of the budget left unspent by an early stop
    gains: list[tuple[int, float, float]] = field(default_factory=list)  # per batch with `hv_noise`: (points
    # evaluated before it, its expected HV gain, the HV's bootstrap sd then)

    def stop_point(self) -> int | None:
        """How many points the early stop would have evaluated (the first batch in `gains` whose expected gain is
        below the noise: the points before it); None if it would not have stopped."""
        return next((k for k, gain, noise in self.gains if gain < noise), None)

    @property
    def front(self) -> np.ndarray:
        return pareto.front_indices(self.z)


def seed_design(space: SearchSpace) -> np.ndarray:
    """The extremes of the trade-off, n + 2 points: no vector (w = 0, the base model), each value's vector alone at
    C, all of them at C."""
    n, C = space.n_values, space.C
    points = np.vstack([np.zeros(n), C * np.eye(n), np.full(n, C)])
    return points[:2] if n == 1 else points  # one value: its vector alone is all of them


def initial_design(space: SearchSpace, n_initial: int | None = None) -> np.ndarray:
    """The points evaluated before any surrogate: the extremes (`seed_design`), then lattice points each farthest
    from those before it (`spread_out`, a maximin space-filling design) up to `n_initial` in all (default: the
    extremes alone; more did worse on the problems the search was tuned on, README "Benchmarks")."""
    seeds = seed_design(space)
    k = (0 if n_initial is None else n_initial) - len(seeds)
    if k <= 0:
        return seeds
    grid = space.grid() if space.grid_size() <= MAX_POOL else candidate_pool(space, seeds, seeds,
                                                                              np.random.default_rng(0))
    grid = grid[~_evaluated(grid, seeds)]
    return np.vstack([seeds, spread_out(grid, seeds, k)])


def hypervolume_history(z: np.ndarray, ref: np.ndarray) -> list[float]:
    """HV of the first k rows' front, for k = 1 … N."""
    return [pareto.hypervolume(z[:k], ref) for k in range(1, len(z) + 1)]


def _evaluated(points: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(P,) True where a row of `points` was evaluated already (a row of `W`)."""
    if not len(W):
        return np.zeros(len(points), dtype=bool)
    return (np.abs(points[:, None, :] - W[None, :, :]).max(axis=2) < 1e-9).any(axis=1)


def candidate_pool(space: SearchSpace, W: np.ndarray, front_w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The lattice points not evaluated yet: all of them, or MAX_POOL drawn when the lattice is larger (half
    uniformly, half next to the front's weights), each weight rounded to its nearest tick."""
    if space.grid_size() <= MAX_POOL:
        pool = space.grid()
    else:
        ticks, n, half = space.ticks(), space.n_values, MAX_POOL // 2
        near = front_w[rng.integers(len(front_w), size=half)] + rng.normal(0, 0.1 * space.C, size=(half, n))
        x = np.concatenate([rng.uniform(0, space.C, size=(half, n)), near])
        pool = np.unique(ticks[np.clip(np.rint(x / space.step), 0, len(ticks) - 1).astype(int)], axis=0)
    return pool[~_evaluated(pool, W)]


def neighbours(space: SearchSpace, front_w: np.ndarray, W: np.ndarray, radius: int,
               rng: np.random.Generator) -> np.ndarray:
    """The lattice points within `radius` steps of a front point's weights in every value (Chebyshev distance on the
    lattice's ticks) and not evaluated yet: (3^n − 1)·|front| at most for radius 1, MAX_POOL offsets drawn when the
    whole neighbourhood would be larger. Empty for radius 0."""
    if radius <= 0 or not len(front_w):
        return np.zeros((0, space.n_values))
    ticks, n = space.ticks(), space.n_values
    side = 2 * radius + 1
    if side ** n * len(front_w) <= MAX_POOL:
        offsets = np.stack(np.meshgrid(*([np.arange(-radius, radius + 1)] * n), indexing="ij"), -1).reshape(-1, n)
    else:
        offsets = rng.integers(-radius, radius + 1, size=(max(MAX_POOL // len(front_w), 1), n))
    at = np.rint(front_w / space.step).astype(int)
    idx = np.clip((at[:, None, :] + offsets[None]).reshape(-1, n), 0, len(ticks) - 1)
    points = np.unique(ticks[idx], axis=0)
    return points[~_evaluated(points, W)]


def dominance_gap(points: np.ndarray, front: np.ndarray) -> np.ndarray:
    """(P,) how far each point must rise in every value not to be dominated by any front point:
    max over front points f of min_j (f_j − p_j); ≤ 0 for a non-dominated point."""
    return (front[None, :, :] - points[:, None, :]).min(axis=2).max(axis=1)


def spread_out(pool: np.ndarray, W: np.ndarray, batch: int) -> np.ndarray:
    """Up to `batch` points of `pool`, each the farthest (Euclidean) from `W` and the ones picked before it."""
    taken = W.copy()
    chosen: list[int] = []
    for _ in range(min(batch, len(pool))):
        gap = np.linalg.norm(pool[:, None, :] - taken[None, :, :], axis=2).min(axis=1) if len(taken) else \
            np.ones(len(pool))
        gap[chosen] = -np.inf
        chosen.append(int(np.argmax(gap)))
        taken = np.vstack([taken, pool[chosen[-1]]])
    return pool[chosen]


def propose(W: np.ndarray, Z: np.ndarray, space: SearchSpace, batch: int, ref: np.ndarray,
            rng: np.random.Generator, acquisition: str = ACQUISITION, radius: int = NEIGHBOURHOOD) -> np.ndarray:
    """The next (≤ `batch`) lattice points, greedily by `acquisition` (module docstring) among the `neighbours`
    within `radius` steps of the measured front (anywhere on the lattice once they are spent, or with radius 0),
    each pick's predicted mean added to the front before the next. Where no point is predicted to add volume, the
    one closest to the front (smallest `dominance_gap`) is taken. With too few points for a surrogate (one value's
    seed design has two), the points farthest from everything evaluated. Empty when the lattice is spent."""
    return _propose(W, Z, space, batch, ref, rng, acquisition, radius=radius)[0]


def _propose(W: np.ndarray, Z: np.ndarray, space: SearchSpace, batch: int, ref: np.ndarray,
             rng: np.random.Generator, acquisition: str = ACQUISITION,
             horizon: int | None = None, radius: int = NEIGHBOURHOOD) -> tuple[np.ndarray, float | None]:
    """`propose`, and the expected hypervolume gain of evaluating `horizon` more points (default `batch`): the sum
    of the `horizon` largest single-point EHVIs (acquisition Eq. A2) over the current front, under the surrogate's
    sd of the noise-free value (`Surrogate.latent_sd`: a lucky draw of the prompt noise is no gain), over the whole
    lattice (not only the neighbourhood the picks are made in). Overlapping gains count twice, so it errs high: an
    early stop on it stops late rather than early. None without a surrogate."""
    if acquisition not in ACQUISITIONS:
        raise SearchError(f"acquisition {acquisition!r}: choose one of {ACQUISITIONS}")
    front_w = W[pareto.front_indices(Z)]
    pool = candidate_pool(space, W, front_w, rng)
    if len(W) < MIN_CANDIDATES:
        return spread_out(pool, W, batch), None
    near = neighbours(space, front_w, W, radius, rng)
    both = np.concatenate([near, pool])  # the neighbourhood first; a lattice point once (its first row)
    keep = np.sort(np.unique(np.rint(both / space.step).astype(int), axis=0, return_index=True)[1])
    pool, local = both[keep], keep < len(near)
    model = fit_surrogate(W, Z, [f"v{j}" for j in range(Z.shape[1])], seed=int(rng.integers(1 << 31)))
    front = Z[pareto.front_indices(Z)]
    mean, sd = model.predict(pool) if len(pool) else (np.zeros((0, Z.shape[1])), np.zeros((0, Z.shape[1])))
    eps = rng.standard_normal((N_DRAWS, Z.shape[1]))
    latent = np.sort(expected_improvement(mean, model.latent_sd(sd), front, ref, eps))[::-1]
    expected = float(latent[: batch if horizon is None else horizon].sum())
    chosen: list[int] = []
    for _ in range(min(batch, len(pool))):
        gain = expected_improvement(mean, sd, front, ref, eps) if acquisition == "ehvi" else \
            improvement(mean, front, ref)
        gap = dominance_gap(mean, front)
        unpicked = np.ones(len(pool), dtype=bool)
        unpicked[chosen] = False
        allowed = unpicked & local if (unpicked & local).any() else unpicked  # the neighbourhood while it lasts
        gain[~allowed], gap[~allowed] = -np.inf, np.inf
        best = int(np.argmax(gain)) if gain.max() > 0 else int(np.argmin(gap))
        chosen.append(best)
        front = np.vstack([front, mean[best]])  # believe the prediction, so the next pick goes elsewhere
        front = front[pareto.front_indices(front)]
    return pool[chosen], expected


def search_front(evaluate: Evaluate, space: SearchSpace, budget: int, ref: np.ndarray | None = None,
                 seed: int = 0, batch: int = 1, done: tuple[np.ndarray, np.ndarray] | None = None,
                 progress: Callable[[SearchResult], None] | None = None,
                 acquisition: str = ACQUISITION, n_initial: int | None = None,
                 hv_noise: HVNoise | None = None, early_stop: bool = True,
                 radius: int = NEIGHBOURHOOD) -> SearchResult:
    """Evaluate up to `budget` points of the lattice of `space` ([0, C]^n at `step`), adaptively (module docstring).

    `done` = (weights, z) already evaluated by an earlier, interrupted run of this search: counted in the budget and
    not evaluated again. `ref` fixes the reference point; by default each batch is chosen with the per-value
    minimum of what is evaluated so far (DESIGN's default reference point, as the app and the bench draw it) and the
    hypervolume history uses the final one. `progress(result)` is called after every batch. Stops early when every
    lattice point is evaluated.

    `hv_noise(W, Z, ref)` (the sd of the hypervolume of the points evaluated so far under resampling of what their
    z-scores rest on: `acquisition.hv_bootstrap_sd` on their per-prompt rewards, `acquisition.hv_parametric_sd`
    without them) turns on the early stop: after the initial design, when the expected hypervolume gain of the
    rest of the budget (`_propose` with `horizon` the evaluations left; one batch of 1 is always within the noise)
    is below that sd, the next batch is not evaluated and the search ends there, `stop_reason` saying so.
    `early_stop=False` records each batch's gain and sd (`SearchResult.gains`) without stopping. `radius`: the
    neighbourhood of the measured front each pick is made in (`propose`; 0: the whole lattice, the search before
    issue 29 item 5).
    """
    if budget < 1 or not space.kind.searchable:
        raise SearchError(f"budget={budget}, kind={space.kind.name!r}: need budget >= 1 and the box [0, C]^n "
                          "(kind 'extrapolation')")
    rng = np.random.default_rng(seed)
    W = np.zeros((0, space.n_values)) if done is None else np.asarray(done[0], dtype=float)
    Z = np.zeros((0, 0)) if done is None else np.asarray(done[1], dtype=float)
    seeds = initial_design(space, n_initial)
    todo = seeds[~_evaluated(seeds, W)][: max(budget - len(W), 0)]
    if len(todo):
        W = np.concatenate([W, todo])
        Zp = evaluate(todo)
        Z = np.concatenate([Z, Zp]) if Z.size else Zp

    def reference(Z: np.ndarray) -> np.ndarray:
        return pareto.reference_point(Z[np.isfinite(Z).all(axis=1)]) if ref is None else np.asarray(ref, dtype=float)

    if progress:
        progress(SearchResult(W, Z, reference(Z)))
    stop = f"budget spent ({budget} evaluations)"
    saved = 0
    gains: list[tuple[int, float, float]] = []
    while len(W) < budget:
        finite = np.isfinite(Z).all(axis=1)
        part, expected = _propose(W[finite], Z[finite], space, min(batch, budget - len(W)), reference(Z), rng,
                                  acquisition, horizon=budget - len(W), radius=radius)
        if not len(part):
            stop = f"lattice spent (all {len(W)} points at step {space.step:g} evaluated)"
            break
        if hv_noise is not None and expected is not None:
            noise = float(hv_noise(W[finite], Z[finite], reference(Z)))
            gains.append((len(W), float(expected), noise))
            if early_stop and expected < noise:
                saved = budget - len(W)
                stop = (f"early stop after {len(W)} of {budget} evaluations: the expected hypervolume gain of the "
                        f"{budget - len(W)} left, {expected:.4g}, is below the hypervolume's bootstrap sd {noise:.4g}")
                break
        W, Z = np.concatenate([W, part]), np.concatenate([Z, evaluate(part)])
        if progress:
            progress(SearchResult(W, Z, reference(Z)))
    result = SearchResult(W, Z, reference(Z), stop_reason=stop, saved=saved, gains=gains)
    result.hv_history = hypervolume_history(Z, result.ref)
    return result


def stored_history(ws: Workspace, method: str) -> tuple[list[float], np.ndarray]:
    """The hypervolume history of `method`'s stored candidates in the order they were stored, with the per-value
    minimum of their finite z-scores as the reference point: what a running search has reached so far (a search
    that started with no candidates of the method logs the same curve when it ends). Empty with no finite one."""
    Z = load_table(ws).for_method(method).by_id().z()
    finite = np.isfinite(Z).all(axis=1)
    if not finite.any():
        return [], np.zeros(len(ws.value_names))
    ref = pareto.reference_point(Z[finite])
    return hypervolume_history(Z, ref), ref


def already_stored(ws: Workspace, method: str, config: dict, space: SearchSpace, known: np.ndarray) -> str | None:
    """Why a search with `config` would evaluate nothing new (None: it would): the same search (method, budget, step,
    seed, batch, values, prompts) already finished, its budget spent; or every point of the lattice of `space` is
    among the `known` weights (in the searched subspace) already."""
    runs = ws.store.runs()
    done = runs[(runs["kind"] == "search") & (runs["method"] == method) & (runs["status"] == "done")]
    for run in done.itertuples():
        if json.loads(run.config) == config:
            return (f"this search of {method} (budget {config['budget']}, step {config['step']:g}, seed "
                    f"{config['seed']}, batch {config['batch']}) is already stored: run #{int(run.id)} spent its "
                    "budget; nothing was evaluated or recorded. To search further, start another (a new seed or "
                    "budget spends a new budget; a smaller step searches a finer lattice)")
    if space.grid_size() <= MAX_POOL and _evaluated(space.grid(), known).all():
        return (f"every one of the {space.grid_size()} lattice points of {method} at step {space.step:g} is already "
                "stored; nothing was evaluated or recorded. A smaller step searches a finer lattice")
    return None


def search_method(ws: Workspace, method: str, budget: int, step: float = 0.1, seed: int = 0, batch: int = 1,
                  values: Sequence[str] | None = None,
                  progress: Callable[[str, int, int], None] | None = None,
                  cancel: threading.Event | None = None,
                  executor: Executor | None = None,
                  early_stop: bool = False, radius: int = NEIGHBOURHOOD) -> tuple[SearchResult, int | None]:
    """Adaptive search over `method`'s weights: the lattice [0, C]^n at `step` (C from workspace.json), evaluated and
    stored like a sweep. `values` (a subset of the workspace's) searches only those values' weights, the others
    fixed at 0, as a sweep's `values` does; the front is on every value's z-score, as on Explore.

    Every candidate of the method already stored on the workspace's prompts is known for free; `budget` counts the
    new evaluations of this search, so a rerun after a kill or a cancel (the same method, budget, step, seed, batch
    and values: the same run, adopted) spends only what is left. `cancel` set stops at the next decoding step (raises
    `Cancelled`; every finished evaluation is stored). `executor` generates each batch (default here, in this
    process; `executor.RayExecutor` on Ray actors), as a sweep's chunks are. Returns the result (known and new
    points) and the run id; a search whose whole budget is already stored (`already_stored`) evaluates and records
    nothing: run id None, the reason in `result.nothing_new`.

    `early_stop` ends the search before its budget when the next batch's expected hypervolume gain is below the
    sd of the hypervolume of the front so far under prompt resampling (`search_front`'s `hv_noise`, from the stored
    per-prompt rewards, `acquisition.hv_bootstrap_sd`). Off by default: the budget is what the user asked for, and
    a stored search's config (which gains `"early_stop": true` only when it is on) keeps matching its rerun.
    `radius` (`search_front`): the neighbourhood of the measured front the picks are made in; the config gains it
    only when it is not the default.
    The run's log records `stop_reason` (and `saved`, the evaluations an early stop left unspent)."""
    if batch < 1:
        raise SearchError(f"batch = {batch}: points chosen per surrogate fit must be >= 1, e.g. 4")
    compared = ws.compared_method(method)
    if not compared.kind.searchable:
        raise SearchError(f"method {method!r} has no weight box to search ({compared.kind.name}); search a method "
                          "whose candidates are base + Σ wᵢ·θᵢ with wᵢ in [0, C], e.g. mva")
    values = list(ws.value_names if values is None else values)
    if not values or any(v not in ws.value_names for v in values) or len(set(values)) < len(values):
        raise SearchError(f"values to search {values}: choose one or more of {ws.value_names}, each once")
    active = [ws.value_names.index(v) for v in values]  # searched weights; the others stay 0
    n = len(ws.value_names)
    space = SearchSpace(n_values=len(active), C=float(ws.manifest.C), step=float(step))
    config = {"method": method, "budget": budget, "step": space.step, "seed": seed, "batch": batch, "C": space.C,
              "prompts_hash": prompts_hash(ws.prompts())}  # the evaluator's prompts: the workspace's
    if len(active) < n:
        config["values"] = values
    if early_stop:
        config["early_stop"] = True
    if radius != NEIGHBOURHOOD:
        config["radius"] = radius

    def known_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The method's stored candidates in the searched subspace: weights there, z-scores, candidate ids."""
        rows = load_table(ws).for_method(method).by_id()
        W = np.array(rows.frame["weights"].tolist(), dtype=float).reshape(-1, n)
        inside = np.delete(W, active, axis=1).max(axis=1, initial=0.0) == 0  # in the searched subspace
        return W[inside][:, active], rows.z()[inside], rows.ids()[inside]

    W_known, Z_known, _ = known_rows()
    why = already_stored(ws, method, config, space, W_known)
    if why is not None:  # checked before loading the model: says so at once
        ref = pareto.reference_point(Z_known[np.isfinite(Z_known).all(axis=1)]) if len(Z_known) else \
            np.zeros(n)
        return SearchResult(W_known, Z_known, ref, hypervolume_history(Z_known, ref), nothing_new=why), None
    ev = Evaluator(ws, method)
    evaluate_base(ws, ev.base)
    with ws.store.run("search", config, method, adopt=True) as run:  # a rerun after a kill takes it over

        def known() -> tuple[np.ndarray, np.ndarray, int]:
            W, Z, ids = known_rows()
            spent = int((ws.store.candidates(method).set_index("id").reindex(ids)["run_id"] == run.id).sum())
            return W, Z, spent

        def stopped() -> Cancelled:
            cands = ws.store.candidates(method)  # this run's evaluations (an adopted run: its earlier attempts' too)
            k = int((cands["run_id"] == run.id).sum()) if len(cands) else 0
            return Cancelled(f"search stopped after {k} of {budget} evaluations; resume continues from there")

        def evaluate(W: np.ndarray) -> np.ndarray:
            if cancel is not None and cancel.is_set():
                raise stopped()
            full = np.zeros((len(W), n))
            full[:, active] = W
            supplied = next(iter((executor or LocalExecutor()).responses([(ev, full)])))
            try:
                done = ev.evaluate(full, "search", progress=progress, run_id=run.id, cancel=cancel, generated=supplied)
            except Cancelled:  # at the next decoding step: nothing of this batch's generate call is stored
                raise stopped() from None
            return done.z()

        def report(result: SearchResult) -> None:
            if progress:
                progress("evaluations", len(result.weights) - len(W0) + spent, budget)

        # a run killed between storing candidates and scoring them left rows without scores: score them first, or
        # they would read as non-finite and the search would spend its budget again around them
        score_missing(ws, load_table(ws).for_method(method).ids().astype(int).tolist(), progress)
        W0, Z0, spent = known()
        def hv_noise(W: np.ndarray, Z: np.ndarray, ref: np.ndarray) -> float:
            """Sd of the HV of the front of the points (W, Z) under prompt resampling, from their stored rewards."""
            Wk, _, ids = known_rows()
            front = W[pareto.front_indices(Z)]
            at = [int(np.flatnonzero(np.abs(Wk - w).max(axis=1) < 1e-9)[-1]) for w in front]
            table = load_table(ws)
            base = prompt_rewards(ws, [int(table.base_id())])[0]
            return hv_bootstrap_sd(prompt_rewards(ws, [int(ids[i]) for i in at]), base, ref, seed=seed)

        result = search_front(evaluate, space, len(W0) + budget - spent, seed=seed, batch=batch,
                              done=(W0, Z0) if len(W0) else None, progress=report,
                              hv_noise=hv_noise if early_stop else None, radius=radius)
        run.log.update(evaluations=len(result.weights) - len(W0) + spent, hv_history=result.hv_history,
                       ref=result.ref.tolist(), stop_reason=result.stop_reason, saved=result.saved,
                       gains=[list(g) for g in result.gains])
    return result, run.id
