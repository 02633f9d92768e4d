"""Pareto filter and front metrics: non-dominated rank, front, hypervolume, MIP, CRD (DESIGN "Pareto filter", "Metrics").

Rows of `F` are candidates, columns are objectives (one mean reward per value, MVA Eq.20). Rewards are
MAXIMISED. pymoo minimises, so every array handed to pymoo goes through `_to_minimisation` — the only
place a sign is flipped. Rows with a non-finite objective are never ranked, never on the front and never
count towards the hypervolume; `analyse` reports them in `excluded`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from .errors import MVAError


class ParetoError(MVAError, ValueError):
    """The objectives, reference point or preferences handed to the Pareto filter are unusable."""


def _as_objectives(F: Any) -> np.ndarray:
    F = np.asarray(F, dtype=float)
    if F.ndim != 2 or F.shape[1] < 1:
        raise ParetoError(f"objectives have shape {F.shape}; pass a 2-D array (candidates, objectives) "
                          "with at least one objective column")
    return F


def _to_minimisation(F: np.ndarray) -> np.ndarray:
    """Rewards (maximised) → pymoo objectives (minimised). The ONE sign flip in this module."""
    return -F


def is_finite(x: Any) -> bool:
    """Is `x` one finite real number? False for NaN, ±inf, None and non-numbers: a table cell with no score,
    or the NaN rank of a candidate left off the front (DESIGN §4)."""
    return isinstance(x, numbers.Real) and math.isfinite(x)


def finite_rows(F: np.ndarray) -> np.ndarray:
    """Boolean mask (n,) of candidates whose objectives are all finite (DESIGN §4: others are excluded)."""
    return np.isfinite(_as_objectives(F)).all(axis=1)


def non_dominated_rank(F: np.ndarray) -> np.ndarray:
    """Non-dominated rank (n,) as floats: 0 = the front (MVA Alg.1), 1 = front once 0 is removed, ….

    pymoo `NonDominatedSorting` on the finite rows; rows with a non-finite objective get NaN.
    Equal points do not dominate each other, so duplicates share a rank.
    """
    F = _as_objectives(F)
    rank = np.full(F.shape[0], np.nan)
    finite = finite_rows(F)
    if finite.any():
        _, r = NonDominatedSorting().do(_to_minimisation(F[finite]), return_rank=True)
        rank[finite] = r
    return rank


def front_indices(F: np.ndarray) -> np.ndarray:
    """Row indices (ascending) of the finite candidates no other candidate dominates (MVA Eq.20, Alg.1).

    Dominates = all rewards ≥ and one >; exact duplicates therefore both stay on the front.
    """
    return np.flatnonzero(non_dominated_rank(F) == 0)


def reference_point(F: np.ndarray) -> np.ndarray:
    """DESIGN default reference point: per-objective minimum over the finite candidates.

    Pass the union of every method's candidates so all methods share one reference. The extreme
    candidates equal this minimum on some objective and so add no volume of their own (HV counts only
    points strictly better than the reference in every objective) — expected, not a bug.
    """
    F = _as_objectives(F)
    finite = finite_rows(F)
    if not finite.any():
        raise ParetoError(f"no candidate has all {F.shape[1]} objectives finite ({F.shape[0]} rows), so there is "
                          "no default reference point; fix the scores or pass a reference point explicitly")
    return F[finite].min(axis=0)


def check_reference_point(ref: Any, n_objectives: int) -> np.ndarray:
    """`ref` as a 1-D float array; raises ParetoError unless it is `n_objectives` finite numbers."""
    ref = np.asarray(ref, dtype=float).reshape(-1)
    if ref.shape[0] != n_objectives or not np.isfinite(ref).all():
        raise ParetoError(f"reference point {ref.tolist()} must be {n_objectives} finite numbers, "
                          "one per objective, e.g. the per-objective minimum of the candidates")
    return ref


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume dominated by the front of `F` and bounded below by `ref` (pymoo `HV`; DESIGN "Metrics").

    Non-finite rows are dropped; a point not strictly better than `ref` in every objective adds nothing,
    as in pymoo. No finite rows → 0.0.
    """
    F = _as_objectives(F)
    ref = check_reference_point(ref, F.shape[1])
    front = F[front_indices(F)]
    if front.shape[0] == 0:
        return 0.0
    return float(HV(ref_point=_to_minimisation(ref))(_to_minimisation(front)))


