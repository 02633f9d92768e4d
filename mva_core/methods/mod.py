"""MOD (DESIGN §1 `mod` row; Shi et al. 2024, "Decoding-Time Language Model Alignment with Multiple Objectives"):
the independent per-value DPO vectors of `mva-no-hsic`, composed at decoding time over the same [0, C]^n grid
as MVA: per token (1 − Σ w_i) log π_base + Σ w_i log π_i (mva_core.decode_time), the log-space twin of
`base + Σ w_i θ_i`.

Nothing of its own is trained: like `soup`, without `vectors/mod/` a workspace's mod reads
`vectors/mva-no-hsic/`, and `train` delegates to that method.
"""

from __future__ import annotations

from ..kinds import DECODE_TIME
from .base import register_method
from .soup import IndependentVectors


@register_method("mod")
class MultiObjectiveDecoding(IndependentVectors):
    """MOD: mva-no-hsic's independent DPO vectors, mixed per token at decoding time (n + 1 rows per token)."""

    paper = "https://arxiv.org/abs/2406.18853"
    description = "MOD: mva-no-hsic's DPO vectors mixed per token at decoding time, (1 - sum w) log p_base + sum w_i log p_i"
    kind = DECODE_TIME
