"""Bootstrap intervals over evaluation prompts for hypervolume and MIP, and paired differences between methods.

A method's metrics come from a handful of prompts, so they carry sampling noise. One resample draws P prompts
with replacement from the P evaluation prompts; on those prompts it recomputes every candidate's mean reward,
the z-normalisation against the base model (mean and population std of the base's rewards on the same
resampled prompts, DESIGN "Metrics"), the fronts, the hypervolume from the ONE shared reference point (fixed
from the full data) and MIP. Every method sees the same resampled prompts, so differences are paired.
Intervals are 95 % percentile intervals over B resamples (Efron & Tibshirani 1993, ch. 13).

Pure numpy; 2-objective hypervolumes are computed for all resamples at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Sequence

import numpy as np

from . import pareto
from .errors import MVAError
from .notices import notify

# Below this many evaluation prompts the intervals say little: P prompts allow only C(2P−1, P) distinct resamples
# (10 for 3 prompts, 126 for 5), each repeating a few prompts, and a percentile interval over them spans nearly
# every value the data allow (3 prompts gave an HV interval of [0.016, 149.7], issue 25).
MIN_PROMPTS_FOR_INTERVALS = 10


class BootstrapError(MVAError, ValueError):
    """Inputs of the bootstrap have inconsistent shapes or too few prompts."""


@dataclass
class MethodScores:
    """One method's candidates: per-prompt raw rewards, and for a conditioned policy the preference p of each run."""

    name: str
    scores: np.ndarray  # (K, P, V) raw reward of candidate k on prompt j for value v
    conditioned_on: np.ndarray | None = None  # (K, V): MIP uses the run with p (MO-ODPO, MI-EPO); None: front choice


@dataclass
class Interval:
    estimate: float  # on the evaluation prompts as they are
    low: float
    high: float

    def as_list(self) -> list[float]:
        return [self.low, self.high]


@dataclass
class MethodMetrics:
    hv: Interval
    mip: Interval
    n_prompts: int
    hv_samples: np.ndarray = field(repr=False)  # (B,)
    mip_samples: np.ndarray = field(repr=False)  # (B,)


@dataclass
class PairDifference:
    hv_diff: Interval  # HV(a) - HV(b)
    p_a_better: float  # share of resamples with HV(a) > HV(b), ties counted half


@dataclass
class BootstrapComparison:
    ref: np.ndarray  # (V,) the shared reference point (z units)
    methods: dict[str, MethodMetrics]
    pairs: dict[tuple[str, str], PairDifference]
    n_resamples: int
    seed: int
    caveat: str | None = None  # why the intervals say little (too few prompts), shown beside them

    def difference(self, a: str, b: str) -> PairDifference | None:
        """HV(a) − HV(b) whichever order the pair was computed in; None when either method was not compared."""
        if (a, b) in self.pairs:
            return self.pairs[(a, b)]
        d = self.pairs.get((b, a))
        if d is None:
            return None
        flipped = Interval(-d.hv_diff.estimate, -d.hv_diff.high, -d.hv_diff.low)
        return PairDifference(flipped, 1.0 - d.p_a_better)


