"""HSIC, MVA Eq.6: the dependence measure that Value Decorrelation Training (Eq.14) penalises.

    HSIC(X, Y) = tr(K H L H) / (m − 1)²,   H = I − (1/m) 1 1ᵀ,   K_ab = k(x_a, x_b),  L_ab = l(y_a, y_b)

for m paired samples (x_a, y_a). Gaussian kernel k(x, x') = exp(−‖x − x'‖² / (2σ²)) with σ from the median
heuristic (Gretton et al. 2005, "Measuring statistical dependence with Hilbert-Schmidt norms", §4), or a
linear kernel k(x, x') = xᵀx' for diagnostics. What the samples of a value vector are, per target layer, is
`SampleMode` (DESIGN §1): rows of lora_A (what the paper's released code does) or rows of ΔW = (α/r)·B A.

`lora_A` is the released code's approximation, and it measures a row order, not the value vectors: LoRA's rank
components can be relabelled, A → P A and B → B Pᵀ for any r × r permutation P, leaving ΔW = s·B Pᵀ P A = s·B A
(so the model) unchanged, yet that changes which row of A_i is paired with row k of A_j, and so HSIC(A_i, A_j).
Over the r! relabellings it takes exactly the values of its own pairing null (`permutation_null`), so Eq.14's
training can lower it by choosing a row pairing rather than by removing a dependence. `delta` reads rows of ΔW,
which no relabelling changes (tests/test_hsic.py::test_relabelling_rank_components_moves_lora_A_penalty_but_not_delta).

The paper's released code (github.com/HeFei-X/MVA, mva.py) uses a fixed σ and divides by m² instead of
(m − 1)²; we follow DESIGN §1 (the paper's Eq.6 and the median heuristic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from .compose import delta_weight
from .method_settings import KERNELS, SAMPLE_MODES, Estimator, Kernel, SampleMode  # choices, torch-free (train --help)
from .vectors import LoraLayer, VectorError


def _squared_distances(X: torch.Tensor) -> torch.Tensor:
    """‖x_a − x_b‖² for all pairs, (m, m), from the Gram matrix.

    Not `torch.cdist`: its backward divides by the distance and gives NaN where two rows coincide, which
    is every pair of rows of ΔW = 0 at the start of training. Not an (m, m, d) difference tensor either:
    in `delta` mode m = d_out, and m² · d floats does not fit in memory for a real model.
    """
    X = X - X.mean(dim=0, keepdim=True)  # distances ignore a shift; centring first shrinks the cancellation below
    sq = (X * X).sum(dim=1)  # (m,)
    gram = X @ X.T  # (m, m)
    return (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0)  # (m, m); clamp: rounding can go below 0


@torch.no_grad()
def median_heuristic(X: torch.Tensor) -> float:
    """σ = median of ‖x_a − x_b‖ over the pairs a < b (the mean of the two middle values for an even count,
    as numpy.median); 1.0 when that median is 0 (e.g. all rows equal, as ΔW is before the first update).

    `torch.median` returns the lower middle value, `torch.quantile` refuses more than 2^24 inputs
    (d_out = 11008 rows give 6·10^7 pairs), and a full sort is 3x slower than two selections.
    """
    m = X.shape[0]
    assert m >= 2, f"the median heuristic needs at least 2 samples, got {m}"
    dist = torch.pdist(X)  # (m(m−1)/2,): exactly the pairs a < b
    n = dist.numel()
    if n % 2 == 1:
        median = dist.kthvalue(n // 2 + 1).values  # kthvalue counts from 1
    else:
        median = (dist.kthvalue(n // 2).values + dist.kthvalue(n // 2 + 1).values) / 2
    median = float(median)
    return median if median > 0 else 1.0


def kernel_matrix(X: torch.Tensor, kernel: Kernel = "gaussian", sigma: float | None = None) -> torch.Tensor:
    """K_ab = k(x_a, x_b), (m, m): Gaussian exp(−‖x_a − x_b‖² / (2σ²)) with σ = median heuristic when
    `sigma` is None, or linear x_aᵀ x_b. Differentiable in X."""
    assert kernel in KERNELS, f"kernel={kernel!r}: choose one of {KERNELS}"
    if kernel == "linear":
        return X @ X.T  # (m, m)
    # σ is the bandwidth, a hyperparameter chosen from the data, so it is computed without gradient (as the
    # released code's constant σ is): differentiating through the median would send gradient through the one
    # or two pairs at the median only, jump when the pair order changes, and is infinite at ΔW = 0 where the
    # distances are 0. The kernel itself stays differentiable in X.
    s = median_heuristic(X) if sigma is None else float(sigma)
    return torch.exp(-_squared_distances(X) / (2.0 * s * s))  # (m, m)


def hsic_from_kernels(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """tr(K H L H) / (m − 1)² for two (m, m) kernel matrices (L symmetric), MVA Eq.6."""
    assert K.dim() == 2 and K.shape[0] == K.shape[1] and K.shape == L.shape, (
        f"kernel matrices K{tuple(K.shape)} and L{tuple(L.shape)} must be (m, m) for the same m")
    m = K.shape[0]
    assert m >= 2, f"HSIC needs at least 2 paired samples, got {m}"
    # H K H is K with its row and column means removed; tr(K H L H) = tr(H K H L) = Σ_ab (HKH)_ab L_ab
    # because H is idempotent, the trace is cyclic and L is symmetric: O(m²) instead of two m×m products.
    Kc = K - K.mean(dim=0, keepdim=True) - K.mean(dim=1, keepdim=True) + K.mean()  # (m, m)
    return (Kc * L.to(K.dtype)).sum() / (m - 1) ** 2


def hsic_unbiased_from_kernels(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator of Song et al. 2012 (JMLR 13, "Feature selection via dependence
    maximization", Eq.5), zero in expectation when the samples are independent:

        HSIC_u = [tr(K̃ L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((m−1)(m−2)) − 2/(m−2) · 1ᵀK̃L̃1] / (m(m−3)),

    K̃, L̃ = K, L with zero diagonals. Needs m ≥ 4; it can be negative."""
    assert K.dim() == 2 and K.shape[0] == K.shape[1] and K.shape == L.shape, (
        f"kernel matrices K{tuple(K.shape)} and L{tuple(L.shape)} must be (m, m) for the same m")
    m = K.shape[0]
    assert m >= 4, f"the unbiased HSIC needs at least 4 paired samples, got {m}; use the biased estimator"
    eye = torch.eye(m, dtype=torch.bool, device=K.device)
    Kt, Lt = K.masked_fill(eye, 0.0), L.to(K.dtype).masked_fill(eye, 0.0)  # (m, m)
    trace = (Kt * Lt).sum()  # tr(K̃ L̃), L̃ symmetric
    totals = Kt.sum() * Lt.sum() / ((m - 1) * (m - 2))
    cross = 2.0 / (m - 2) * (Kt.sum(dim=0) @ Lt.sum(dim=1))  # 1ᵀ K̃ L̃ 1
    return (trace + totals - cross) / (m * (m - 3))


