"""Bootstrap intervals over prompts (issue 16 item 1), checked against a hand-worked resample, against loops over
the resamples that use pymoo's hypervolume, the store's z-normaliser and pareto's MIP, and against known
properties (a method compared with itself differs by exactly 0)."""

from __future__ import annotations

import numpy as np
import pytest

from mva_core import pareto
from mva_core.bootstrap import (MethodScores, bootstrap_compare, hypervolume_2d, resample_indices, z_means)
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
