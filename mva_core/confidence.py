"""How sure a front is under prompt resampling (issue 29 items 1 and 4; DESIGN "Metrics": P(front), attainment bands).

The resamples are the Compare page's (`bootstrap.resample_indices`): each draws P prompts with replacement from the
P evaluation prompts and z-scores every candidate's mean reward against the base model on those prompts
(`bootstrap.z_means`). Over them:

- P(front) of a candidate: the share of resamples in which no other candidate of its method dominates it (MVA Eq.20
  on the resampled means). A candidate better than every other on every prompt has P(front) = 1; one worse than some
  other on every prompt has 0.
- A method's share of the joint front: per resample, the share of the front of ALL compared candidates (pooled,
  each candidate once) that are this method's; its estimate on the prompts as they are and a 95 % percentile
  interval over the resamples.
- Empirical attainment surfaces (López-Ibáñez, Paquete & Stützle 2010, "Exploratory analysis of stochastic local
  search algorithms in biobjective optimization"): a point y is attained by a resample when that resample's front
  weakly dominates it; the k % attainment surface bounds the points attained in at least k % of the resamples (10 %:
  optimistic, 50 %: median, 90 %: pessimistic); the multi-objective counterpart of an error bar. Exact for 2 values;
  for more, `attainment_surface` evaluates the attainment share at the union of the resampled fronts' points (the
  surface through them; an approximation from inside). Identical resamples give surfaces equal to the front.

Pure numpy; the store is read only by the functions at the end (`front_probability_of_table`, `*_of_workspace`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from . import pareto
from .bootstrap import Interval, MethodScores, percentile_interval, resample_indices, z_means
from .errors import MVAError
from .metrics import prompt_rewards
from .table import CandidateTable, z_column
from .workspace import Workspace, WorkspaceError

ATTAINMENT_LEVELS = (0.1, 0.5, 0.9)  # the 10 %, 50 % and 90 % attainment surfaces (issue 29 item 4)
# 3+ values: the surface is looked for among at most this many of the resampled fronts' points (1000 resamples of
# the 3-value demo's 125-candidate grid give ~10⁴ distinct ones; checking each against every resample's front costs
# points × resamples × front size)
MAX_SURFACE_POINTS = 1000
_X_CHUNK = 4096  # 2 values: x positions evaluated at once


class ConfidenceError(MVAError, ValueError):
    """Inputs of P(front) or the attainment surfaces have inconsistent shapes."""


# ---- Dominance over many resamples at once ----

def non_dominated(Z: np.ndarray) -> np.ndarray:
    """(B, K) boolean: is candidate k on the front of resample b? `Z` (B, K, V) maximised; each resample's front
    is `pareto.front_indices` (pymoo's non-dominated sort: all ≥ and one > dominates, MVA Eq.20; duplicates both
    stay; a row with a non-finite value is never on it, DESIGN §4). One sort per resample: 1000 resamples of
    25 candidates take ~0.07 s, of 1331 (a [0, 1]^3 grid at step 0.1) ~2 s."""
    Z = np.asarray(Z, dtype=float)
    out = np.zeros(Z.shape[:2], dtype=bool)
    if Z.shape[1] == 0:
        return out
    for b, z in enumerate(Z):
        out[b, pareto.front_indices(z)] = True
    return out


# ---- P(front) ----

def front_probability(scores: np.ndarray, base: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(K,) P(front) of each of one method's candidates: the share of prompt resamples in which it is non-dominated
    among them. `scores` (K, P, V) raw per-prompt rewards, `base` (P, V) the base model's (the z reference; the
    front does not depend on it, as z is an increasing map of the mean per value). Same resamples as Compare's
    intervals (`resample_indices(P, n_resamples, seed)`)."""
    scores, base = _check(scores, base)
    if n_resamples < 1:
        raise ConfidenceError(f"n_resamples = {n_resamples}; use at least 1 (Compare uses 1000)")
    if scores.shape[0] == 0:
        return np.zeros(0)
    idx = resample_indices(base.shape[0], n_resamples, seed)
    return non_dominated(z_means(scores, base, idx)).mean(axis=0)


