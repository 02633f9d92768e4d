""""Best X with Y at least y" (issue 29 item 2): the stored candidate and the surrogate-predicted weights that maximise
one value's z-score subject to lower bounds on others, in the units the front charts show (z-scores against the
base model, DESIGN "Metrics").

Stored answer: among a method's finite candidates (or every method's) those with z_v ≥ b_v for every bound, the one
with the highest z of the maximised value (ties: the higher sum of the other z-scores, then the lower id, so a
candidate never loses to one it dominates). Predicted answer: the method's surrogate (`surrogate.fit_surrogate`, one
GP per value over weights → z) evaluated on a lattice of the method's own weights (its grid kind's points, or the
simplex of p for a conditioned policy); the point with the highest predicted mean of the maximised value whose
predicted means meet every bound. Its uncertainty: the predicted sd of every value there, the probability that
every bound holds (independent normal marginals, Π_v Φ((μ_v − b_v)/σ_v)), and the range of the weights whose
predicted objective is within one sd of the best (the weights the surrogate cannot tell apart from it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import MVAError
from .kinds import CompositionKind, GridKind, SearchSpace, SIMPLEX
from .surrogate import MIN_CANDIDATES, Surrogate, fit_surrogate
from .table import CandidateTable

# Lattice steps per number of weights: about 10⁴ points, predicted at once (a GP predicts 10⁴ points in ~0.1 s).
LATTICE_STEP = {1: 0.001, 2: 0.01, 3: 0.05, 4: 0.1}
COARSE_STEP = 0.25  # five or more weights


class PickError(MVAError, ValueError):
    """A pick query names an unknown value, a bad bound, or a method without candidates."""


@dataclass
class PickQuery:
    """Maximise `maximize`'s z-score subject to z_v ≥ `at_least[v]` (z units, as the charts)."""

    maximize: str
    at_least: dict[str, float] = field(default_factory=dict)

    def check(self, value_names: Sequence[str]) -> "PickQuery":
        names = list(value_names)
        if self.maximize not in names:
            raise PickError(f"--maximize {self.maximize!r} is not a value of this workspace; choose one of {names}")
        for v, b in self.at_least.items():
            if v not in names:
                raise PickError(f"--at-least {v}={b}: {v!r} is not a value of this workspace; choose among {names}")
            if not math.isfinite(b):
                raise PickError(f"--at-least {v}={b}: the bound must be a finite number (z units), e.g. {v}=0.4")
        return self

    def feasible(self, value_names: Sequence[str], Z: np.ndarray) -> np.ndarray:
        """(N,) rows of `Z` (N, V) meeting every bound."""
        ok = np.isfinite(Z).all(axis=1)
        for v, b in self.at_least.items():
            ok &= Z[:, list(value_names).index(v)] >= b
        return ok

    def text(self) -> str:
        bounds = ", ".join(f"{v} ≥ {b:g}" for v, b in self.at_least.items())
        return f"highest {self.maximize}" + (f" with {bounds}" if bounds else "") + " (z vs base)"


def parse_bounds(items: Sequence[str] | None) -> dict[str, float]:
    """`["brevity=0.4", …]` → {"brevity": 0.4}; PickError naming the item that is not VALUE=NUMBER."""
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, number = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(number)
        except ValueError:
            raise PickError(f"--at-least {item!r}: write it as VALUE=NUMBER in z units, e.g. --at-least brevity=0.4 "
                            "(--at-least=brevity=-0.5 for a negative bound)") from None
    return out


@dataclass
class StoredAnswer:
    id: int
    method: str
    weights: dict[str, float]
    z: dict[str, float]
    raw: dict[str, float]


@dataclass
class PredictedAnswer:
    method: str
    weights: dict[str, float]
    weights_range: dict[str, list[float]]  # per weight [low, high] of the weights within 1 sd of the best
    z: dict[str, float]  # predicted mean
    z_sd: dict[str, float]  # predicted sd
    p_bounds_met: float  # Π_v Φ((μ_v − b_v) / σ_v)
    n_candidates: int  # stored candidates the surrogate was fitted on
    lattice_points: int


@dataclass
class PickAnswer:
    query: PickQuery
    stored: StoredAnswer | None
    stored_why: str | None  # why there is no stored answer
    predicted: PredictedAnswer | None
    predicted_why: str | None

    def found(self) -> bool:
        return self.stored is not None or self.predicted is not None

    def to_json(self) -> dict[str, Any]:
        """The `pick --json` document: the query, the stored and predicted answers (null with a `*_why`)."""
        return {"maximize": self.query.maximize, "at_least": dict(self.query.at_least), "units": "z",
                "stored": asdict(self.stored) if self.stored else None, "stored_why": self.stored_why,
                "predicted": asdict(self.predicted) if self.predicted else None, "predicted_why": self.predicted_why}


# ---- Stored answer ----

