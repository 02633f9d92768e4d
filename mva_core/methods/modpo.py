"""MODPO (Zhou et al., https://arxiv.org/abs/2310.03708), DESIGN §1 table: one vector per simplex preference w,
trained on the primary value k's pairs (k = argmax w, the first on ties) with a margin from the other values'
reward models:

    L = −log σ( (β / w_k) [Δ log-ratio] − (1 / w_k) Σ_{j≠k} w_j (r_j(x, y_w) − r_j(x, y_l)) )      (MODPO Eq.7)

Δ log-ratio = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)], π_ref = the base model
(LoRA disabled); both log-probs come from trl's fused LM head, the way trl's DPO loss takes them, so at w = e_k
(margin 0, w_k = 1) MODPO is `dpo` on D_k bit for bit. The reward models r_j are the workspace's scorers for the
other values, applied to each pair's chosen and rejected response before training, on their raw scale (no
normalisation: a scorer with a larger range weighs more in the margin — the price of using proxies as reward
models).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError, TrainConfig
from ..kinds import EACH
from ..method_settings import MODPOSettings
from ..scorers import get_scorer
from .base import Datasets, TrainingMethod, register_method
from .dpo import train_dpo_vector, with_pair_columns
from .dpo_lw import pending_preferences

MARGIN = "modpo_margin"


def primary_value(preference: Sequence[float]) -> int:
    """k = argmax w (the first on ties): the value whose pairs MODPO trains on."""
    return int(np.argmax(preference))


def margins(datasets: Mapping[str, list[dict[str, Any]]], preference: Sequence[float],
            scorers: Mapping[str, str]) -> np.ndarray:
    """Σ_{j≠k} w_j (r_j(x, y_w) − r_j(x, y_l)) for every pair of the primary value k, r_j = scorer of value j."""
    values = list(datasets)
    k = primary_value(preference)
    pairs = datasets[values[k]]
    prompts = [p["prompt"] for p in pairs]
    total = np.zeros(len(pairs))
    for j, value in enumerate(values):
        if j == k or preference[j] == 0:
            continue
        if value not in scorers:
            raise ConfigError(f"MODPO needs a reward model for value {value!r}: give scorers={{{value!r}: SCORER}} "
                              "(the CLI takes them from the workspace's workspace.json)")
        scorer = get_scorer(scorers[value])
        diff = scorer.score(prompts, [p["chosen"] for p in pairs]) - scorer.score(prompts, [p["rejected"] for p in pairs])
        if not np.isfinite(diff).all():
            raise ConfigError(f"scorer {scorers[value]!r} gave a non-finite score on value {values[k]!r}'s pairs; "
                              "MODPO's margin needs finite rewards")
        total += preference[j] * diff
    return total


def sequence_logps(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """log π(completion | prompt) per row of trl's collated batch, summed over completion tokens.

    Through trl's fused LM head (`fused_lm_head=True`, patched onto the model by `DPOTrainer`), exactly as trl's
    DPO loss computes its log-probs: no (2B, T, V) logits, and the model's logit scaling/softcapping applied.
    """
    labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)  # (2B, T)
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False,
                labels=labels, fused_lm_head=True)
    return out.log_probs.sum(dim=1)  # (2B, T-1) zero where the label is -100 -> (2B,)


@functools.cache
def modpo_trainer() -> type:
    from trl import DPOTrainer  # heavy optional dependency: loaded on first use
    from trl.trainer.utils import use_adapter

    class MODPOTrainer(with_pair_columns(DPOTrainer, (MARGIN,))):
        """DPOTrainer with MODPO's loss (Eq.7 above) in compute_loss; `w_k` is the primary value's weight."""

        def __init__(self, *args: Any, w_k: float, **kwargs: Any):
            self.w_k = float(w_k)
            super().__init__(*args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            margin = inputs.pop(MARGIN).to(self.accelerator.device)  # (B,)
            logps = sequence_logps(model, inputs)
            peft_model = self.accelerator.unwrap_model(model)
            # the reference as trl's DPO takes it: the base (adapter disabled), or a "ref" copy of a loaded adapter
            with torch.no_grad(), use_adapter(peft_model, "ref" if "ref" in peft_model.peft_config else None):
                ref = sequence_logps(model, inputs)
            chosen, rejected = (logps - ref).chunk(2)  # log-ratios, batch is [chosen; rejected]
            logits = (self.beta / self.w_k) * (chosen - rejected) - margin / self.w_k
            loss = -F.logsigmoid(logits).mean()
            mode = "train" if model.training else "eval"
            self._metrics[mode]["rewards/accuracies"].append((logits > 0).float().mean().item())
            return (loss, {"logits": logits}) if return_outputs else loss

    MODPOTrainer.__qualname__ = "MODPOTrainer"
    return MODPOTrainer


@register_method("modpo")
class MODPO(TrainingMethod):
    """MODPO: one vector per preference w; DPO on the primary value with the other values' rewards as margin."""

    paper = "https://arxiv.org/abs/2310.03708"
    description = "MODPO: one vector per preference w, DPO on value argmax(w) with the others' rewards as a margin"
    kind = EACH
    settings_class = MODPOSettings
    default_preferences = {2: [[0.25, 0.75], [0.5, 0.5], [0.75, 0.25]]}

    def train_vectors(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                      base_fingerprint: str, settings: MODPOSettings, *,
                      progress: bool = True) -> list[dict[str, Any]]:
        """One vector per preference into out_root/'w=…'/; finished dirs are skipped (a rerun resumes)."""
        values, summaries, scorers = list(datasets), [], settings.scorers
        for p, out in pending_preferences(datasets, out_root, settings.preferences, self.default_preferences):
            k = primary_value(p)
            m = margins(datasets, p, scorers or {})
            summaries.append(train_dpo_vector(
                base_dir, datasets[values[k]], "+".join(values), out, config, base_fingerprint, method=self.name,
                progress=progress, trainer_class=modpo_trainer(), trainer_kwargs={"w_k": p[k]},
                columns={MARGIN: m.tolist()},
                extra_meta={"preference": p, "values": values, "primary": values[k], "paper": self.paper,
                            "margin_scorers": {v: (scorers or {}).get(v) for j, v in enumerate(values) if j != k},
                            "margins": m.tolist()}))
        return summaries