ESTIMATORS = {"biased": hsic_from_kernels, "unbiased": hsic_unbiased_from_kernels}  # keys: method_settings.Estimator


def hsic(X: torch.Tensor, Y: torch.Tensor, kernel: Kernel = "gaussian", sigma: float | None = None,
         estimator: Estimator = "biased") -> torch.Tensor:
    """HSIC(X, Y) = tr(K H L H) / (m − 1)², MVA Eq.6 (or Song et al.'s unbiased estimator); a differentiable
    scalar in the dtype of X.

    X (m, d_x) and Y (m, d_y) are paired by row. `sigma=None` takes the median heuristic for X and for Y
    separately; a number sets both. `kernel="linear"` uses K = X Xᵀ, L = Y Yᵀ.
    """
    assert kernel in KERNELS, f"kernel={kernel!r}: choose one of {KERNELS}"
    assert estimator in ESTIMATORS, f"estimator={estimator!r}: choose one of {sorted(ESTIMATORS)}"
    assert X.dim() == 2 and Y.dim() == 2, f"X{tuple(X.shape)} and Y{tuple(Y.shape)} must be (m, d) matrices"
    assert X.shape[0] == Y.shape[0], f"X has {X.shape[0]} samples and Y {Y.shape[0]}; HSIC needs paired rows"
    assert X.shape[0] >= 2, f"HSIC needs at least 2 paired samples, got {X.shape[0]}"
    assert sigma is None or sigma > 0, f"sigma={sigma}: the kernel bandwidth must be > 0 (or None for the median)"
    return ESTIMATORS[estimator](kernel_matrix(X, kernel, sigma), kernel_matrix(Y.to(X.dtype), kernel, sigma))


@dataclass(frozen=True)
class PermutationNull:
    """An HSIC beside what it is when the pairing is broken: the same samples, rows of Y shuffled."""

    observed: float
    null_mean: float
    null_sd: float
    p_value: float  # (1 + #{null ≥ observed}) / (1 + n): the share of shuffles at least as dependent
    n_permutations: int


@torch.no_grad()
def permutation_null(X: torch.Tensor, Y: torch.Tensor, n_permutations: int = 200, seed: int = 0,
                     kernel: Kernel = "gaussian", sigma: float | None = None,
                     estimator: Estimator = "biased") -> PermutationNull:
    """HSIC(X, Y) and its null distribution under independence by shuffling the rows of Y (Gretton et al. 2008):
    the kernels are computed once and L is permuted, so each shuffle costs one O(m²) sum."""
    return _null([(kernel_matrix(X, kernel, sigma), kernel_matrix(Y.to(X.dtype), kernel, sigma))], estimator,
                 n_permutations, seed)


