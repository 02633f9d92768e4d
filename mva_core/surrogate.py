"""A surrogate of each value's z-score as a function of the weights, fitted on a method's stored candidates, so a
slider can show where a point will land before anything is generated (issue 15).

One Gaussian process per value (scikit-learn's `GaussianProcessRegressor`: constant × RBF with one length scale per
weight, plus a white-noise term for the prompt sampling noise of a mean reward; hyperparameters by maximum marginal
likelihood). Its held-out error is the exact leave-one-out error of a GP with those hyperparameters, in closed form
(Rasmussen & Williams 2006, Eq. 5.12): r_i = [K⁻¹y]_i / [K⁻¹]_ii, so it costs one inverse, not K refits.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import MVAError

MIN_CANDIDATES = 4  # fewer points than this say nothing about the shape of the trade-off


class SurrogateError(MVAError):
    """Too few candidates to fit a surrogate, or weights of the wrong length."""


@dataclass
class Surrogate:
    value_names: tuple[str, ...]
    models: list  # one fitted GaussianProcessRegressor per value
    n_weights: int
    loo_mae: np.ndarray  # (V,) mean absolute leave-one-out error, z units
    n_candidates: int

    def predict(self, weights: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of every value's z-score at each row of `weights` (M, n): two (M, V) arrays."""
        W = np.atleast_2d(np.asarray(weights, dtype=float))
        if W.shape[1] != self.n_weights:
            raise SurrogateError(f"weights have {W.shape[1]} entries; the surrogate was fitted on {self.n_weights}")
        out = [m.predict(W, return_std=True) for m in self.models]
        return np.stack([mu for mu, _ in out], axis=1), np.stack([sd for _, sd in out], axis=1)

    def noise_sd(self) -> np.ndarray:
        """(V,) sd of each value's fitted white-noise term in z units: the scatter of one evaluation's mean reward
        around the smooth trade-off (prompt sampling, decoding); `predict`'s sd includes it."""
        out = []
        for m in self.models:
            white = [k.noise_level for k in (getattr(m.kernel_, "k1", None), getattr(m.kernel_, "k2", None))
                     if k is not None and hasattr(k, "noise_level")]
            out.append(np.sqrt(white[0] if white else 0.0) * float(np.atleast_1d(getattr(m, "_y_train_std", 1.0))[0]))
        return np.array(out)

    def latent_sd(self, sd: np.ndarray) -> np.ndarray:
        """The sd of the noise-free value from `predict`'s sd (M, V): sqrt(sd² − noise_sd²), at least 0."""
        return np.sqrt(np.clip(np.asarray(sd) ** 2 - self.noise_sd() ** 2, 0.0, None))


def loo_residuals(model: object) -> np.ndarray:
    """Exact leave-one-out residuals y_i − ŷ_{−i} of a fitted GaussianProcessRegressor at its hyperparameters."""
    X, y = model.X_train_, model.y_train_  # y_train_ is normalised when normalize_y=True
    K = model.kernel_(X)  # (K, K), the white-noise term on the diagonal
    K[np.diag_indices_from(K)] += model.alpha
    Kinv = np.linalg.inv(K)
    residual = (Kinv @ y) / np.diag(Kinv)  # (K,) in normalised units
    return residual * getattr(model, "_y_train_std", 1.0)


def fit_surrogate(weights: np.ndarray, z: np.ndarray, value_names: Sequence[str], seed: int = 0) -> Surrogate:
    """Fit one GP per value on the finite rows of `weights` (K, n) → `z` (K, V)."""
    from sklearn.gaussian_process import GaussianProcessRegressor  # heavy: imported when a surrogate is fitted
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    W, Z = np.asarray(weights, dtype=float), np.asarray(z, dtype=float)
    keep = np.isfinite(W).all(axis=1) & np.isfinite(Z).all(axis=1)
    W, Z = W[keep], Z[keep]
    if len(W) < MIN_CANDIDATES:
        raise SurrogateError(f"{len(W)} finite candidates; a surrogate needs at least {MIN_CANDIDATES} "
                             "(evaluate a few points or run a coarse sweep)")
    n = W.shape[1]
    models, errors = [], []
    for j in range(Z.shape[1]):
        kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.full(n, 0.5), (1e-2, 1e2))
                  + WhiteKernel(1e-2, (1e-6, 1e1)))
        model = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=seed)
        with warnings.catch_warnings():  # a length scale at its bound (a value flat in one weight) is fine here
            warnings.simplefilter("ignore", ConvergenceWarning)
            models.append(model.fit(W, Z[:, j]))
        errors.append(float(np.mean(np.abs(loo_residuals(model)))))
    return Surrogate(tuple(value_names), models, n, np.array(errors), len(W))
