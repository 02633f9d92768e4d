"""The surrogate (issue 15 item 1): on a smooth synthetic trade-off it interpolates within a stated bound, its
uncertainty is small at a fitted point and larger far from the data, and its closed-form leave-one-out error
equals the brute-force one (each point left out, the GP refitted at the same hyperparameters)."""

from __future__ import annotations

import numpy as np
import pytest

from mva_core.surrogate import SurrogateError, fit_surrogate, loo_residuals


def truth(W: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(2 * W[:, 0]) + 0.5 * W[:, 1], 0.8 * W[:, 1] - W[:, 0] ** 2], axis=1)


def grid(step: float) -> np.ndarray:
    ticks = np.arange(0, 1 + 1e-9, step)
    return np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 2)


def test_interpolates_a_smooth_trade_off():
    W = grid(0.25)  # 25 points, as a step-0.25 sweep stores
    s = fit_surrogate(W, truth(W), ["a", "b"])
    probe = np.random.default_rng(0).uniform(0, 1, size=(200, 2))
    mean, std = s.predict(probe)
    assert np.abs(mean - truth(probe)).max() < 0.05  # a 5x5 grid pins a smooth function to 0.05
    assert s.loo_mae.max() < 0.05
    _, at_data = s.predict(W[:1])
    _, far = s.predict([[3.0, 3.0]])  # outside the weights it was fitted on
    assert (far > 5 * at_data).all()


def test_closed_form_loo_equals_refitting():
    from sklearn.gaussian_process import GaussianProcessRegressor

    rng = np.random.default_rng(1)
    W = rng.uniform(0, 1, size=(12, 2))
    z = truth(W) + rng.normal(0, 0.05, size=(12, 2))  # a mean over prompts is noisy
    s = fit_surrogate(W, z, ["a", "b"])
    for j, model in enumerate(s.models):
        y = (z[:, j] - model._y_train_mean) / model._y_train_std
        brute = []
        for i in range(len(W)):
            rest = np.arange(len(W)) != i
            gp = GaussianProcessRegressor(model.kernel_, optimizer=None, alpha=model.alpha).fit(W[rest], y[rest])
            brute.append((y[i] - gp.predict(W[i:i + 1])[0]) * model._y_train_std)
        np.testing.assert_allclose(loo_residuals(model), brute, rtol=1e-6, atol=1e-9)
        assert s.loo_mae[j] == pytest.approx(np.mean(np.abs(brute)))


def test_too_few_points_are_refused():
    with pytest.raises(SurrogateError, match="at least 4"):
        fit_surrogate(grid(1.0)[:3], truth(grid(1.0)[:3]), ["a", "b"])
