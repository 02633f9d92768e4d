"""Coverage of the bootstrap intervals over prompts (issue 27 item 4) on a synthetic problem whose truth is known.

The problem is the shipped demo's comparison with the truth put in by hand: two methods on a 5 × 5 weight grid,
`mva` and `mva-no-hsic`, whose TRUE z-scores are the demo's measured point estimates (data/README.md; the `mva`
front is seven nearly tied candidates, the case where the hypervolume — a max over noisy candidates — is biased
up). Per prompt, every candidate's reward is its true z plus noise with the demo's correlation structure
(measured on data/demo: per-prompt residuals ≈ 0.75 correlated between grid neighbours, ≈ 0.4 at the far corner,
−0.3 between the two values): a Gaussian process over the weights, corr = c + (1 − c)·exp(−|Δw|₁ / ℓ) with c = 0.3,
ℓ = 0.45, times the values' correlation. The base model is the grid's w = (0, 0) point (as in the demo, where
that candidate IS the base), its rewards N(0, 1) per value, so at infinitely many prompts z = the true means
exactly and the true HV (fixed reference, the demo's) and MIP are computed from them directly.

Each replication draws P = 40 prompts (the demo's) and runs `bootstrap_compare` as the product does: B = 1000
resamples, seeded. Measured over 300 replications (this test's seeds), share of 95 % intervals that hold the truth:

| interval | `mva` HV | `mva-no-hsic` HV | `mva` MIP | `mva-no-hsic` MIP | paired ΔHV | paired ΔMIP |
|---|---|---|---|---|---|---|
| BCa (per method: the product's) | 0.950 | 0.940 | 0.857 | 0.917 | 0.940 | not measured |
| percentile (differences: the product's) | 0.857 | 0.920 | 0.600 | 0.800 | 0.923 | 0.940 |

So a method's own metrics get BCa and paired differences keep the percentile interval (≥ 90 % there; BCa would
give 0.94). BCa does not repair every max-type bias: MIP of the nearly tied `mva` front is still under-covered
(0.86; percentile 0.60), which the README says. One per-method interval of the 1200 fell back to percentile (BCa undefined). The test
runs the product's B = 1000 (≈ 20 s).
"""

from __future__ import annotations

import pytest
import numpy as np

from mva_core import pareto
from mva_core.bootstrap import MethodScores, bca_intervals, bootstrap_compare, method_statistics

# the demo's measured z-scores (data/demo, 40 prompts), grid order w = (0, 0), (0, .25) … (1, 1): the true means
MVA = np.array([[0.0, 0.0], [-0.122, 0.038], [-0.095, 0.039], [-0.116, 0.06], [-0.059, 0.039], [0.045, -0.153],
                [-0.146, -0.091], [-0.117, -0.124], [0.036, -0.058], [0.171, -0.061], [0.086, -0.159],
                [0.097, -0.117], [0.097, -0.203], [0.037, -0.151], [0.105, -0.127], [0.24, -0.206], [0.281, -0.188],
                [0.279, -0.112], [0.256, -0.051], [0.35, -0.076], [0.417, -0.168], [0.363, -0.17], [0.3, -0.055],
                [0.256, -0.039], [0.281, -0.038]])
NO_HSIC = np.array([[0.0, 0.0], [-0.107, 0.062], [-0.022, 0.271], [-0.129, 0.354], [-0.087, 0.506], [0.045, -0.153],
                    [0.013, -0.127], [-0.032, 0.03], [-0.126, 0.12], [-0.108, 0.469], [0.086, -0.159],
                    [0.051, -0.22], [0.213, 0.002], [0.172, 0.244], [0.041, 0.577], [0.24, -0.206], [0.252, -0.01],
                    [0.208, 0.188], [0.246, 0.38], [0.336, 0.509], [0.417, -0.168], [0.343, -0.044], [0.45, 0.147],
                    [0.394, 0.273], [0.431, 0.319]])
REF = np.array([-0.146, -0.22])  # the demo's shared reference point
WEIGHTS = np.array([[a, b] for a in np.linspace(0, 1, 5) for b in np.linspace(0, 1, 5)])  # (25, 2), (0, 0) first
N_PROMPTS, N_RESAMPLES, N_REPLICATIONS = 40, 1000, 300