@torch.no_grad()
def vector_permutation_null(theta_i_layers: Mapping[str, LoraLayer], theta_j_layers: Mapping[str, LoraLayer],
                            mode: SampleMode = "lora_A", kernel: Kernel = "gaussian", sigma: float | None = None,
                            estimator: Estimator = "biased", n_permutations: int = 200,
                            seed: int = 0) -> PermutationNull:
    """`vector_hsic` (the sum over shared layers, MVA Eq.14's term) beside its null: each shuffle permutes every
    layer's θ_j samples independently and sums the layers again."""
    shared = sorted(set(theta_i_layers) & set(theta_j_layers))
    if not shared:
        raise VectorError("the two value vectors share no target layer, so HSIC between them is undefined")
    kernels = []
    for name in shared:
        li, lj = theta_i_layers[name], theta_j_layers[name]
        check_layer_pair(li, lj, mode)
        K = layer_kernel(li, mode, kernel, sigma)
        kernels.append((K, layer_kernel(lj, mode, kernel, sigma).to(K.dtype)))
    return _null(kernels, estimator, n_permutations, seed)


def _null(kernels: list[tuple[torch.Tensor, torch.Tensor]], estimator: Estimator, n_permutations: int,
          seed: int) -> PermutationNull:
    """Σ_layers HSIC(K, L) and the same sum with each L's rows and columns permuted, n times."""
    assert n_permutations >= 1, f"n_permutations={n_permutations}: use at least 100 for a p-value"
    assert estimator in ESTIMATORS, f"estimator={estimator!r}: choose one of {sorted(ESTIMATORS)}"
    fn = ESTIMATORS[estimator]
    observed = float(sum(fn(K, L) for K, L in kernels))
    g = torch.Generator().manual_seed(seed)
    null = []
    for _ in range(n_permutations):
        total = 0.0
        for K, L in kernels:
            perm = torch.randperm(K.shape[0], generator=g)
            total += float(fn(K, L[perm][:, perm]))
        null.append(total)
    t = torch.tensor(null, dtype=torch.float64)
    return PermutationNull(observed, float(t.mean()), float(t.std()) if n_permutations > 1 else 0.0,
                           (1 + int((t >= observed).sum())) / (1 + n_permutations), n_permutations)


def samples(layer: LoraLayer, mode: SampleMode) -> torch.Tensor:
    """One vector's HSIC samples for one target layer: rows of A (r, d_in), or rows of ΔW (d_out, d_in)."""
    assert mode in SAMPLE_MODES, f"mode={mode!r}: choose one of {SAMPLE_MODES}"
    return layer.A if mode == "lora_A" else delta_weight(layer)


def layer_samples(layer_i: LoraLayer, layer_j: LoraLayer, mode: SampleMode) -> tuple[torch.Tensor, torch.Tensor]:
    """The paired samples (X, Y) that HSIC compares for one target layer of θ_i and θ_j.

    `lora_A`: rows of A_i and A_j, (r, d_in) each; row k of A_i is paired with row k of A_j, so the ranks
    must agree. The pairing is LoRA's arbitrary labelling of rank components (the paper's code's approximation,
    see the module docstring): relabelling θ_i's components changes this HSIC, not ΔW_i. `delta`: rows of ΔW_i and ΔW_j, (d_out, d_in) each. Gradient flows to whichever factors
    require it.
    """
    check_layer_pair(layer_i, layer_j, mode)
    return samples(layer_i, mode), samples(layer_j, mode)  # (m, d_in) each; m = r or d_out


def check_layer_pair(layer_i: LoraLayer, layer_j: LoraLayer, mode: SampleMode) -> None:
    """VectorError unless HSIC can pair these layers' samples in `mode` (`layer_samples`)."""
    assert mode in SAMPLE_MODES, f"mode={mode!r}: choose one of {SAMPLE_MODES}"
    if layer_i.shape != layer_j.shape:
        raise VectorError(f"HSIC between layers of shape (d_out, d_in)={layer_i.shape} and {layer_j.shape}: "
                          "the value vectors adapt different layers; compare vectors trained on one base")
    r_i, r_j = layer_i.A.shape[0], layer_j.A.shape[0]
    if mode == "lora_A" and r_i != r_j:
        raise VectorError(f"HSIC mode 'lora_A' pairs row k of A_i with row k of A_j, but the ranks differ "
                          f"(r={r_i} vs r={r_j}); train both vectors with the same lora_r, or use mode='delta'")


