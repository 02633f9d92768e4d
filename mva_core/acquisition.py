"""What the adaptive search expects to gain from a point, and how much of a hypervolume is noise (issue 29 item 5).

Hypervolume improvement of a point p over a front F (objectives maximised, reference r):

    HVI(p | F) = Π_j (p_j − r_j)⁺ − HV({ min(p, f) : f ∈ F })                                  (A1)

(the box p dominates, less its part that F already dominates: the union of the boxes [r, min(p, f)]). Its
expectation under the surrogate's predictive distribution of p's z-scores (one Gaussian per value, the observation's
sd: the GP's white-noise term included, since an evaluation returns a noisy mean reward) is estimated by Monte Carlo
with common random numbers across points:

    EHVI(p) = (1/S) Σ_s HVI(μ(p) + σ(p) ⊙ ε_s | F),   ε_s ~ N(0, I)                              (A2)

The hypervolume of many small sets at once (`hypervolumes`) is exact: vectorised for 2 values (the sweep of
`bootstrap.hypervolume_2d`), by slices along the last value for 3 (each slice a 2-D hypervolume), pymoo beyond.

The noise of a front's hypervolume is its standard deviation under resampling of what each z-score rests on: the
prompts (`hv_bootstrap_sd`, the same resamples as Compare's intervals, `bootstrap.resample_indices`), or, for an
objective without per-prompt scores, Gaussian draws of each z-score with a given sd (`hv_parametric_sd`).
"""

from __future__ import annotations

import numpy as np

from . import pareto
from .bootstrap import hypervolume_2d, resample_indices, z_means


def _hypervolumes_3d(F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(...,) hypervolume of each set in `F` (..., K, 3): slices between consecutive third-value levels, each the
    2-D hypervolume of the points at or above it."""
    gain = np.where(np.isfinite(F).all(axis=-1, keepdims=True), F - ref, 0.0)
    gain = np.where((gain > 0).all(axis=-1, keepdims=True), gain, 0.0)  # a point not above r counts nothing
    order = np.argsort(-gain[..., 2], axis=-1)
    g = np.take_along_axis(gain, order[..., None], axis=-2)  # (..., K, 3) by the third gain, largest first
    K = g.shape[-2]
    c = g[..., 2]
    depth = c - np.concatenate([c[..., 1:], np.zeros_like(c[..., :1])], axis=-1)  # c_k − c_{k+1}
    upto = np.tril(np.ones((K, K), dtype=bool))  # slice k holds points 0..k
    xy = np.where(upto[..., None], g[..., None, :, :2], 0.0)  # (..., K, K, 2)
    area = hypervolume_2d(xy, np.zeros(2))
    return (area * depth).sum(axis=-1)


def hypervolumes(F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(...,) hypervolume of each set in `F` (..., K, V) w.r.t. `ref` (V,), objectives maximised; a row with a
    non-finite value or not above `ref` in every value counts nothing (pymoo's HV agrees)."""
    F, ref = np.asarray(F, dtype=float), np.asarray(ref, dtype=float)
    if F.shape[-2] == 0:
        return np.zeros(F.shape[:-2])
    if F.shape[-1] == 2:
        return hypervolume_2d(F, ref)
    if F.shape[-1] == 3:
        return _hypervolumes_3d(F, ref)
    flat = F.reshape(-1, *F.shape[-2:])
    return np.array([pareto.hypervolume(f[pareto.finite_rows(f)], ref) if pareto.finite_rows(f).any() else 0.0
                     for f in flat]).reshape(F.shape[:-2])


def improvement(points: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(...,) HVI (Eq. A1) of each point of `points` (..., V) over the set `front` (K, V)."""
    points, front = np.asarray(points, dtype=float), np.asarray(front, dtype=float)
    box = np.clip(points - ref, 0.0, None).prod(axis=-1)
    if not len(front):
        return box
    clipped = np.minimum(points[..., None, :], front)  # (..., K, V)
    return box - hypervolumes(clipped, ref)


def expected_improvement(mean: np.ndarray, sd: np.ndarray, front: np.ndarray, ref: np.ndarray,
                         eps: np.ndarray) -> np.ndarray:
    """(P,) Monte-Carlo EHVI (Eq. A2) of P points with predictive `mean`, `sd` (P, V) over `front`, with the
    standard normal draws `eps` (S, V) shared by every point (common random numbers: the ranking is less noisy)."""
    draws = mean[:, None, :] + sd[:, None, :] * eps[None, :, :]  # (P, S, V)
    return improvement(draws, front, ref).mean(axis=1)


def hv_parametric_sd(Z: np.ndarray, sd: np.ndarray, ref: np.ndarray, n_resamples: int = 200,
                     seed: int = 0) -> float:
    """Sd of the hypervolume of the points `Z` (K, V) when each z-score is redrawn N(z, sd²) (`sd` (V,) or (K, V)):
    the noise of a hypervolume whose points carry no per-prompt scores (a synthetic or emulated objective)."""
    rng = np.random.default_rng(seed)
    draws = Z[None] + np.broadcast_to(sd, Z.shape)[None] * rng.standard_normal((n_resamples, *Z.shape))
    return float(hypervolumes(draws, ref).std())


def hv_bootstrap_sd(scores: np.ndarray, base: np.ndarray, ref: np.ndarray, n_resamples: int = 200,
                    seed: int = 0) -> float:
    """Sd of the hypervolume of candidates with per-prompt rewards `scores` (K, P, V) under prompt resampling
    (`bootstrap.z_means` on `resample_indices`: each resample z-scores every candidate against the base model's
    rewards `base` (P, V) on the same prompts), w.r.t. the fixed reference `ref`."""
    idx = resample_indices(base.shape[0], n_resamples, seed)
    return float(hypervolumes(z_means(np.asarray(scores, float), np.asarray(base, float), idx), ref).std())