@dataclass
class ParetoResult:
    """What `python -m mva_core pareto --json` prints (DESIGN §3); indices are 0-based rows of `F`."""

    pareto: list[int]
    rank: list[int | None]  # None for excluded rows
    hypervolume: float
    ref: list[float]
    excluded: list[int]  # rows with a non-finite objective

    def to_json_dict(self) -> dict[str, Any]:
        return {"pareto": list(self.pareto), "rank": list(self.rank), "hypervolume": float(self.hypervolume),
                "ref": list(self.ref), "excluded": list(self.excluded)}


def analyse(F: np.ndarray, ref: np.ndarray | None = None) -> ParetoResult:
    """Front, ranks and hypervolume of `F` (rewards maximised). `ref=None` → `reference_point(F)`.

    Rows with a non-finite objective are excluded from the front and the hypervolume (rank None).
    """
    F = _as_objectives(F)
    ref = reference_point(F) if ref is None else check_reference_point(ref, F.shape[1])
    rank = non_dominated_rank(F)
    return ParetoResult(
        pareto=[int(i) for i in np.flatnonzero(rank == 0)],
        rank=[None if np.isnan(r) else int(r) for r in rank],
        hypervolume=hypervolume(F, ref),
        ref=[float(x) for x in ref],
        excluded=[int(i) for i in np.flatnonzero(~finite_rows(F))],
    )


def _check_preference(p: Any, n_objectives: int) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if p.shape != (n_objectives,) or not np.isfinite(p).all() or (p < 0).any():
        raise ParetoError(f"preference vector {p.tolist()} must be {n_objectives} finite non-negative numbers, "
                          "one per objective, e.g. from preference_vectors()")
    return p


def best_for_preference(F: np.ndarray, p: np.ndarray) -> int:
    """Row index of the front candidate maximising `p · s` — the user's choice rule (MI-EPO MIP; DESIGN "Metrics").

    Ties go to the lowest row index.
    """
    F = _as_objectives(F)
    p = _check_preference(p, F.shape[1])
    front = front_indices(F)
    if front.size == 0:
        raise ParetoError(f"none of the {F.shape[0]} candidates has all objectives finite; "
                          "score at least one candidate before choosing by preference")
    return int(front[np.argmax(F[front] @ p)])  # argmax returns the first maximum; front is ascending


def mip(F: np.ndarray, preferences: np.ndarray) -> float:
    """MIP (MI-EPO): mean over preference vectors `p` of `p · s(p)`, `s(p)` = `best_for_preference(F, p)`.

    `F` may be the front or all candidates (the choice rule only looks at the front).
    """
    F = _as_objectives(F)
    P = np.asarray(preferences, dtype=float)
    if P.ndim != 2 or P.shape[0] == 0:
        raise ParetoError(f"preferences have shape {P.shape}; pass a 2-D array (preferences, objectives), "
                          "e.g. preference_vectors(n_values)")
    return float(np.mean([p @ F[best_for_preference(F, p)] for p in P]))


def mip_conditioned(preferences: np.ndarray, conditioned_on: np.ndarray, F: np.ndarray) -> float:
    """MIP (MI-EPO) of a preference-conditioned policy: mean over `preferences` p of p · s(p), where s(p) is the
    row of `F` whose `conditioned_on` row equals p (the policy run with p in its prompt). NaN when some p was
    not evaluated (the mean would silently be over fewer preferences)."""
    P = np.asarray(preferences, dtype=float)
    C = np.atleast_2d(np.asarray(conditioned_on, dtype=float))
    F = _as_objectives(F)
    if C.shape[0] != F.shape[0]:
        raise ParetoError(f"{C.shape[0]} preference rows for {F.shape[0]} reward rows; give one p per candidate")
    total = 0.0
    for p in P:
        hits = np.flatnonzero(np.abs(C - p).max(axis=1) < 1e-9) if len(C) else []
        if len(hits) == 0:
            return float("nan")
        total += float(p @ F[hits[0]])
    return total / len(P)


