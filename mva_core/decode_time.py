"""Decode-time composition (MOD: Shi et al. 2024, "Decoding-Time Language Model Alignment with Multiple
Objectives", https://arxiv.org/abs/2406.18853): the candidate w is not one model but a rule for the next token.

For the reverse-KL family (DPO among it) MOD's optimal policy for a weighted sum of rewards is the weighted
geometric mean of the per-objective policies. Over the base π_base and the per-value models π_i = base + θ_i
(the value vectors composed one at a time, MVA Eq.15 at w = e_i) the next-token log-probabilities are

    log π_w(y | x, y_<t) = log_softmax_y[ (1 − Σ_i w_i) · log π_base(y | x, y_<t) + Σ_i w_i · log π_i(y | x, y_<t) ]

— the log-space twin of MVA Eq.15's `π_base + Σ_i w_i θ_i` (where the sum is over parameters). Weights need not
sum to 1: with Σ w > 1 the base's coefficient is negative (extrapolation, as MVA's [0, C]^n grid).

Cost: every sequence runs n + 1 rows per token (row 0 the base, row i the model at e_i), each with its own KV
cache, in one weight-batched forward pass (compose.WeightBatchedModel); `generate.generate_samples(...,
decode_time=True)` decodes that way.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from transformers import LogitsProcessor

DECODE_TIME_TAG = "decode-time"  # what a decode-time candidate's stored decoding carries (kinds.DecodeTime)


def component_weights(n_values: int) -> np.ndarray:
    """The n + 1 rows of weights one sequence runs per token, shape (n + 1, n): row 0 all 0 (the base), row i the
    unit vector e_i (base + θ_i alone)."""
    return np.concatenate([np.zeros((1, n_values)), np.eye(n_values)]).astype(np.float32)  # (n+1, n)


def mixture_coefficients(weights: torch.Tensor) -> torch.Tensor:
    """(G, n) weights -> (G, n + 1) coefficients of the log-probs: (1 − Σ_i w_i, w_1, …, w_n)."""
    return torch.cat([1.0 - weights.sum(dim=1, keepdim=True), weights], dim=1)


def mixed_log_probs(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The candidate's next-token log-probabilities (module docstring's formula).

    logits: (G, n + 1, V), row 0 of each group the base's, row i the model at e_i; weights: (G, n).
    Returns (G, V), normalised (log_softmax of the mixture). A token masked (−inf) in any component (e.g. EOS
    before `min_new_tokens`) stays −inf: a negative coefficient must not turn −inf into +inf.
    """
    G, R, V = logits.shape
    assert weights.shape == (G, R - 1), f"weights {tuple(weights.shape)} for {G} groups of {R} rows"
    log_p = torch.log_softmax(logits.double(), dim=-1)  # (G, n+1, V); float64: the sum of n+1 terms is exact to 1e-12
    masked = torch.isneginf(log_p).any(dim=1)  # (G, V)
    coef = mixture_coefficients(weights.double())  # (G, n+1)
    mixed = torch.einsum("gr,grv->gv", coef, log_p.masked_fill(torch.isneginf(log_p), 0.0))  # (G, V)
    return torch.log_softmax(mixed.masked_fill(masked, float("-inf")), dim=-1)


class DecodeTimeMixture(LogitsProcessor):
    """Inside `generate` over (G · (n + 1)) rows, G sequences of n + 1 rows each: every step replaces each group's
    n + 1 rows of scores by the group's mixed log-probs (`mixed_log_probs`), then `then` (e.g. the per-row sampler
    `generate.RowSampler`, one seed per group) picks from them, and the result is written to all n + 1 rows, so
    greedy search appends the same token to every row of a group (each row keeps its own KV cache).

    `weights`: (G, n) — group g's candidate weights."""

    def __init__(self, weights: np.ndarray, then: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))  # (G, n)
        self.then = then

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        G, n = self.weights.shape
        B, V = scores.shape
        assert B == G * (n + 1), f"{B} rows for {G} sequences of {n + 1} rows"
        mixed = mixed_log_probs(scores.view(G, n + 1, V), self.weights.to(scores.device)).to(scores.dtype)  # (G, V)
        if self.then is not None:
            mixed = self.then(input_ids[:: n + 1], mixed)  # group g's row 0 carries its tokens (all rows do)
        return mixed.repeat_interleave(n + 1, dim=0)  # (G·(n+1), V)