def _check(scores: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, base = np.asarray(scores, dtype=float), np.asarray(base, dtype=float)
    if base.ndim != 2 or base.shape[0] < 1:
        raise ConfidenceError(f"base rewards have shape {base.shape}; need (prompts, values)")
    if scores.ndim != 3 or scores.shape[1:] != base.shape:
        raise ConfidenceError(f"scores have shape {scores.shape}; need (candidates, {base.shape[0]} prompts, "
                              f"{base.shape[1]} values) like the base model's rewards")
    return scores, base


# ---- Share of the joint front ----

@dataclass
class FrontShare:
    """A method's share of the joint front of every compared method: the share of the pooled front's candidates
    that are its own, on the prompts as they are (`share.estimate`) and over the resamples (`share.low/high`)."""

    method: str
    share: Interval
    samples: np.ndarray  # (B,)


def joint_front_shares(methods: Sequence[MethodScores], base: np.ndarray, ids: Sequence[Sequence[int]] | None = None,
                       n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, FrontShare]:
    """Per method, its share of the joint front (the non-dominated candidates of all methods pooled). `ids[m]`
    names method m's candidates so one candidate listed by two methods (a simplex grid point is also an
    extrapolation one) is pooled once and counts for both; None: all candidates are distinct. Intervals: 95 %
    percentile over `resample_indices(P, n_resamples, seed)`, the resamples of Compare's HV intervals."""
    base = np.asarray(base, dtype=float)
    if ids is None:
        start = np.cumsum([0] + [m.scores.shape[0] for m in methods])
        ids = [list(range(a, b)) for a, b in zip(start[:-1], start[1:])]
    if len(ids) != len(methods):
        raise ConfidenceError(f"{len(ids)} id lists for {len(methods)} methods; give one per method")
    pooled: dict[int, np.ndarray] = {}
    for m, names in zip(methods, ids):
        _check(m.scores, base)
        if len(names) != m.scores.shape[0]:
            raise ConfidenceError(f"method {m.name!r}: {len(names)} ids for {m.scores.shape[0]} candidates")
        for i, cid in enumerate(names):
            pooled.setdefault(int(cid), m.scores[i])
    if not pooled:
        return {}
    order = list(pooled)
    S = np.stack([pooled[c] for c in order])  # (N, P, V) every candidate once
    member = np.array([[c in set(int(x) for x in names) for c in order] for names in ids])  # (M, N)
    P = base.shape[0]
    identity = np.arange(P)[None]

    def shares(idx: np.ndarray) -> np.ndarray:
        front = non_dominated(z_means(S, base, idx))  # (B, N)
        total = front.sum(axis=1)  # (B,)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (front[:, None, :] & member[None]).sum(axis=2) / total[:, None]  # (B, M); NaN for an empty front

    point = shares(identity)[0]
    samples = shares(resample_indices(P, n_resamples, seed))
    return {m.name: FrontShare(m.name, percentile_interval(samples[:, j], point[j], level), samples[:, j])
            for j, m in enumerate(methods)}


# ---- Empirical attainment surfaces ----

def _check_level(level: float) -> None:
    if not 0 < level <= 1:
        raise ConfidenceError(f"attainment level {level}; use a share in (0, 1], e.g. 0.5")


def _kth(B: int, level: float) -> int:
    """How many of B resamples must attain a point for it to be under the `level` surface: ⌈level·B⌉."""
    return max(1, int(np.ceil(level * B - 1e-9)))


def attainment_surfaces_2d(fronts: Sequence[np.ndarray], levels: Sequence[float]) -> dict[float, np.ndarray]:
    """{level: (n, 2) corner points} of the empirical attainment surfaces of 2-value `fronts` (one (k_b, 2) array
    of maximised points per resample), each sorted by the first value: the upper-right boundary of the points
    attained (weakly dominated by that resample's front) in at least ⌈level·B⌉ of the B resamples.

    At x, resample b attains y up to g_b(x) = max{f_2 : f ∈ front_b, f_1 ≥ x}, a step function jumping only at the
    fronts' x values; the surface at x is the ⌈level·B⌉-th largest g_b(x) (López-Ibáñez et al. 2010)."""
    for level in levels:
        _check_level(level)
    fronts = [np.asarray(f, dtype=float).reshape(-1, 2) for f in fronts]
    B = len(fronts)  # every resample counts, one with an empty front attaining nothing
    fronts = [f[np.isfinite(f).all(axis=1)] for f in fronts]
    fronts = [f[np.argsort(f[:, 0], kind="stable")] for f in fronts if len(f)]
    if not fronts:
        return {float(level): np.zeros((0, 2)) for level in levels}
    xs = np.unique(np.concatenate([f[:, 0] for f in fronts]))  # ascending
    reach = [np.maximum.accumulate(f[::-1, 1])[::-1] for f in fronts]  # best y at or right of each point
    return _surfaces_2d(fronts, reach, xs, B, levels)


def _surfaces_2d(fronts: list[np.ndarray], reach: list[np.ndarray], xs: np.ndarray, B: int,
                 levels: Sequence[float]) -> dict[float, np.ndarray]:
    y = {float(level): np.full(len(xs), -np.inf) for level in levels}
    for s in range(0, len(xs), _X_CHUNK):  # (B, chunk) at a time: B × X floats at once would be GBs
        x = xs[s:s + _X_CHUNK]
        g = np.full((B, len(x)), -np.inf)  # resamples with an empty front attain nothing
        for b, (f, r) in enumerate(zip(fronts, reach)):
            i = np.searchsorted(f[:, 0], x, side="left")  # first point with f_1 ≥ x
            g[b] = np.where(i < len(f), r[np.minimum(i, len(f) - 1)], -np.inf)
        for level in y:
            k = _kth(B, level)
            y[level][s:s + _X_CHUNK] = np.partition(g, B - k, axis=0)[B - k]  # the k-th largest g_b(x)
    out = {}
    for level, yl in y.items():
        keep = np.isfinite(yl)
        pts = np.stack([xs[keep], yl[keep]], axis=1)
        corner = np.append(pts[1:, 1] < pts[:-1, 1], True) if len(pts) else np.zeros(0, dtype=bool)
        out[level] = pts[corner]  # where the step drops: the last x of each y level
    return out


def attainment_surface_2d(fronts: Sequence[np.ndarray], level: float) -> np.ndarray:
    """The `level` surface of `attainment_surfaces_2d`."""
    return attainment_surfaces_2d(fronts, [level])[float(level)]


def attainment_surfaces(fronts: Sequence[np.ndarray], levels: Sequence[float],
                        max_points: int = MAX_SURFACE_POINTS) -> dict[float, np.ndarray]:
    """{level: the surface's non-dominated points} of `fronts` (one (k_b, V) array of maximised points per
    resample): exact for V = 2 (`attainment_surfaces_2d`); for V ≥ 3 the points of the fronts' union attained by
    at least ⌈level·B⌉ resamples, non-dominated among themselves (a surface through the resampled points, inside
    the exact one); of more than `max_points` distinct points a seeded random subset."""
    for level in levels:
        _check_level(level)
    fronts = [np.asarray(f, dtype=float) for f in fronts]
    V = next((f.shape[1] for f in fronts if f.ndim == 2), 2)
    if V == 2:
        return attainment_surfaces_2d(fronts, levels)
    fronts = [f.reshape(-1, V)[np.isfinite(f.reshape(-1, V)).all(axis=1)] for f in fronts]
    union = np.unique(np.concatenate([f for f in fronts if len(f)] or [np.zeros((0, V))]), axis=0)
    if len(union) > max_points:  # a seeded subset bounds the cost: points × resamples × front size comparisons
        union = union[np.sort(np.random.default_rng(0).choice(len(union), max_points, replace=False))]
    attained = np.zeros(len(union))
    for f in fronts:
        if len(f) and len(union):
            attained += (f[None, :, :] >= union[:, None, :]).all(axis=-1).any(axis=1)  # (N, k_b, V) → (N,)
    out = {}
    for level in levels:
        kept = union[attained >= _kth(len(fronts), level)]
        out[float(level)] = kept[non_dominated(kept[None])[0]] if len(kept) else kept
    return out


def attainment_surface(fronts: Sequence[np.ndarray], level: float, max_points: int = MAX_SURFACE_POINTS) -> np.ndarray:
    """The `level` surface of `attainment_surfaces`."""
    return attainment_surfaces(fronts, [level], max_points)[float(level)]


def resampled_fronts(scores: np.ndarray, base: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                     axes: Sequence[int] | None = None) -> list[np.ndarray]:
    """One method's front (its non-dominated z-scored means) in each prompt resample, on the values `axes` (default
    all; a subset gives the fronts of the projected points, whose attainment is the projection's)."""
    scores, base = _check(scores, base)
    Z = z_means(scores, base, resample_indices(base.shape[0], n_resamples, seed))  # (B, K, V)
    if axes is not None:
        Z = Z[..., list(axes)]
    front = non_dominated(Z)
    return [Z[b][front[b]] for b in range(len(Z))]


def attainment_bands(scores: np.ndarray, base: np.ndarray, levels: Sequence[float] = ATTAINMENT_LEVELS,
                     n_resamples: int = 1000, seed: int = 0,
                     axes: Sequence[int] | None = None) -> dict[float, np.ndarray]:
    """One method's attainment surfaces over prompt resamples: {level: (n, V') points} (`attainment_surface` of
    `resampled_fronts`)."""
    return attainment_surfaces(resampled_fronts(scores, base, n_resamples, seed, axes), levels)


# ---- On a workspace's stored candidates ----

def _base_rewards(ws: Workspace, table: CandidateTable) -> np.ndarray:
    base_id = table.base_id()
    if base_id is None:
        raise WorkspaceError(f"{ws.root} has no base-model candidate on these prompts; run a sweep first (it "
                             "evaluates the base model, the reference of every z-score)")
    return prompt_rewards(ws, [base_id])[0]  # (P, V)


def front_probability_of_table(ws: Workspace, table: CandidateTable, n_resamples: int = 1000,
                               seed: int = 0) -> np.ndarray:
    """(N,) P(front) of every row of `table` within its method (`front_probability`, the rows' `on_front` under
    prompt resampling); NaN for the base model's rows, and for every row when there is no base model to z-score
    against."""
    out = np.full(len(table), np.nan)
    if table.base_id() is None or table.empty:
        return out
    base = _base_rewards(ws, table)
    ids = table.ids().astype(int)
    unique = sorted(set(ids.tolist()))
    R = prompt_rewards(ws, unique)  # (U, P, V) each candidate read once
    row_of = {c: i for i, c in enumerate(unique)}
    method = table.frame["method"].to_numpy()
    for name in table.methods():
        rows = np.flatnonzero(method == name)
        out[rows] = front_probability(R[[row_of[int(c)] for c in ids[rows]]], base, n_resamples, seed)
    return out


def front_shares_of_workspace(ws: Workspace, table: CandidateTable, methods: Sequence[str], n_resamples: int = 1000,
                              seed: int = 0) -> dict[str, FrontShare]:
    """Each of `methods`' share of their joint front with its interval (`joint_front_shares`) on a workspace."""
    base = _base_rewards(ws, table)
    scored, ids = [], []
    for name in methods:
        cid = table.for_method(name).ids().astype(int).tolist()
        scored.append(MethodScores(name, prompt_rewards(ws, cid) if cid else np.zeros((0, *base.shape))))
        ids.append(cid)
    return joint_front_shares(scored, base, ids, n_resamples, seed)


def attainment_of_workspace(ws: Workspace, table: CandidateTable, method: str, axes: Sequence[str] | None = None,
                            levels: Sequence[float] = ATTAINMENT_LEVELS, n_resamples: int = 1000,
                            seed: int = 0) -> dict[float, pd.DataFrame]:
    """One method's attainment surfaces (`attainment_bands`) on the values `axes` (default all), each a table of
    z columns (`z_<value>`) a front chart draws."""
    base = _base_rewards(ws, table)
    names = list(axes or table.value_names)
    unknown = [a for a in names if a not in table.value_names]
    if unknown:
        raise ConfidenceError(f"values {unknown} are not this workspace's; choose among {list(table.value_names)}")
    cid = table.for_method(method).ids().astype(int).tolist()
    if not cid:
        return {float(level): pd.DataFrame(columns=[z_column(a) for a in names]) for level in levels}
    cols = [table.value_names.index(a) for a in names]
    bands = attainment_bands(prompt_rewards(ws, cid), base, levels, n_resamples, seed, cols)
    return {level: pd.DataFrame(pts, columns=[z_column(a) for a in names]) for level, pts in bands.items()}