def noise_factors(c: float = 0.3, ell: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """The grid's Gaussian process given its value at w = (0, 0) (the base): conditional mean weights k(w, 0) (24,)
    and a factor L (24, 24) of the conditional covariance K_ww − k_w0 k_0w."""
    K = c + (1 - c) * np.exp(-np.abs(WEIGHTS[:, None] - WEIGHTS[None]).sum(-1) / ell)  # (25, 25), unit variance
    k0, cond = K[1:, 0], K[1:, 1:] - np.outer(K[1:, 0], K[0, 1:])
    return k0, np.linalg.cholesky(cond + 1e-12 * np.eye(len(cond)))


def draw(rng: np.random.Generator, k0: np.ndarray, L: np.ndarray, value_corr: float = -0.3):
    """Per-prompt rewards of the base (P, 2) and of both methods (25, P, 2) each; each method's noise is its own
    draw of the grid's process through the base's value at w = (0, 0)."""
    mix = np.array([[1.0, value_corr], [0.0, np.sqrt(1 - value_corr ** 2)]])  # columns: value 0, value 1
    base = rng.normal(size=(N_PROMPTS, 2)) @ mix  # (P, V), N(0, 1) per value
    methods = []
    for mu in (MVA, NO_HSIC):
        g = rng.normal(size=(len(L), N_PROMPTS, 2)) @ mix  # (24, P, V)
        rest = k0[:, None, None] * base[None] + np.einsum("kl,lpv->kpv", L, g)  # (24, P, V)
        methods.append(mu[:, None, :] + np.concatenate([base[None], rest]))  # (25, P, V): (0, 0) is the base
    return base, methods


@pytest.mark.slow
def test_bca_covers_the_true_hypervolume_and_percentile_covers_paired_differences():
    P = pareto.preference_vectors(2)
    truth = {"mva": (pareto.hypervolume(MVA, REF), pareto.mip(MVA, P)),
             "mva-no-hsic": (pareto.hypervolume(NO_HSIC, REF), pareto.mip(NO_HSIC, P))}
    k0, L = noise_factors()
    rng = np.random.default_rng(2027)
    hits: dict[str, list[bool]] = {}
    fallbacks = 0  # per-method intervals where BCa was undefined

    def hit(key: str, low: float, high: float, true: float) -> None:
        hits.setdefault(key, []).append(bool(low <= true <= high))

    for r in range(N_REPLICATIONS):
        base, (mva, no_hsic) = draw(rng, k0, L)
        methods = [MethodScores("mva", mva), MethodScores("mva-no-hsic", no_hsic)]
        result = bootstrap_compare(methods, base, REF, n_resamples=N_RESAMPLES, seed=r)
        for name, (hv, mip) in truth.items():
            m = result.methods[name]
            hit(f"{name} hv BCa", m.hv.low, m.hv.high, hv)
            hit(f"{name} mip BCa", m.mip.low, m.mip.high, mip)
            hit(f"{name} hv percentile", *np.percentile(m.hv_samples, [2.5, 97.5]), hv)
            hit(f"{name} mip percentile", *np.percentile(m.mip_samples, [2.5, 97.5]), mip)
        d = result.pairs[("mva", "mva-no-hsic")].hv_diff
        hit("hv diff percentile", d.low, d.high, truth["mva"][0] - truth["mva-no-hsic"][0])
        mip_diff = result.methods["mva"].mip_samples - result.methods["mva-no-hsic"].mip_samples
        hit("mip diff percentile", *np.percentile(mip_diff, [2.5, 97.5]), truth["mva"][1] - truth["mva-no-hsic"][1])
        # what BCa would give the HV difference (measured for the docstring, not used by the product)
        a, b = (method_statistics(m, base, REF, P) for m in methods)
        hv_diff = result.methods["mva"].hv_samples - result.methods["mva-no-hsic"].hv_samples
        iv = bca_intervals(lambda idx: a(idx)[:1] - b(idx)[:1], N_PROMPTS, hv_diff[None], [d.estimate])[0]
        hit("hv diff BCa", iv.low, iv.high, truth["mva"][0] - truth["mva-no-hsic"][0])
        fallbacks += sum(m.hv.method != "BCa" or m.mip.method != "BCa" for m in result.methods.values())
    coverage = {k: float(np.mean(v)) for k, v in hits.items()}
    print(coverage, "fallbacks", fallbacks)  # the docstring's table
    for name in truth:
        assert coverage[f"{name} hv BCa"] >= 0.90, coverage
        assert coverage[f"{name} hv BCa"] > coverage[f"{name} hv percentile"], coverage
        assert coverage[f"{name} mip BCa"] > coverage[f"{name} mip percentile"], coverage
    assert coverage["mva hv percentile"] < 0.90  # the bias BCa is there for (issue 27 item 4)
    assert coverage["hv diff percentile"] >= 0.90 and coverage["mip diff percentile"] >= 0.90, coverage
