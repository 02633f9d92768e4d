"""Bootstrap intervals over evaluation prompts for hypervolume and MIP, and paired differences between methods.

A method's metrics come from a handful of prompts, so they carry sampling noise. One resample draws P prompts
with replacement from the P evaluation prompts; on those prompts it recomputes every candidate's mean reward,
the z-normalisation against the base model (mean and population std of the base's rewards on the same
resampled prompts, DESIGN "Metrics"), the fronts, the hypervolume from the ONE shared reference point (fixed
from the full data) and MIP. Every method sees the same resampled prompts, so differences are paired.

Intervals (issue 27 item 4). A method's own HV, MIP (and CRD, mva_core.metrics) get 95 % BCa intervals
(bias-corrected and accelerated; Efron 1987, Efron & Tibshirani 1993 ch. 14), computed by
`scipy.stats.bootstrap(method="BCa")` over OUR resamples (passed as `bootstrap_result`, so every method and every
pair shares them) with the jackknife over leave-one-prompt-out sets: the HV of a front is a max over noisy
candidates, so the estimate sits low in its own resamples (the demo's `mva`: at their 27th percentile) and a
percentile interval misses the truth (86 % coverage of 95 % intervals on tests/test_bootstrap_coverage.py's
demo-like problem; BCa 95 %). Paired differences keep the percentile interval (Efron & Tibshirani 1993, ch. 13):
it covered 92 % there. A BCa interval that is not defined (constant or non-finite resamples, an estimate outside
its resamples, a constant jackknife) falls back to the percentile interval, and says so in `Interval.method`.

Pure numpy; 2-objective hypervolumes are computed for all resamples at once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations
from types import SimpleNamespace
from typing import Callable, Literal, Sequence

import numpy as np
from scipy import stats

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


IntervalMethod = Literal["BCa", "percentile"]
PER_METHOD_INTERVAL: IntervalMethod = "BCa"  # a method's HV, MIP, CRD (falls back to percentile where undefined)
DIFFERENCE_INTERVAL: IntervalMethod = "percentile"  # paired differences between methods


@dataclass
class Interval:
    estimate: float  # on the evaluation prompts as they are
    low: float
    high: float
    method: IntervalMethod = "percentile"  # how low/high were computed (BCa may fall back to percentile)

    def as_list(self) -> list[float]:
        return [self.low, self.high]


@dataclass
class MethodMetrics:
    hv: Interval
    mip: Interval
    n_prompts: int
    hv_samples: np.ndarray = field(repr=False)  # (B,)
    mip_samples: np.ndarray = field(repr=False)  # (B,)


# Half the last digit a ΔHV bound is shown with (4 decimals): a bound closer to 0 than this reads as 0.
SHOWN_ZERO = 5e-5


@dataclass
class PairDifference:
    hv_diff: Interval  # HV(a) - HV(b)
    p_a_better: float  # share of resamples with HV(a) > HV(b), ties counted half

    def verdict(self, a: str, b: str) -> str:
        """What the paired interval of HV(a) − HV(b) says, in words every surface uses (Compare, `compare`, the
        paper and demo reports): "within noise" when it holds 0; "at the edge of noise" when it excludes 0 by
        less than the last digit shown (a bound that reads as ±0.0000); otherwise which method is ahead."""
        lo, hi = self.hv_diff.low, self.hv_diff.high
        ahead = a if lo > 0 else b if hi < 0 else None
        if ahead is None:
            return "within noise: the interval holds 0"
        if min(abs(lo), abs(hi)) < SHOWN_ZERO:
            return f"at the edge of noise: {ahead} ahead, but the interval ends at 0 to 4 decimals"
        return f"{ahead} is ahead"


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
        flipped = Interval(-d.hv_diff.estimate, -d.hv_diff.high, -d.hv_diff.low, d.hv_diff.method)
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


def bca_intervals(statistic: Callable[[np.ndarray], np.ndarray], n_prompts: int, samples: np.ndarray,
                  estimates: np.ndarray, level: float = 0.95) -> list[Interval]:
    """BCa intervals (Efron & Tibshirani 1993, ch. 14; `scipy.stats.bootstrap(method="BCa")`) of k statistics over
    the same prompt resamples.

    `statistic` maps prompt indices (N, P') into range(n_prompts) to the k statistics (k, N); `samples` (k, B) are
    its values on the resamples (`resample_indices`), which scipy reuses as they are (`bootstrap_result`), so
    intervals of different statistics and the paired differences share one set of resamples; scipy adds the
    jackknife (leave one prompt out) for the acceleration. `estimates` (k,) are the statistics on the prompts as they are. Where BCa is not
    defined — a non-finite resample or estimate, all resamples equal, an estimate outside its resamples (bias
    correction ±∞), a constant jackknife (acceleration 0/0) — the row's interval is the percentile one instead,
    marked `method="percentile"`.
    """
    samples = np.atleast_2d(np.asarray(samples, dtype=float))  # (k, B)
    estimates = np.asarray(estimates, dtype=float).reshape(-1)  # (k,)
    out = [percentile_interval(s, e, level) for s, e in zip(samples, estimates)]
    ok = (np.isfinite(samples).all(axis=1) & np.isfinite(estimates)
          & (samples.min(axis=1) < samples.max(axis=1)))  # rows BCa may be defined for
    rows = np.flatnonzero(ok)
    if not len(rows) or samples.shape[1] < 2:
        return out
    def on_indices(i: np.ndarray, axis: int = -1) -> np.ndarray:
        """scipy's vectorised call: i (..., P') → (len(rows), ...)."""
        i = np.asarray(i)
        flat = i.reshape(-1, i.shape[-1])  # (N, P')
        return np.asarray(statistic(flat), dtype=float)[rows].reshape(len(rows), *i.shape[:-1])

    # A resample that redraws the same prompts in another order has the estimate's value up to rounding; count it
    # as a tie (half below, as scipy counts ties) rather than let the last bits move the bias correction.
    theta = np.asarray(statistic(np.arange(n_prompts)[None]), dtype=float)[rows, 0]  # as scipy computes it
    kept = samples[rows]
    kept = np.where(np.isclose(kept, theta[:, None], rtol=1e-9, atol=0.0), theta[:, None], kept)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # undefined cases come back as NaN bounds, which fall back below; the warnings would only repeat that
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((np.arange(n_prompts),), on_indices, vectorized=True, n_resamples=0, method="BCa",
                              confidence_level=level,
                              bootstrap_result=SimpleNamespace(bootstrap_distribution=kept))
    lows, highs = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    for r, lo, hi in zip(rows, lows, highs):
        if np.isfinite(lo) and np.isfinite(hi):
            out[r] = Interval(float(estimates[r]), float(lo), float(hi), "BCa")
    return out


def few_prompts_caveat(n_prompts: int) -> str | None:
    """The warning for intervals over fewer than MIN_PROMPTS_FOR_INTERVALS prompts (None when there are enough)."""
    if n_prompts >= MIN_PROMPTS_FOR_INTERVALS:
        return None
    return (f"only {n_prompts} evaluation prompts: bootstrap intervals over so few prompts say almost nothing "
            f"(they span nearly every value the scores allow); give the workspace's prompt set (workspace.json's "
            f"\"prompts\") at least {MIN_PROMPTS_FOR_INTERVALS} prompts and sweep again before comparing by them")


def method_statistics(method: MethodScores, base: np.ndarray, ref: np.ndarray,
                      preferences: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The function prompt indices (N, P') → (2, N) [hypervolume, MIP] of one method on each row's prompts (z-scores
    against the base model on those prompts, `ref` fixed): the statistic that is resampled and jackknifed."""
    def on_prompts(idx: np.ndarray) -> np.ndarray:
        Z = z_means(method.scores, base, idx)  # (N, K, V)
        return np.stack([hypervolumes(Z, ref), mips(Z, preferences, method.conditioned_on)])
    return on_prompts


def bootstrap_compare(methods: Sequence[MethodScores], base: np.ndarray, ref: np.ndarray | None = None,
                      preferences: np.ndarray | None = None, n_resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> BootstrapComparison:
    """HV and MIP of every method with BCa intervals over prompt resamples (`bca_intervals`), and every pair's
    paired HV difference with its percentile interval over the same resamples (`percentile_interval`). `base`
    (P, V) is the base model's per-prompt rewards; `ref` (V,) in z units defaults to the per-value minimum over every
    compared candidate and the base (z = 0), on the prompts as they are. Fewer than MIN_PROMPTS_FOR_INTERVALS
    prompts: the result carries a `caveat`, also sent as a notice."""
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
        statistic = method_statistics(m, base, ref, P)
        hv, mip = statistic(idx)  # (B,) each
        hv_ci, mip_ci = bca_intervals(statistic, n_prompts, np.stack([hv, mip]), statistic(identity)[:, 0], level)
        out[m.name] = MethodMetrics(hv_ci, mip_ci, n_prompts, hv, mip)
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
