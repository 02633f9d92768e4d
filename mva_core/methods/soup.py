"""Rewarded Soups (DESIGN §1 SOUP row): the independent per-value DPO vectors of `mva-no-hsic`, interpolated
on the simplex (Σ w_i = 1, w_i ≥ 0) instead of extrapolated over [0, C]^n.

Training a soup is training independent per-value DPO vectors, which is `mva-no-hsic` (α = 0) exactly, so
`train` delegates to it; without `vectors/soup/` a workspace's soup reads `vectors/mva-no-hsic/`, and the
two methods differ only in their weights.
"""

from __future__ import annotations

from typing import Any

from . import get_method, register_method


@register_method("soup")
class Soup:
    """Rewarded Soups: independent per-value DPO vectors, interpolated on the simplex."""

    paper = "https://arxiv.org/abs/2306.04488"
    description = "Rewarded Soups: mva-no-hsic's independent DPO vectors, interpolated on the simplex"
    composition = "simplex"
    vectors_from = "mva-no-hsic"
    sequential = True

    def train_sequence(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return get_method(self.vectors_from).train_sequence(*args, **kwargs)

    def train(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return get_method(self.vectors_from).train(*args, **kwargs)
