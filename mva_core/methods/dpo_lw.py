"""DPO-LW (DESIGN §1 table, the MVA paper's baseline): one vector per simplex preference w, trained on

    L_w = Σ_k w_k L_DPO(D_k),   L_DPO(D_k) = mean over D_k of −log σ(β [Δ log-ratio])

The value datasets are concatenated and each pair of D_k carries the weight c = w_k · N / n_k (N = Σ n_k),
so the mean over the concatenation of c · ℓ equals Σ_k w_k L_DPO(D_k) exactly. Values with w_k = 0 are
dropped first: at w = e_k the data is D_k with every c = 1, and the run is plain `dpo` on D_k bit for bit.
Batches are split by weight in `compute_loss` (trl's loss is a batch mean): Σ_c c · (n_c / B) · mean_c ℓ.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..config import ConfigError, TrainConfig
from ..kinds import EACH
from ..method_settings import PreferenceSettings
from ..preference_data import check_pairs
from .base import Datasets, TrainingMethod, register_method
from .dpo import train_dpo_vector, with_pair_columns
from .mva import MVA_PAPER

WEIGHT = "pair_weight"


def preference_dir(preference: Sequence[float]) -> str:
    """The vector dir name of a preference: 'w=0.25,0.75'."""
    return "w=" + ",".join(f"{p:g}" for p in preference)


def check_preferences(preferences: Sequence[Sequence[float]], n_values: int) -> list[list[float]]:
    out = []
    for p in preferences:
        p = [float(x) for x in p]
        if len(p) != n_values or min(p) < 0 or abs(sum(p) - 1.0) > 1e-6:
            raise ConfigError(f"preference {p}: give {n_values} non-negative weights summing to 1 (a simplex point), "
                              f"e.g. {[round(1 / n_values, 3)] * n_values}")
        out.append(p)
    if not out:
        raise ConfigError("no preferences given; e.g. --preferences '0.25,0.75;0.75,0.25'")
    return out


def pending_preferences(datasets: Mapping[str, list[dict[str, Any]]], out_root: str | Path,
                        preferences: Sequence[Sequence[float]] | None,
                        defaults: Mapping[int, list[list[float]]]) -> list[tuple[list[float], Path]]:
    """(preference, its vector dir) still to train for a one-vector-per-preference method: the pairs are checked,
    the preferences validated (default by number of values), dirs that hold a finished vector skipped."""
    for value, pairs in datasets.items():
        check_pairs(pairs, source=f"value {value!r}")
    prefs = check_preferences(preferences or defaults.get(len(datasets), []), len(datasets))
    dirs = [(p, Path(out_root) / preference_dir(p)) for p in prefs]
    return [(p, d) for p, d in dirs if not (d / "adapter_config.json").is_file()]


def weighted_pairs(datasets: Mapping[str, list[dict[str, Any]]], preference: Sequence[float]) -> tuple[list[dict[str, Any]], list[float]]:
    """The concatenated pairs of the values with w_k > 0 and each pair's weight c = w_k · N / n_k."""
    used = [(pairs, w) for pairs, w in zip(datasets.values(), preference) if w > 0]
    N = sum(len(pairs) for pairs, _ in used)
    return ([p for pairs, _ in used for p in pairs],
            [w * N / len(pairs) for pairs, w in used for _ in pairs])


@functools.cache
def weighted_trainer() -> type:
    """A `trl.DPOTrainer` whose loss is the per-pair-weighted mean Σ_i c_i ℓ_i / B."""
    from trl import DPOTrainer  # heavy optional dependency: loaded on first use

    class WeightedDPOTrainer(with_pair_columns(DPOTrainer, (WEIGHT,))):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            c = inputs.pop(WEIGHT)
            if bool((c == 1).all()):  # one value (w = e_k): exactly trl's DPO loss
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            assert not return_outputs, "weighted DPO-LW returns the loss only"
            B = c.shape[0]  # rows are [chosen_1..B; rejected_1..B]
            loss = 0.0
            for weight in torch.unique(c):
                idx = torch.nonzero(c == weight).flatten()
                rows = torch.cat([idx, idx + B])
                sub = {k: v[rows] if torch.is_tensor(v) and v.shape[:1] == (2 * B,) else v for k, v in inputs.items()}
                loss = loss + weight * (len(idx) / B) * super().compute_loss(model, sub, False, num_items_in_batch)
            return loss

    WeightedDPOTrainer.__qualname__ = "WeightedDPOTrainer"
    return WeightedDPOTrainer


@register_method("dpo-lw")
class DPOLW(TrainingMethod):
    """DPO-LW: one vector per simplex preference w, loss Σ_k w_k L_DPO(D_k)."""

    paper = MVA_PAPER  # a baseline row of the MVA paper
    description = "DPO-LW: one vector per simplex preference w, trained on Σ_k w_k L_DPO(D_k); each used alone"
    kind = EACH
    settings_class = PreferenceSettings
    default_preferences = {2: [[0.25, 0.75], [0.5, 0.5], [0.75, 0.25]]}

    def train_vectors(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                      base_fingerprint: str, settings: PreferenceSettings, *,
                      progress: bool = True) -> list[dict[str, Any]]:
        """One vector per preference into out_root/'w=…'/; finished dirs are skipped (a rerun resumes)."""
        summaries = []
        for p, out in pending_preferences(datasets, out_root, settings.preferences, self.default_preferences):
            pairs, c = weighted_pairs(datasets, p)
            summaries.append(train_dpo_vector(
                base_dir, pairs, "+".join(datasets), out, config, base_fingerprint, method=self.name,
                progress=progress, trainer_class=weighted_trainer(), columns={WEIGHT: c},
                extra_meta={"preference": p, "values": list(datasets), "paper": self.paper}))
        return summaries
