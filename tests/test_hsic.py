"""HSIC (MVA Eq.6) against a numpy version written here with explicit loops, and against known facts:
independent samples give ≈ 0 (shrinking with m), Y = f(X) gives clearly more, symmetry, invariance to a
shared row permutation; the median rule for an even pair count; gradients (gradcheck)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mva_core.hsic import hsic, layer_kernels, layer_samples, median_heuristic, vector_hsic
from mva_core.vectors import LoraLayer, VectorError


# ---- Independent reference: numpy, double loops ----

def np_median_distance(Z: np.ndarray) -> float:
    d = sorted(float(np.sqrt(np.sum((Z[a] - Z[b]) ** 2))) for a in range(len(Z)) for b in range(a + 1, len(Z)))
    n = len(d)
    med = d[n // 2] if n % 2 else (d[n // 2 - 1] + d[n // 2]) / 2
    return med if med > 0 else 1.0


def np_kernel(Z: np.ndarray, kernel: str, sigma: float | None) -> np.ndarray:
    m = len(Z)
    s = np_median_distance(Z) if sigma is None else sigma
    K = np.zeros((m, m))
    for a in range(m):
        for b in range(m):
            if kernel == "linear":
                K[a, b] = float(np.dot(Z[a], Z[b]))
            else:
                K[a, b] = np.exp(-np.sum((Z[a] - Z[b]) ** 2) / (2 * s * s))
    return K


def np_hsic(X: np.ndarray, Y: np.ndarray, kernel: str = "gaussian", sigma: float | None = None) -> float:
    m = len(X)
    H = np.eye(m) - np.ones((m, m)) / m
    K, L = np_kernel(X, kernel, sigma), np_kernel(Y, kernel, sigma)
    return float(np.trace(K @ H @ L @ H)) / (m - 1) ** 2


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---- Against numpy ----

@pytest.mark.parametrize("m, dx, dy", [(4, 7, 7), (5, 3, 9), (12, 16, 5), (30, 8, 8)])
@pytest.mark.parametrize("kernel, sigma", [("gaussian", None), ("gaussian", 1.7), ("linear", None)])
def test_matches_numpy_loops(m, dx, dy, kernel, sigma):
    X, Y = rand(m, dx, seed=m), rand(m, dy, seed=100 + m)
    Y = Y + 0.5 * X[:, :1]  # some dependence, so the value is not ≈ 0
    want = np_hsic(X.numpy(), Y.numpy(), kernel, sigma)
    got = hsic(X, Y, kernel=kernel, sigma=sigma)
    assert got.dtype == torch.float64 and got.dim() == 0
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    got32 = hsic(X.float(), Y.float(), kernel=kernel, sigma=sigma)
    assert got32.item() == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_sigma_is_per_matrix_under_the_median_rule():
    """X and Y on very different scales: each gets its own σ (one shared σ would give another value)."""
    X, Y = rand(10, 4, seed=1), 100.0 * rand(10, 4, seed=2) + rand(10, 4, seed=1)
    assert hsic(X, Y).item() == pytest.approx(np_hsic(X.numpy(), Y.numpy()), rel=1e-9)
    shared = np_median_distance(X.numpy())
    assert hsic(X, Y).item() != pytest.approx(np_hsic(X.numpy(), Y.numpy(), sigma=shared), rel=1e-3)


def test_median_even_count_is_mean_of_middle_values():
    # m = 4 rows -> 6 pairs (even): the median is the mean of the 3rd and 4th smallest distances.
    X = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)  # distances 1,2,3,4,6,7
    assert median_heuristic(X) == pytest.approx(3.5)
    Z = rand(8, 5, seed=3)  # 28 pairs, even
    dists = [np.linalg.norm(Z[a].numpy() - Z[b].numpy()) for a in range(8) for b in range(a + 1, 8)]
    assert median_heuristic(Z) == pytest.approx(float(np.median(dists)), rel=1e-12)
    assert torch.median(torch.tensor(dists)).item() < float(np.median(dists))  # why torch.median is not used
    odd = rand(3, 2, seed=4)  # 3 pairs, odd: the middle one
    assert median_heuristic(odd) == pytest.approx(float(np.median(torch.pdist(odd).numpy())), rel=1e-12)


def test_median_zero_gives_sigma_one_and_hsic_zero():
    X = torch.ones(5, 3, dtype=torch.float64)  # all rows equal: every distance 0
    assert median_heuristic(X) == 1.0
    assert hsic(X, rand(5, 3)).item() == pytest.approx(0.0, abs=1e-15)


# ---- Known facts ----

def test_independent_near_zero_and_shrinks_with_m():
    def mean_hsic(m):
        return np.mean([hsic(rand(m, 3, seed=s), rand(m, 3, seed=1000 + s)).item() for s in range(8)])

    small, large = mean_hsic(16), mean_hsic(256)
    # Under independence E[HSIC] = O(1/m): 16x more samples should shrink it well past 4x.
    assert large < small / 4, (small, large)
    assert large < 0.01
    X = rand(256, 3, seed=7)
    dependent = hsic(X, torch.sin(2 * X) + X ** 2).item()
    assert dependent > 5 * large, (dependent, large)  # measured 14x
    assert hsic(X, X).item() > 10 * large


def test_symmetric_and_row_permutation_invariant():
    X, Y = rand(20, 6, seed=11), rand(20, 4, seed=12)
    Y = Y + torch.tanh(X[:, :4])
    h = hsic(X, Y).item()
    assert hsic(Y, X).item() == pytest.approx(h, rel=1e-12)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    assert hsic(X[perm], Y[perm]).item() == pytest.approx(h, rel=1e-12)
    # Permuting only one side breaks the pairing, and with it the dependence.
    assert hsic(X[perm], Y).item() < h
    assert hsic(X, Y, kernel="linear").item() == pytest.approx(hsic(Y, X, kernel="linear").item(), rel=1e-12)


def test_shape_assertions():
    with pytest.raises(AssertionError, match="paired rows"):
        hsic(rand(4, 3), rand(5, 3))
    with pytest.raises(AssertionError, match="at least 2"):
        hsic(rand(1, 3), rand(1, 3))
    with pytest.raises(AssertionError, match="kernel"):
        hsic(rand(4, 3), rand(4, 3), kernel="rbf")


# ---- Gradients ----

@pytest.mark.parametrize("kernel, sigma", [("gaussian", 1.3), ("linear", None)])
def test_gradcheck(kernel, sigma):
    X = rand(6, 4, seed=21).requires_grad_()
    Y = rand(6, 3, seed=22).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: hsic(x, y, kernel=kernel, sigma=sigma), (X, Y))


def test_gradient_finite_where_rows_coincide():
    """ΔW = 0 before the first update: every distance is 0; the gradient must be 0, not NaN (cdist's would be)."""
    X = torch.zeros(5, 4, dtype=torch.float64, requires_grad=True)
    hsic(X, rand(5, 4, seed=3)).backward()
    assert torch.isfinite(X.grad).all() and X.grad.abs().max() == 0


# ---- Samples per layer and the sum over layers ----

def lora(r, d_out, d_in, seed, scaling=2.0, grad=False):
    A, B = rand(r, d_in, seed=seed), rand(d_out, r, seed=seed + 1)
    return LoraLayer(A.requires_grad_(grad), B.requires_grad_(grad), scaling)


def test_layer_samples_modes():
    li, lj = lora(4, 6, 5, seed=1, grad=True), lora(4, 6, 5, seed=3, scaling=0.5)
    X, Y = layer_samples(li, lj, "lora_A")
    assert torch.equal(X, li.A) and torch.equal(Y, lj.A)
    X, Y = layer_samples(li, lj, "delta")
    assert X.shape == (6, 5)
    np.testing.assert_allclose(X.detach().numpy(), 2.0 * li.B.detach().numpy() @ li.A.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(Y.numpy(), 0.5 * lj.B.numpy() @ lj.A.numpy(), rtol=1e-12)
    hsic(X, Y).backward()  # gradient reaches both factors of the trainable layer
    assert li.A.grad.abs().sum() > 0 and li.B.grad.abs().sum() > 0
    with pytest.raises(VectorError, match="ranks differ.*mode='delta'"):
        layer_samples(lora(4, 6, 5, seed=1), lora(2, 6, 5, seed=3), "lora_A")
    assert layer_samples(lora(4, 6, 5, seed=1), lora(2, 6, 5, seed=3), "delta")[1].shape == (6, 5)
    with pytest.raises(VectorError, match="different layers"):
        layer_samples(lora(4, 6, 5, seed=1), lora(4, 7, 5, seed=3), "delta")


@pytest.mark.parametrize("mode", ["lora_A", "delta"])
def test_vector_hsic_sums_over_shared_layers(mode):
    theta_i = {"q": lora(3, 6, 5, seed=1), "v": lora(3, 4, 5, seed=5), "only_i": lora(3, 4, 5, seed=9)}
    theta_j = {"q": lora(3, 6, 5, seed=13), "v": lora(3, 4, 5, seed=17), "only_j": lora(3, 4, 5, seed=19)}

    def samples(layer):
        A, B = layer.A.numpy(), layer.B.numpy()
        return A if mode == "lora_A" else layer.scaling * B @ A

    want = sum(np_hsic(samples(theta_i[k]), samples(theta_j[k])) for k in ("q", "v"))
    assert vector_hsic(theta_i, theta_j, mode).item() == pytest.approx(want, rel=1e-9)
    # θ_j's kernel matrices computed once (as training does for a frozen vector): the same value.
    cached = vector_hsic(theta_i, theta_j, mode, kernels_j=layer_kernels(theta_j, mode))
    assert cached.item() == pytest.approx(want, rel=1e-9)
    with pytest.raises(VectorError, match="share no target layer"):
        vector_hsic({"a": theta_i["q"]}, {"b": theta_j["q"]}, mode)


# ---- the unbiased estimator (Song et al. 2012) and the permutation null (issue 16 item 7) ----
def test_unbiased_hsic_equals_its_u_statistic_by_brute_force():
    """Song et al. 2012 Theorem 2: HSIC_u is the mean over distinct ordered 4-tuples (s, t, u, v) of
    K_st L_st + K_st L_uv − 2 K_st L_su."""
    from itertools import permutations

    from mva_core.hsic import hsic, kernel_matrix

    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 2, generator=g, dtype=torch.float64)
    K, L = kernel_matrix(X, "gaussian", 1.3), kernel_matrix(Y, "gaussian", 1.3)
    tuples = list(permutations(range(7), 4))
    brute = sum(K[s, t] * L[s, t] + K[s, t] * L[u, v] - 2 * K[s, t] * L[s, u] for s, t, u, v in tuples) / len(tuples)
    assert float(hsic(X, Y, sigma=1.3, estimator="unbiased")) == pytest.approx(float(brute), rel=1e-10)


def test_unbiased_hsic_is_zero_on_average_under_independence_and_the_biased_is_not():
    from mva_core.hsic import hsic

    g = torch.Generator().manual_seed(1)
    draws = [(torch.randn(8, 16, generator=g, dtype=torch.float64), torch.randn(8, 16, generator=g, dtype=torch.float64))
             for _ in range(400)]  # r = 8 rows: the shape of the demo's lora_A samples
    unbiased = torch.stack([hsic(X, Y, estimator="unbiased") for X, Y in draws])
    biased = torch.stack([hsic(X, Y) for X, Y in draws])
    assert abs(float(unbiased.mean())) < 3 * float(unbiased.std()) / 20  # within 3 standard errors of 0
    assert float(biased.mean()) > 10 * float(biased.std()) / 20  # the biased one sits at a floor above 0


def test_permutation_null_separates_dependent_from_independent_samples():
    from mva_core.hsic import permutation_null

    g = torch.Generator().manual_seed(2)
    X = torch.randn(30, 2, generator=g, dtype=torch.float64)
    dependent = permutation_null(X, X ** 2 + 0.05 * torch.randn(30, 2, generator=g, dtype=torch.float64), 200)
    independent = permutation_null(X, torch.randn(30, 2, generator=g, dtype=torch.float64), 200)
    assert dependent.p_value < 0.01 and dependent.observed > dependent.null_mean + 3 * dependent.null_sd
    assert independent.p_value > 0.05
    assert permutation_null(X, X, 50, seed=3) == permutation_null(X, X, 50, seed=3)  # seeded


# ---- Relabelling LoRA's rank components (issue 27 item 1a) ----

def dyadic_lora(r, d_out, d_in, seed, scaling=2.0, dtype=torch.float64):
    """A LoraLayer whose entries are multiples of 1/8 below 4 in size: every product and sum in B A is exact
    (in float32 too), so ΔW is bit-identical whatever order matmul sums the rank components in."""
    g = torch.Generator().manual_seed(seed)
    A = (torch.randn(r, d_in, generator=g) * 8).round().clamp(-31, 31) / 8
    B = (torch.randn(d_out, r, generator=g) * 8).round().clamp(-31, 31) / 8
    return LoraLayer(A.to(dtype), B.to(dtype), scaling)


def relabel(layers, perm):
    """The same adapter with rank component k renamed perm[k]: rows of A and columns of B together."""
    return {name: LoraLayer(l.A[perm], l.B[:, perm], l.scaling) for name, l in layers.items()}


def np_hsic_unbiased(X: np.ndarray, Y: np.ndarray) -> float:
    """Song et al. 2012 Theorem 2, by brute force: the mean over distinct ordered 4-tuples (s, t, u, v) of
    K_st L_st + K_st L_uv − 2 K_st L_su, with numpy-loop kernels (median heuristic per side)."""
    from itertools import permutations

    K, L = np_kernel(X, "gaussian", None), np_kernel(Y, "gaussian", None)
    idx = np.array(list(permutations(range(len(X)), 4)))
    s, t, u, v = idx.T
    return float(np.mean(K[s, t] * L[s, t] + K[s, t] * L[u, v] - 2 * K[s, t] * L[s, u]))


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_relabelling_rank_components_moves_lora_A_penalty_but_not_delta(estimator):
    """Permuting LoRA's rank components (rows of A with the columns of B) leaves ΔW bit-identical, so the model
    is the same; the training penalty (`penalty_against`, what Eq.14's trainer adds) in `delta` mode stays put,
    in `lora_A` mode (the paper's code's approximation) it moves: over the r! relabellings it spans the pairing
    permutation null, so training can lower it by reordering rows without removing any dependence."""
    from itertools import permutations

    from mva_core.compose import delta_weight
    from mva_core.hsic import hsic_from_kernels, hsic_unbiased_from_kernels, kernel_matrix
    from mva_core.methods.mva import penalty_against

    r, d_out, d_in = 4, 6, 5
    names = [f"model.layers.{b}.self_attn.{m}" for b in range(2) for m in ("q_proj", "v_proj")]
    theta_i = {n: dyadic_lora(r, d_out, d_in, seed=10 + k) for k, n in enumerate(names)}  # the vector in training
    theta_j = {n: dyadic_lora(r, d_out, d_in, seed=50 + k) for k, n in enumerate(names)}  # a frozen earlier one
    ref = np_hsic if estimator == "biased" else np_hsic_unbiased
    tol = 1e-9  # float64

    def reference(layers, mode):  # numpy loops on samples read off the factors, float64
        def samples(l):
            A, B = l.A.numpy(), l.B.numpy()
            return A if mode == "lora_A" else l.scaling * B @ A
        return sum(ref(samples(layers[n]), samples(theta_j[n])) for n in names)

    penalty = {mode: penalty_against(theta_j, "hsic", mode, estimator=estimator) for mode in ("lora_A", "delta")}
    before = {mode: float(P(theta_i)) for mode, P in penalty.items()}
    for mode in before:
        assert before[mode] == pytest.approx(reference(theta_i, mode), rel=tol, abs=1e-12)

    lora_A_values, delta_values = [], []
    for perm in permutations(range(r)):
        relabelled = relabel(theta_i, list(perm))
        for n in names:  # the same ΔW, bit for bit: the same model
            assert torch.equal(delta_weight(relabelled[n]), delta_weight(theta_i[n])), (perm, n)
        lora_A_values.append(float(penalty["lora_A"](relabelled)))
        delta_values.append(float(penalty["delta"](relabelled)))
    assert lora_A_values[0] == before["lora_A"] and delta_values[0] == before["delta"]  # identity first

    # delta: unchanged under every relabelling
    assert max(abs(x - before["delta"]) for x in delta_values) <= tol * abs(before["delta"])
    # lora_A: moves by far more than the tolerance, for a model that did not change
    spread = max(lora_A_values) - min(lora_A_values)
    assert spread > 100 * tol * max(abs(x) for x in lora_A_values), (estimator, min(lora_A_values), max(lora_A_values))
    perm = [2, 0, 3, 1]
    moved = float(penalty["lora_A"](relabel(theta_i, perm)))
    assert abs(moved - before["lora_A"]) > 100 * tol * abs(before["lora_A"])
    assert moved == pytest.approx(reference(relabel(theta_i, perm), "lora_A"), rel=tol, abs=1e-12)
    # ... and each relabelling is one draw of the pairing null: HSIC(K_i permuted, L_j) summed over the layers
    fn = hsic_from_kernels if estimator == "biased" else hsic_unbiased_from_kernels
    p = torch.tensor(perm)
    shuffled = sum(float(fn(kernel_matrix(theta_i[n].A)[p][:, p], kernel_matrix(theta_j[n].A))) for n in names)
    assert moved == pytest.approx(shuffled, rel=tol, abs=1e-12)
