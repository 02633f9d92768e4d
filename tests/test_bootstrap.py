"""Bootstrap intervals over prompts (issue 16 item 1), checked against a hand-worked resample, against loops over
the resamples that use pymoo's hypervolume, the store's z-normaliser and pareto's MIP, and against known
properties (a method compared with itself differs by exactly 0)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import norm

from mva_core import pareto
from mva_core.bootstrap import (BootstrapComparison, Interval, MethodScores, bca_intervals, bootstrap_compare,
                                hypervolume_2d, resample_indices, z_means)
from mva_core.scorers import ScoreNormaliser


def test_one_resample_by_hand():
    base = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])  # (P=3, V=2)
    cand = np.array([[[1.0, 1.0], [3.0, 0.0], [5.0, 2.0]]])  # (K=1, P, V)
    idx = np.array([[0, 0, 1]])  # prompts 0, 0, 1
    # base on the resample: value 0 -> [0, 0, 2]: mean 2/3, pop. std sqrt(8/9); value 1 -> [1, 1, 3]: mean 5/3, same std
    # candidate on the resample: value 0 -> [1, 1, 3]: mean 5/3; value 1 -> [1, 1, 0]: mean 2/3
    std = np.sqrt(8 / 9)
    want = np.array([[(5 / 3 - 2 / 3) / std, (2 / 3 - 5 / 3) / std]])
    np.testing.assert_allclose(z_means(cand, base, idx)[0], want)


def test_hypervolume_2d_equals_pymoo():
    rng = np.random.default_rng(3)
    for _ in range(50):
        F = rng.normal(size=(rng.integers(0, 12), 2))
        F[rng.random(len(F)) < 0.1] = np.nan
        ref = rng.normal(size=2) - 1
        assert hypervolume_2d(F[None], ref)[0] == pytest.approx(pareto.hypervolume(F, ref) if len(F) else 0.0,
                                                               abs=1e-12)


def make_methods(rng, n_prompts=12):
    base = rng.normal(size=(n_prompts, 2))
    grid = MethodScores("grid", rng.normal(0.2, 1.0, size=(9, n_prompts, 2)))
    P = pareto.preference_vectors(2)
    policy = MethodScores("policy", rng.normal(0.1, 1.0, size=(len(P), n_prompts, 2)), conditioned_on=P[::-1].copy())
    return base, [grid, policy]


def test_every_resample_equals_a_loop_with_pymoo_and_pareto_mip():
    rng = np.random.default_rng(0)
    base, methods = make_methods(rng)
    result = bootstrap_compare(methods, base, n_resamples=40, seed=7)
    idx = resample_indices(len(base), 40, seed=7)
    P = pareto.preference_vectors(2)
    for m in methods:
        for b, rows in enumerate(idx):
            normaliser = ScoreNormaliser().fit(base[rows])
            Z = normaliser.transform(m.scores[:, rows, :].mean(axis=1))  # (K, V)
            assert result.methods[m.name].hv_samples[b] == pytest.approx(pareto.hypervolume(Z, result.ref), abs=1e-12)
            want = (pareto.mip(Z, P) if m.conditioned_on is None else pareto.mip_conditioned(P, m.conditioned_on, Z))
            assert result.methods[m.name].mip_samples[b] == pytest.approx(want, abs=1e-12)
    # the point estimates are the metrics on the prompts as they are, with the reference shared by both methods
    Zs = {m.name: ScoreNormaliser().fit(base).transform(m.scores.mean(axis=1)) for m in methods}
    every = np.concatenate([np.zeros((1, 2)), *Zs.values()])
    np.testing.assert_allclose(result.ref, every.min(axis=0))
    for m in methods:
        assert result.methods[m.name].hv.estimate == pytest.approx(pareto.hypervolume(Zs[m.name], result.ref))
    diff = result.pairs[("grid", "policy")]
    d = result.methods["grid"].hv_samples - result.methods["policy"].hv_samples
    assert diff.hv_diff.low == pytest.approx(np.percentile(d, 2.5)) and diff.p_a_better == pytest.approx(
        np.mean(d > 0) + 0.5 * np.mean(d == 0))


def test_intervals_contain_estimates_and_a_method_against_itself_differs_by_zero():
    rng = np.random.default_rng(1)
    base, (grid, _) = make_methods(rng, n_prompts=30)
    twin = MethodScores("twin", grid.scores.copy())
    result = bootstrap_compare([grid, twin], base, n_resamples=1000, seed=0)
    for metrics in result.methods.values():
        assert metrics.hv.low <= metrics.hv.estimate <= metrics.hv.high
        assert metrics.mip.low <= metrics.mip.estimate <= metrics.mip.high
    pair = result.pairs[("grid", "twin")]
    assert pair.hv_diff.as_list() == [0.0, 0.0] and pair.p_a_better == 0.5
    again = bootstrap_compare([grid, twin], base, n_resamples=1000, seed=0)  # seeded: identical
    np.testing.assert_array_equal(again.methods["grid"].hv_samples, result.methods["grid"].hv_samples)


# ---- BCa intervals (issue 27 item 4) ----

def bca_by_hand(samples: np.ndarray, jackknife: np.ndarray, estimate: float, level: float = 0.95) -> list[float]:
    """Efron & Tibshirani (1993) eq. 14.14–14.15: z0 from the share of resamples below the estimate (ties — equal to
    1e-9 relative, as a resample of the same prompts in another order is — count half), the acceleration from the
    jackknife values, then the adjusted percentiles of the resamples."""
    tie = np.abs(samples - estimate) <= 1e-9 * abs(estimate)
    z0 = norm.ppf((np.sum((samples < estimate) & ~tie) + np.sum((samples < estimate) | tie)) / (2 * len(samples)))
    d = jackknife.mean() - jackknife
    a = np.sum(d ** 3) / (6 * np.sum(d ** 2) ** 1.5)
    z = norm.ppf([(1 - level) / 2, (1 + level) / 2])
    alphas = norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    return list(np.percentile(samples, 100 * alphas))


def test_bca_intervals_equal_efrons_formulas_over_a_loop_of_resamples_and_left_out_prompts():
    rng = np.random.default_rng(5)
    base, methods = make_methods(rng, n_prompts=20)
    result = bootstrap_compare(methods, base, n_resamples=1000, seed=2)
    P = pareto.preference_vectors(2)
    idx = resample_indices(len(base), 1000, seed=2)

    def metrics(m, rows):  # one resample's HV and MIP with the store's normaliser, pymoo and pareto's MIP
        Z = ScoreNormaliser().fit(base[rows]).transform(m.scores[:, rows, :].mean(axis=1))
        mip = pareto.mip(Z, P) if m.conditioned_on is None else pareto.mip_conditioned(P, m.conditioned_on, Z)
        return pareto.hypervolume(Z, result.ref), mip

    for m in methods:
        boot = np.array([metrics(m, rows) for rows in idx])  # (B, 2)
        jack = np.array([metrics(m, np.delete(np.arange(len(base)), j)) for j in range(len(base))])  # (P, 2)
        for k, iv in enumerate([result.methods[m.name].hv, result.methods[m.name].mip]):
            assert iv.method == "BCa"
            assert [iv.low, iv.high] == pytest.approx(bca_by_hand(boot[:, k], jack[:, k], iv.estimate), rel=1e-9)
    # differences keep the percentile interval over the same resamples
    assert result.pairs[("grid", "policy")].hv_diff.method == "percentile"


def test_a_method_below_the_reference_gets_a_defined_zero_interval_without_warnings():
    rng = np.random.default_rng(2)
    base, (grid, _) = make_methods(rng, n_prompts=15)
    low = MethodScores("low", grid.scores - 100.0)  # every candidate far below the reference: HV 0 in every resample
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = bootstrap_compare([grid, low], base, ref=np.array([-1.0, -1.0]), n_resamples=1000)
    hv = result.methods["low"].hv
    assert (hv.estimate, hv.low, hv.high, hv.method) == (0.0, 0.0, 0.0, "percentile")
    assert result.methods["grid"].hv.method == "BCa" and np.isfinite(result.methods["low"].mip.low)


def test_undefined_bca_falls_back_to_the_percentile_interval():
    n = 12
    idx = resample_indices(n, 1000, seed=0)

    def repeats(rows: np.ndarray) -> np.ndarray:
        """(2, N): prompts drawn more than once, and a constant; 0 on the prompts as they are, > 0 in resamples."""
        r = np.asarray(rows)
        dup = np.array([len(x) - len(np.unique(x)) for x in r], dtype=float)
        return np.stack([dup, np.full(len(r), 3.0)])

    samples = repeats(idx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outside, constant = bca_intervals(repeats, n, samples, [0.0, 3.0])  # estimate below every resample
    assert samples[0].min() > 0
    assert outside.method == "percentile" and [outside.low, outside.high] == pytest.approx(
        np.percentile(samples[0], [2.5, 97.5]))
    assert (constant.low, constant.high, constant.method) == (3.0, 3.0, "percentile")
    partly_nan = samples.copy()
    partly_nan[0, :10] = np.nan  # a few undefined resamples: percentile over the rest, as before
    iv = bca_intervals(repeats, n, partly_nan, [0.0, 3.0])[0]
    assert iv.method == "percentile" and iv.low == pytest.approx(np.percentile(samples[0, 10:], 2.5))
    nothing = bca_intervals(repeats, n, np.full((2, 5), np.nan), [np.nan, np.nan])
    assert all(np.isnan(i.low) and np.isnan(i.high) for i in nothing)


def test_the_verdict_of_a_paired_difference_is_one_rule_everywhere():
    """Within noise when the interval holds 0; at its edge when a bound excludes 0 by less than the last digit shown
    (4 decimals: it reads ±0.0000); otherwise the method the interval favours, whichever order the pair is in."""
    from mva_core.bootstrap import SHOWN_ZERO, PairDifference

    def verdict(lo: float, hi: float) -> str:
        return PairDifference(Interval((lo + hi) / 2, lo, hi), 0.5).verdict("a", "b")

    assert verdict(-0.01, 0.02) == "within noise: the interval holds 0"
    assert verdict(0.0, 0.02) == "within noise: the interval holds 0"  # a bound at 0 holds it
    assert verdict(0.003, 0.02) == "a is ahead"
    assert verdict(-0.02, -0.003) == "b is ahead"
    assert verdict(SHOWN_ZERO / 2, 0.02).startswith("at the edge of noise: a ahead")
    assert verdict(-0.125, -0.00001).startswith("at the edge of noise: b ahead")  # demo: mva-alpha50 − mva
    assert f"{-0.00001:+.4f}" == "-0.0000" and f"{SHOWN_ZERO * 1.01:+.4f}" == "+0.0001"  # why SHOWN_ZERO is 5e-5
    assert verdict(SHOWN_ZERO * 1.01, 0.02) == "a is ahead"
    # the flipped pair (b − a) reaches the same verdict
    result = BootstrapComparison(np.zeros(2), {}, {("a", "b"): PairDifference(Interval(0.01, 0.004, 0.02), 0.9)},
                                 1000, 0)
    assert result.difference("b", "a").verdict("b", "a") == result.difference("a", "b").verdict("a", "b")