def pick_stored(table: CandidateTable, query: PickQuery,
                methods: Sequence[str] | None = None) -> tuple[StoredAnswer | None, str | None]:
    """The best stored candidate of `methods` (default every method, the base model left out) under the bounds, or
    None with a plain reason naming how far the candidates get."""
    names = list(table.value_names)
    query.check(names)
    rows = table.for_methods(list(methods), base=False) if methods is not None else table.without_base()
    where = f"of {', '.join(methods)}" if methods is not None else "of any method"
    Z = rows.z()
    finite = np.isfinite(Z).all(axis=1)
    if not finite.any():
        return None, f"no stored candidate {where} has finite scores; run a sweep or evaluate a point first"
    ok = query.feasible(names, Z)
    if not ok.any():
        reach = "; ".join(f"the highest {v} is {np.nanmax(np.where(finite, Z[:, names.index(v)], np.nan)):+.3f}"
                          for v in query.at_least)
        return None, f"no stored candidate {where} has {', '.join(f'{v} ≥ {b:g}' for v, b in query.at_least.items())} " \
                     f"(z vs base): {reach}"
    j = names.index(query.maximize)
    others = Z.sum(axis=1) - Z[:, j]
    ids = rows.ids().astype(int)
    cand = np.flatnonzero(ok)
    best = cand[np.lexsort((ids[cand], -others[cand], -Z[cand, j]))[0]]  # objective, then others' sum, then id
    frame = rows.frame.iloc[best]
    W = rows.weights()[best]
    return StoredAnswer(int(ids[best]), str(frame["method"]),
                        {v: float(w) for v, w in zip(names, W) if np.isfinite(w)},
                        {v: float(Z[best, i]) for i, v in enumerate(names)},
                        {v: float(x) for v, x in zip(names, rows.raw()[best])}), None


# ---- Predicted answer ----

def weight_lattice(kind: CompositionKind, n: int, C: float) -> np.ndarray:
    """(M, n) the weights a method of `kind` can be composed at, on a lattice of ~10⁴ points (`LATTICE_STEP`): its
    grid kind's points over [0, bound]^n, or the simplex of p for a conditioned policy."""
    step = LATTICE_STEP.get(n, COARSE_STEP)
    if isinstance(kind, GridKind):
        return SearchSpace(n_values=n, C=kind.bound(C), step=step * kind.bound(C), kind=kind).grid()
    if kind.preference_in_prompt:
        return SearchSpace(n_values=n, C=1.0, step=step, kind=SIMPLEX).grid()
    raise PickError(f"{kind.name} candidates are a few fixed models: there are no weights between them to predict")


def pick_predicted(surrogate: Surrogate, lattice: np.ndarray, query: PickQuery, method: str,
                   value_names: Sequence[str]) -> tuple[PredictedAnswer | None, str | None]:
    """The lattice point with the highest predicted mean of the maximised value whose predicted means meet every
    bound (module docstring), or None with how far the surrogate's predictions get."""
    names = list(value_names)
    query.check(names)
    mu, sd = surrogate.predict(lattice)  # (M, V) each
    ok = query.feasible(names, mu)
    if not ok.any():
        reach = "; ".join(f"its highest predicted {v} is {mu[:, names.index(v)].max():+.3f}" for v in query.at_least)
        return None, (f"the surrogate of {method} predicts no weights with "
                      f"{', '.join(f'{v} ≥ {b:g}' for v, b in query.at_least.items())} (z vs base): {reach}")
    j = names.index(query.maximize)
    cand = np.flatnonzero(ok)
    best = cand[np.argmax(mu[cand, j])]
    near = cand[mu[cand, j] >= mu[best, j] - sd[best, j]]  # weights it cannot tell from the best
    p = 1.0
    for v, b in query.at_least.items():
        i = names.index(v)
        p *= 0.5 * (1 + math.erf((mu[best, i] - b) / (max(sd[best, i], 1e-12) * math.sqrt(2))))
    wnames = names if lattice.shape[1] == len(names) else [f"w{i}" for i in range(lattice.shape[1])]
    return PredictedAnswer(
        method, {v: float(w) for v, w in zip(wnames, lattice[best])},
        {v: [float(lattice[near, i].min()), float(lattice[near, i].max())] for i, v in enumerate(wnames)},
        {v: float(mu[best, i]) for i, v in enumerate(names)}, {v: float(sd[best, i]) for i, v in enumerate(names)},
        float(p), surrogate.n_candidates, len(lattice)), None


def surrogate_of(table: CandidateTable, method: str) -> Surrogate:
    """The method's surrogate over its finite stored candidates (weights → z), as Explore fits it."""
    rows = table.for_method(method)
    keep = rows.finite()
    return fit_surrogate(rows.weights()[keep], rows.z()[keep], list(table.value_names))


def pick(table: CandidateTable, query: PickQuery, kinds: Mapping[str, CompositionKind], C: float,
         method: str | None = None, surrogate: Surrogate | None = None) -> PickAnswer:
    """Both answers, among `method`'s candidates or (None) every method's. `kinds` maps each method to its
    composition kind. The predicted answer comes from the surrogate of `method`, or without one the best over every
    method whose every weight is a candidate (a grid or a conditioned policy, `kind.continuous`) with at least
    MIN_CANDIDATES finite candidates. `surrogate`: one already fitted on `method` (Explore's), else fitted here."""
    names = list(table.value_names)
    query.check(names)
    if method is not None and method not in table.methods():
        raise PickError(f"--method {method!r} has no candidates; methods with candidates: "
                        f"{table.methods(sort=True) or 'none (run a sweep first)'}")
    stored, stored_why = pick_stored(table, query, None if method is None else [method])
    targets = [method] if method is not None else table.methods()
    answers, whys = [], []
    for target in targets:
        kind = kinds.get(target)
        if kind is None or not kind.continuous:
            whys.append(f"{target} is a few fixed models: nothing between them to predict")
        elif int(table.for_method(target).finite().sum()) < MIN_CANDIDATES:
            whys.append(f"{target} has fewer than {MIN_CANDIDATES} finite candidates: too few to fit a surrogate")
        else:
            model = surrogate if surrogate is not None and method is not None else surrogate_of(table, target)
            answer, why = pick_predicted(model, weight_lattice(kind, model.n_weights, C), query, target, names)
            answers.append(answer) if answer is not None else whys.append(why)
    predicted = max(answers, key=lambda a: a.z[query.maximize]) if answers else None
    predicted_why = None if predicted is not None else ("; ".join(whys) or "no method with candidates")
    return PickAnswer(query, stored, stored_why, predicted, predicted_why)