def crd(reward_samples_per_p: list[np.ndarray]) -> float:
    """CRD (MI-EPO, Xie et al. 2026, arXiv:2607.01392; DESIGN "Metrics"): mean over preference vectors p of
    det Cov(rewards of the responses sampled for p).

    Entry k is the (samples, objectives) matrix of reward vectors of every response sampled for preference k, one
    row per response (`results.crd_by_method` passes all prompts × samples per prompt of the candidate chosen for p,
    in z units); Cov over the rows as `np.cov(rowvar=False)` (unbiased, divides by samples − 1), so
    CRD = (1/|P|) Σ_p det Cov_p.
    """
    if len(reward_samples_per_p) == 0:
        raise ParetoError("no reward samples given; pass one (samples, objectives) array per preference vector")
    dets = []
    for k, R in enumerate(reward_samples_per_p):
        R = np.asarray(R, dtype=float)
        if R.ndim != 2 or R.shape[0] < 2 or R.shape[1] < 1:
            raise ParetoError(f"reward samples for preference {k} have shape {R.shape}; CRD needs a covariance, "
                              "so pass at least 2 sampled responses × ≥1 objective")
        if not np.isfinite(R).all():
            raise ParetoError(f"reward samples for preference {k} contain non-finite values; "
                              "drop or re-score those responses before computing CRD")
        dets.append(np.linalg.det(np.atleast_2d(np.cov(R, rowvar=False))))  # (m, m); 0-d when m == 1
    return float(np.mean(dets))


# MI-EPO evaluation preferences for 3 values (DESIGN "Metrics"): the 3 vertices, the 3 edge midpoints,
# the centroid, and the 6 permutations of (0.6, 0.3, 0.1) — interior points off the medians, so the set
# is symmetric under swapping values and covers the simplex between the other points.
_PREFERENCES_3 = np.array([
    [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
    [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5],
    [1 / 3, 1 / 3, 1 / 3],
    [0.6, 0.3, 0.1], [0.6, 0.1, 0.3], [0.3, 0.6, 0.1], [0.1, 0.6, 0.3], [0.3, 0.1, 0.6], [0.1, 0.3, 0.6],
])


def preference_vectors(n_values: int) -> np.ndarray:
    """Fixed evaluation preference vectors (MI-EPO; DESIGN "Metrics"), one per row, each summing to 1.

    2 values: the 11 points [0, 1], [0.1, 0.9], …, [1, 0]. 3 values: the 13 points of `_PREFERENCES_3`.
    """
    if n_values == 2:
        i = np.arange(11)
        return np.stack([i / 10, (10 - i) / 10], axis=1)  # (11, 2); (10-i)/10 keeps 0.7 exact, 1 - 0.3 would not
    if n_values == 3:
        return _PREFERENCES_3.copy()
    raise ParetoError(f"no fixed preference vectors for {n_values} values; MIP is defined for 2 or 3 values")


def load_objectives_csv(path: str | Path, objectives: list[str]) -> np.ndarray:
    """Objective columns of a CSV as a float array (data rows, objectives); empty / NaN / inf cells stay non-finite."""
    path = Path(path)
    if not objectives:
        raise ParetoError("no objectives named; list the CSV columns to maximise, e.g. help,harm")
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise ParetoError(f"{path} does not exist; pass the path of a CSV with a header row") from None
    except pd.errors.EmptyDataError:
        raise ParetoError(f"{path} is empty; it needs a header row naming the objective columns") from None
    except pd.errors.ParserError as exc:
        raise ParetoError(f"{path} is not a readable CSV ({str(exc).strip().splitlines()[0]}); "
                          "check the delimiter and quoting") from None
    available = [str(c) for c in df.columns]
    for name in objectives:
        if name not in df.columns:
            raise ParetoError(f"{path} has no column {name!r}; available columns: {', '.join(available)}")
    out = np.empty((len(df), len(objectives)))
    for j, name in enumerate(objectives):
        col = df[name]
        if pd.api.types.is_bool_dtype(col):
            values = pd.Series(np.nan, index=col.index)  # True/False are not rewards: every row is bad
        else:
            values = pd.to_numeric(col, errors="coerce")
        bad = np.flatnonzero(col.notna().to_numpy() & values.isna().to_numpy())
        if bad.size:
            row = int(bad[0])
            raise ParetoError(f"column {name!r} of {path} is not numeric: data row {row} (0-based) is "
                              f"{col.iloc[row]!r}; objectives must be numbers (empty, nan or inf are allowed)")
        out[:, j] = values.to_numpy(dtype=float)
    return out
