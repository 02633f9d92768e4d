"""Rewarded Soups (DESIGN §1 SOUP row): the independent per-value DPO vectors of `mva-no-hsic`, interpolated
on the simplex (Σ w_i = 1, w_i ≥ 0) instead of extrapolated over [0, C]^n.

Training a soup is training independent per-value DPO vectors, which is `mva-no-hsic` (α = 0) exactly, so
`train` delegates to it; without `vectors/soup/` a workspace's soup reads `vectors/mva-no-hsic/`, and the
two methods differ only in their weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..kinds import SIMPLEX
from ..method_settings import IndependentSettings
from .base import Datasets, TrainingMethod, get_method, register_method


class IndependentVectors(TrainingMethod):
    """A method with no vectors of its own: it reads `mva-no-hsic`'s independent per-value DPO vectors (or its own
    `vectors/<name>/` if present) and differs only in how it composes them (its `kind`); `soup` and `mod`."""

    vectors_from = "mva-no-hsic"
    settings_class = IndependentSettings  # the settings of the method it trains as

    def train_vectors(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                      base_fingerprint: str, settings: IndependentSettings, *,
                      progress: bool = True) -> list[dict[str, Any]]:
        """mva-no-hsic's training, exactly (its vectors, recorded under this method's name)."""
        return get_method(self.vectors_from).train_vectors(base_dir, datasets, out_root, config, base_fingerprint,
                                                           settings, progress=progress)


@register_method("soup")
class Soup(IndependentVectors):
    """Rewarded Soups: independent per-value DPO vectors, interpolated on the simplex."""

    paper = "https://arxiv.org/abs/2306.04488"
    description = "Rewarded Soups: mva-no-hsic's independent DPO vectors, interpolated on the simplex"
    kind = SIMPLEX
