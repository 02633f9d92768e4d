"""weights -> model: MVA Eq.15, π_w = π_base + Σ_i w_i θ_i.

Two exact paths that share one formula (`delta_weight`):
- `merge`: writes W + Σ_i w_i ΔW_i into a copy of the base weights (export, reference).
- `WeightBatchedModel`: one model in memory whose target layers compute
  `x Wᵀ + Σ_i w[b,i] · (α_i/r_i) · (x A_iᵀ) B_iᵀ` with each batch row b carrying its own weights,
  so one generate call evaluates many candidates.

The base model is never modified. Per-call weights travel in a `contextvars.ContextVar` that is
set for the duration of one call (`with row_weights(W): ...`): each thread/session sees only its own,
so no request can change the scaling another request sees.
"""

from __future__ import annotations

import copy
import contextlib
from contextvars import ContextVar
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .vectors import LoraLayer, ValueVector, VectorError, check_compatible

_ROW_WEIGHTS: ContextVar[torch.Tensor | None] = ContextVar("mva_row_weights", default=None)


def delta_weight(layer: LoraLayer) -> torch.Tensor:
    """ΔW_i = (lora_alpha / r) · B_i A_i, shape (d_out, d_in). The one place the LoRA delta is formed."""
    return layer.scaling * (layer.B @ layer.A)  # (d_out, r) @ (r, d_in)


def _as_weights(weights: Sequence[float] | np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=torch.float32)
    if w.dim() != 1 or w.shape[0] != n:
        raise VectorError(f"weights {w.tolist()} must have one entry per value vector ({n})")
    if not torch.isfinite(w).all():
        raise VectorError(f"weights {w.tolist()} contain NaN or inf")
    return w


def composed_deltas(vectors: Sequence[ValueVector], weights: Sequence[float] | np.ndarray) -> dict[str, torch.Tensor]:
    """Σ_i w_i ΔW_i per target module (MVA Eq.15), float32."""
    w = _as_weights(weights, len(vectors))
    out: dict[str, torch.Tensor] = {}
    for wi, vector in zip(w.tolist(), vectors):
        for module, layer in vector.layers.items():
            d = wi * delta_weight(layer)
            out[module] = out[module] + d if module in out else d
    return out


@torch.no_grad()
def merge(base_model: nn.Module, vectors: Sequence[ValueVector], weights: Sequence[float] | np.ndarray) -> nn.Module:
    """A new model with W + Σ_i w_i ΔW_i in every target layer; `base_model` is left untouched."""
    check_compatible(vectors, base_model)
    merged = copy.deepcopy(base_model)
    for module, delta in composed_deltas(vectors, weights).items():
        linear = merged.get_submodule(module)
        new = linear.weight + delta.to(linear.weight.dtype)
        # peft's safe_merge habit: never write a non-finite weight.
        if not torch.isfinite(new).all():
            raise VectorError(f"tensor {module}: merging gives NaN/inf; check the value vector's weights")
        linear.weight.copy_(new)
    return merged


class WeightBatchedLinear(nn.Module):
    """A base nn.Linear plus all value vectors' factors, each batch row scaled by its own weights.

    The rank dimensions of all vectors are concatenated (R = Σ_i r_i) so the adapter path is two
    matmuls whatever the number of values.
    """

    def __init__(self, base: nn.Linear, layers: Sequence[tuple[int, LoraLayer]]):
        super().__init__()
        self.base = base  # shared with the base model, never written
        self.register_buffer("A", torch.cat([layer.A for _, layer in layers], dim=0), persistent=False)  # (R, d_in)
        self.register_buffer("B", torch.cat([layer.B for _, layer in layers], dim=1), persistent=False)  # (d_out, R)
        self.register_buffer(
            "value_index",
            torch.cat([torch.full((layer.A.shape[0],), i, dtype=torch.long) for i, layer in layers]),
            persistent=False,
        )  # (R,) which value each rank column belongs to
        self.register_buffer(
            "rank_scaling",
            torch.cat([torch.full((layer.A.shape[0],), layer.scaling) for _, layer in layers]),
            persistent=False,
        )  # (R,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _ROW_WEIGHTS.get()
        if w is None:
            raise RuntimeError("WeightBatchedModel called outside `with row_weights(W):`; pass weights per batch row")
        B, T, _ = x.shape  # x: (B, T, d_in)
        assert w.shape[0] == B, f"{w.shape[0]} weight rows for a batch of {B}"
        coef = (w[:, self.value_index] * self.rank_scaling).to(x.dtype)  # (B, R): w[b, i(k)] * α_i/r_i
        h = (x @ self.A.T) * coef[:, None, :]  # (B, T, R)
        y = self.base(x)  # (B, T, d_out), a fresh tensor: safe to accumulate into
        y.view(B * T, -1).addmm_(h.view(B * T, -1), self.B.T)  # += (B*T, R) @ (R, d_out)
        return y


@contextlib.contextmanager
def row_weights(weights: torch.Tensor | np.ndarray) -> Iterator[None]:
    """Set the per-row weights (B, n) for calls made inside this block, in this thread/context only."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
    assert w.dim() == 2, f"row weights must be (batch, n_values), got shape {tuple(w.shape)}"
    token = _ROW_WEIGHTS.set(w)
    try:
        yield
    finally:
        _ROW_WEIGHTS.reset(token)


class WeightBatchedModel:
    """A view of the base model whose target layers are WeightBatchedLinear; base parameters are shared.

    Usage: `with row_weights(W): logits = wb.model(input_ids).logits` where W is (batch, n_values).
    """

    def __init__(self, base_model: nn.Module, vectors: Sequence[ValueVector]):
        check_compatible(vectors, base_model)
        self.vectors = list(vectors)
        self.n_values = len(vectors)
        # Share every parameter and buffer with the base model: the view costs only the LoRA factors.
        memo = {id(t): t for t in list(base_model.parameters()) + list(base_model.buffers())}
        self.model = copy.deepcopy(base_model, memo)
        by_module: dict[str, list[tuple[int, LoraLayer]]] = {}
        for i, vector in enumerate(self.vectors):
            for module, layer in vector.layers.items():
                by_module.setdefault(module, []).append((i, layer))
        for module, layers in by_module.items():
            parent_name, _, child = module.rpartition(".")
            parent = self.model.get_submodule(parent_name)
            setattr(parent, child, WeightBatchedLinear(getattr(parent, child), layers))
        self.model.eval()

    def logits(self, input_ids: torch.Tensor, weights: torch.Tensor | np.ndarray,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Forward pass with row b composed at weights[b]; returns (B, T, vocab) logits."""
        with torch.no_grad(), row_weights(weights):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