def resample_indices(n_prompts: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """(B, P) prompt indices drawn with replacement; seeded so a rerun gives the same intervals."""
    return np.random.default_rng(seed).integers(0, n_prompts, size=(n_resamples, n_prompts))


def z_means(scores: np.ndarray, base: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(B, K, V) z-scores of each candidate's mean reward on each resample's prompts.

    `scores` (K, P, V), `base` (P, V), `idx` (B, P). z = (mean_cand − mean_base) / std_base over the resampled
    prompts; the base's mean and population std ignore its non-finite rewards, and a zero std counts as 1
    (mva_core.scorers.ScoreNormaliser). A non-finite reward of a candidate makes its mean non-finite.
    """
    cand = scores[:, idx, :].mean(axis=2).transpose(1, 0, 2)  # (K, B, P, V) -> (B, K, V)
    b = base[idx]  # (B, P, V)
    finite = np.isfinite(b)
    count = finite.sum(axis=1)  # (B, V)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, b, 0.0).sum(axis=1) / count  # (B, V); NaN where no finite base reward
        var = (np.where(finite, b - mean[:, None, :], 0.0) ** 2).sum(axis=1) / count
        std = np.sqrt(var)
        std = np.where(std > 0, std, 1.0)
        return (cand - mean[:, None, :]) / std[:, None, :]


def hypervolume_2d(F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Hypervolume of each set in `F` (..., K, 2), objectives maximised, w.r.t. `ref` (2,); rows with a
    non-finite objective or not strictly better than `ref` in both count nothing (pymoo's HV agrees)."""
    gain = F - ref  # (..., K, 2)
    ok = np.isfinite(gain).all(axis=-1) & (gain > 0).all(axis=-1)
    gain = np.where(ok[..., None], gain, 0.0)
    order = np.argsort(-gain[..., 0], axis=-1)  # by the first gain, largest first
    a = np.take_along_axis(gain[..., 0], order, axis=-1)  # (..., K)
    b = np.maximum.accumulate(np.take_along_axis(gain[..., 1], order, axis=-1), axis=-1)  # best second gain so far
    width = a - np.concatenate([a[..., 1:], np.zeros_like(a[..., :1])], axis=-1)  # a_i − a_{i+1}, a_{K+1} = 0
    return (width * b).sum(axis=-1)


def hypervolumes(Z: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(B,) hypervolume of each resample's candidates `Z` (B, K, V): vectorised for 2 values, pymoo beyond."""
    if Z.shape[1] == 0:
        return np.zeros(Z.shape[0])
    if Z.shape[2] == 2:
        return hypervolume_2d(Z, ref)
    return np.array([pareto.hypervolume(z, ref) for z in Z])


def mips(Z: np.ndarray, preferences: np.ndarray, conditioned_on: np.ndarray | None = None) -> np.ndarray:
    """(B,) MIP (MI-EPO) of each resample. Grid methods: mean over p of max over finite candidates of p·z (the
    front candidate a user with preference p picks attains that max). Conditioned policies: mean over p of p·z of
    the run conditioned on p; NaN when some p was not run, or its score is not finite."""
    P = np.asarray(preferences, dtype=float)  # (NP, V)
    finite = np.isfinite(Z).all(axis=-1)  # (B, K)
    if conditioned_on is None:
        utility = np.where(finite[..., None], Z @ P.T, -np.inf)  # (B, K, NP)
        best = utility.max(axis=1) if Z.shape[1] else np.full((Z.shape[0], len(P)), -np.inf)  # (B, NP)
        return np.where(np.isfinite(best).all(axis=1), best.mean(axis=1), np.nan)
    C = np.asarray(conditioned_on, dtype=float)
    runs = [np.flatnonzero(np.abs(C - p).max(axis=1) < 1e-9) for p in P]
    if any(len(r) == 0 for r in runs):
        return np.full(Z.shape[0], np.nan)
    utility = np.stack([Z[:, r[0], :] @ p for r, p in zip(runs, P)], axis=1)  # (B, NP)
    return utility.mean(axis=1)


def percentile_interval(samples: np.ndarray, estimate: float, level: float = 0.95) -> Interval:
    """The percentile interval of `samples` (NaN resamples left out; all-NaN gives NaN bounds)."""
    good = samples[np.isfinite(samples)]
    if good.size == 0:
        return Interval(float(estimate), float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(good, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high))


def few_prompts_caveat(n_prompts: int) -> str | None:
    """The warning for intervals over fewer than MIN_PROMPTS_FOR_INTERVALS prompts (None when there are enough)."""
    if n_prompts >= MIN_PROMPTS_FOR_INTERVALS:
        return None
    return (f"only {n_prompts} evaluation prompts: bootstrap intervals over so few prompts say almost nothing "
            f"(they span nearly every value the scores allow); give the workspace's prompt set (workspace.json's "
            f"\"prompts\") at least {MIN_PROMPTS_FOR_INTERVALS} prompts and sweep again before comparing by them")


def bootstrap_compare(methods: Sequence[MethodScores], base: np.ndarray, ref: np.ndarray | None = None,
                      preferences: np.ndarray | None = None, n_resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> BootstrapComparison:
    """HV and MIP of every method with percentile intervals over prompt resamples, and every pair's paired HV
    difference. `base` (P, V) is the base model's per-prompt rewards; `ref` (V,) in z units defaults to the
    per-value minimum over every compared candidate and the base (z = 0), on the prompts as they are. Fewer than
    MIN_PROMPTS_FOR_INTERVALS prompts: the result carries a `caveat`, also sent as a notice."""
    base = np.asarray(base, dtype=float)
    if base.ndim != 2 or base.shape[0] < 2:
        raise BootstrapError(f"base rewards have shape {base.shape}; need (prompts >= 2, values)")
    n_prompts, n_values = base.shape
    for m in methods:
        if m.scores.ndim != 3 or m.scores.shape[1:] != (n_prompts, n_values):
            raise BootstrapError(f"method {m.name!r}: scores have shape {m.scores.shape}; need (candidates, "
                                 f"{n_prompts} prompts, {n_values} values) like the base model's")
    if n_resamples < 1:
        raise BootstrapError(f"n_resamples = {n_resamples}; use at least 1000 for 95 % intervals")
    P = pareto.preference_vectors(n_values) if preferences is None else np.asarray(preferences, dtype=float)
    identity = np.arange(n_prompts)[None, :]  # the prompts as they are
    point = {m.name: z_means(m.scores, base, identity)[0] for m in methods}  # (K, V)
    if ref is None:
        every = np.concatenate([np.zeros((1, n_values)), *point.values()])
        ref = pareto.reference_point(every[pareto.finite_rows(every)])
    ref = pareto.check_reference_point(ref, n_values)  # a NaN or inf reference would give NaN or 0 hypervolumes
    idx = resample_indices(n_prompts, n_resamples, seed)
    out: dict[str, MethodMetrics] = {}
    for m in methods:
        Z = z_means(m.scores, base, idx)  # (B, K, V)
        hv, mip = hypervolumes(Z, ref), mips(Z, P, m.conditioned_on)
        hv0 = float(hypervolumes(point[m.name][None], ref)[0])
        mip0 = float(mips(point[m.name][None], P, m.conditioned_on)[0])
        out[m.name] = MethodMetrics(percentile_interval(hv, hv0, level), percentile_interval(mip, mip0, level),
                                    n_prompts, hv, mip)
    pairs = {}
    for a, b in combinations([m.name for m in methods], 2):
        diff = out[a].hv_samples - out[b].hv_samples
        pairs[(a, b)] = PairDifference(
            percentile_interval(diff, out[a].hv.estimate - out[b].hv.estimate, level),
            float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0)))
    caveat = few_prompts_caveat(n_prompts)
    if caveat:
        notify(caveat)
    return BootstrapComparison(ref, out, pairs, n_resamples, seed, caveat)