def _low_rank_squared_distances(F: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """‖x_a − x_b‖² over the rows of X = F A, (m, m), from the factors: F (m, r), A (r, d).

    The same quantity as `_squared_distances(F @ A)`, in O(m² r) instead of O(m² d): centring X's rows is centring
    F's, and X_c X_cᵀ = F_c (A Aᵀ) F_cᵀ. For ΔW = s·B A (m = d_out, r = LoRA's rank) that is ~d_in / r times
    fewer operations, which is what makes the `delta` penalty affordable at every training step."""
    Fc = F - F.mean(dim=0, keepdim=True)  # (m, r)
    M = Fc @ (A @ A.T)  # (m, r)
    sq = (M * Fc).sum(dim=1)  # (m,) squared norms of the centred rows
    return (sq[:, None] + sq[None, :] - 2.0 * (M @ Fc.T)).clamp_min(0.0)  # (m, m)


@torch.no_grad()
def _median_from_squared(D: torch.Tensor) -> float:
    """`median_heuristic` from a matrix of squared distances: the median of √D_ab over the pairs a < b."""
    m = D.shape[0]
    assert m >= 2, f"the median heuristic needs at least 2 samples, got {m}"
    iu = torch.triu_indices(m, m, offset=1)
    dist = D[iu[0], iu[1]].sqrt()
    n = dist.numel()
    if n % 2 == 1:
        median = dist.kthvalue(n // 2 + 1).values
    else:
        median = (dist.kthvalue(n // 2).values + dist.kthvalue(n // 2 + 1).values) / 2
    median = float(median)
    return median if median > 0 else 1.0


def layer_kernel(layer: LoraLayer, mode: SampleMode = "lora_A", kernel: Kernel = "gaussian",
                 sigma: float | None = None) -> torch.Tensor:
    """`kernel_matrix(samples(layer, mode))`, differentiable in the factors. In `delta` mode it is computed from
    ΔW's factors (ΔW = s·B A: `_low_rank_squared_distances`, the median heuristic from those same distances)
    without forming the (d_out, d_in) matrix; equal to the dense computation up to rounding."""
    assert mode in SAMPLE_MODES, f"mode={mode!r}: choose one of {SAMPLE_MODES}"
    if mode == "lora_A":
        return kernel_matrix(layer.A, kernel, sigma)
    F = layer.scaling * layer.B  # (d_out, r): ΔW = F A
    if kernel == "linear":
        return F @ (layer.A @ layer.A.T) @ F.T  # (d_out, d_out) = ΔW ΔWᵀ
    D = _low_rank_squared_distances(F, layer.A)
    s = _median_from_squared(D.detach()) if sigma is None else float(sigma)  # no gradient through σ (kernel_matrix)
    return torch.exp(-D / (2.0 * s * s))


@torch.no_grad()
def layer_kernels(theta_layers: Mapping[str, LoraLayer], mode: SampleMode = "lora_A", kernel: Kernel = "gaussian",
                  sigma: float | None = None) -> dict[str, torch.Tensor]:
    """The kernel matrix of one vector's samples per target layer, without gradient. For a frozen θ_j they are
    the same at every step of Eq.14's training, so it computes them once (`vector_hsic(..., kernels_j=)`)."""
    return {name: layer_kernel(layer, mode, kernel, sigma) for name, layer in theta_layers.items()}


def vector_hsic(theta_i_layers: Mapping[str, LoraLayer], theta_j_layers: Mapping[str, LoraLayer],
                mode: SampleMode = "lora_A", kernel: Kernel = "gaussian", sigma: float | None = None,
                kernels_j: Mapping[str, torch.Tensor] | None = None, estimator: Estimator = "biased") -> torch.Tensor:
    """HSIC(θ_i, θ_j) = Σ over the target layers both vectors adapt of hsic(layer samples), the term of MVA Eq.14.

    Layers are keyed by module name (as `ValueVector.layers`). `kernels_j`, from `layer_kernels(θ_j, …)` with
    the same mode/kernel/sigma, replaces recomputing θ_j's side. Raises VectorError if they share no layer.
    """
    shared = sorted(set(theta_i_layers) & set(theta_j_layers))
    if not shared:
        raise VectorError(f"the two value vectors share no target layer ({sorted(theta_i_layers)[:3]}… vs "
                          f"{sorted(theta_j_layers)[:3]}…), so HSIC between them is undefined; "
                          "train them with the same target_modules")
    assert estimator in ESTIMATORS, f"estimator={estimator!r}: choose one of {sorted(ESTIMATORS)}"
    terms = []
    for name in shared:
        li, lj = theta_i_layers[name], theta_j_layers[name]
        check_layer_pair(li, lj, mode)
        K = layer_kernel(li, mode, kernel, sigma)
        L = kernels_j[name] if kernels_j is not None else layer_kernel(lj, mode, kernel, sigma)
        terms.append(ESTIMATORS[estimator](K, L.to(K.dtype)))
    return torch.stack(terms).sum()
