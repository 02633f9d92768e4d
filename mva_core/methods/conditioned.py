"""Preference-conditioned policies (DESIGN §1 rows `mo-odpo`, `mi-epo`): ONE LoRA policy whose prompt carries
the preference vector w, trained online.

MO-ODPO (Gupta et al. 2025, arXiv:2503.00295), per training prompt x:
  1. draw w ~ Dirichlet(α·1) and write it into the system message (`condition_text`);
  2. sample two responses y₁, y₂ ~ π(· | x, w) from the current policy;
  3. score both with every value's reward model r_i and rank them by the scalarised reward
         R_w(x, y) = Σ_i w_i · (r_i(x, y) − μ_i) / σ_i                                         (scalarisation)
     (μ_i, σ_i: mean and sd of r_i over the value data's chosen and rejected responses, so that scorers on
     different scales weigh as w says); chosen y⁺ = the higher, rejected y⁻ = the lower;
  4. DPO on that on-policy pair, with the conditioned prompt and π_ref = the base model (adapter disabled):
         L_DPO = −log σ(β [log π(y⁺|x,w)/π_ref(y⁺|x,w) − log π(y⁻|x,w)/π_ref(y⁻|x,w)]).
Steps 2–4 are trl's `OnlineDPOTrainer`; the scalarised reward is its reward function.

MI-EPO (Xie et al. 2026, arXiv:2607.01392) maximises the mutual information between responses, feedback and
the preference vector, so that responses under different w are distinguishable. We implement its
weight-consistency term as DESIGN §1 states it (β_w = 0.01; β_w = 0 is MO-ODPO), in OUR formulation — the
paper's exact routing loss was not available to us offline:
         L = L_DPO + β_w · L_wc,
         L_wc = −log σ(β [log π(y⁺|x,w)/π_ref(y⁺|x,w) − log π(y⁺|x,w̄)/π_ref(y⁺|x,w̄)])            (weight consistency)
with w̄ = w reversed (the mirrored preference: (0.2, 0.8) → (0.8, 0.2)): the response chosen for w must be
likelier under w than under the opposite trade-off, a contrastive lower bound on I(y⁺; w | x).

Candidates of a conditioned policy are the policy at weight 1 with the evaluation preference vectors p
(MI-EPO; `pareto.preference_vectors`) in its prompt: the composition kind `kinds.CONDITIONED`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..conditioning import PreferenceWeights, condition_text, quantise
from ..config import ConfigError, TrainConfig
from ..kinds import CONDITIONED
from ..method_settings import ConditionedSettings, MIEPOSettings, check_conditioning
from ..models import render_prompts, sequence_logps
from ..preference_data import check_pairs
from ..scorers import get_scorer
from .base import Datasets, TrainingMethod, get_method, register_method
from .harness import load_training_base, lora_config, run_identity, run_meta, save_adapter, train_resumable, trainer_arguments

# trl ships OnlineDPOTrainer under trl.experimental and warns on every import; we use it knowingly (its
# training_step and reward-function hooks are what MO-ODPO needs) and test it at the pinned trl version.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

POLICY_DIR = "policy"  # vectors/<method>/policy/: the one conditioned policy
PREFERENCE = "preference"  # dataset column: the row's w
QUESTION = "question"  # dataset column: the raw user prompt, for the scorers


def conditioned_prompt(tokenizer: Any, question: str, preference: Sequence[float], value_names: Sequence[str],
                       system_prompt: str | None = None) -> str:
    """The prompt string a conditioned policy trains on for `question` under w: the chat template with
    `condition_text` as its system message, as `models.render_prompts` renders it for trl's tokenizer call."""
    return render_prompts(tokenizer, [question], condition_text(preference, value_names, system_prompt))[0]


def mirrored(preference: Sequence[float]) -> list[float]:
    """w̄: the opposite trade-off (w reversed), the counterfactual condition of the weight-consistency term."""
    return list(preference)[::-1]


# ---- Rewards ----

@dataclass
class Scalariser:
    """R_w(x, y) = Σ_i w_i (r_i(x, y) − μ_i) / σ_i over the values' scorers (module docstring, step 3)."""

    scorers: dict[str, str]  # value -> scorer spec, in value order
    mean: list[float]
    sd: list[float]

    @classmethod
    def fit(cls, datasets: Mapping[str, list[dict[str, Any]]], scorers: Mapping[str, str]) -> "Scalariser":
        """μ_i, σ_i of each value's scorer over every pair's chosen and rejected response (all values' pairs)."""
        missing = [v for v in datasets if v not in scorers]
        if missing:
            raise ConfigError(f"no scorer for value(s) {missing}: a conditioned policy is trained online and needs a "
                              "reward model per value; give scorers={value: SCORER} (the CLI reads workspace.json)")
        pairs = [p for ps in datasets.values() for p in ps]
        prompts = [p["prompt"] for p in pairs] * 2
        responses = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
        mean, sd = [], []
        for value in datasets:
            r = get_scorer(scorers[value]).score(prompts, responses)
            r = r[np.isfinite(r)]
            if len(r) < 2:
                raise ConfigError(f"scorer {scorers[value]!r} gave fewer than 2 finite scores on value {value!r}'s "
                                  "data; its rewards cannot be normalised")
            mean.append(float(r.mean()))
            sd.append(float(r.std()) or 1.0)
        return cls({v: scorers[v] for v in datasets}, mean, sd)

    def per_value(self, questions: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Normalised rewards (N, n_values); a non-finite score becomes the worst normalised reward of its column."""
        cols = []
        for (value, spec), mu, s in zip(self.scorers.items(), self.mean, self.sd):
            z = (np.asarray(get_scorer(spec).score(list(questions), list(completions)), dtype=float) - mu) / s
            bad = ~np.isfinite(z)
            if bad.any():
                z[bad] = np.min(z[~bad]) if (~bad).any() else 0.0
            cols.append(z)
        return np.stack(cols, axis=1)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        """trl reward-function signature: the batch's extra columns arrive as kwargs (repeated for both samples)."""
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        Z = self.per_value(kwargs[QUESTION], texts)
        W = np.asarray(kwargs[PREFERENCE], dtype=float)  # (N, n_values)
        return [float(x) for x in (W * Z).sum(axis=1)]


# ---- Trainer ----

@functools.cache
def conditioned_trainer() -> type:
    """trl's OnlineDPOTrainer (MO-ODPO steps 2–4) plus MI-EPO's weight-consistency term when beta_w > 0."""
    from trl.experimental.online_dpo import OnlineDPOTrainer  # heavy optional dependency: loaded on first use

    class ConditionedTrainer(OnlineDPOTrainer):
        def __init__(self, *args: Any, beta_w: float, value_names: Sequence[str], system_prompt: str | None,
                     **kwargs: Any):
            self.beta_w = float(beta_w)
            self.value_names = list(value_names)
            self.system_prompt = system_prompt
            self._last: dict[str, Any] | None = None
            super().__init__(*args, **kwargs)
            if self.beta_w > 0:  # trl averages every stats list at each log: no empty ones
                self.stats["weight_consistency"] = []

        def _calculate_rewards_from_functions(self, prompts, completions, completion_ids_list, **reward_kwargs):
            rewards = super()._calculate_rewards_from_functions(prompts, completions, completion_ids_list, **reward_kwargs)
            # rows are [sample 1 of every prompt; sample 2 of every prompt]: keep what L_wc needs
            self._last = {"completion_ids": completion_ids_list, "rewards": rewards.detach().cpu(),
                          "question": reward_kwargs[QUESTION], PREFERENCE: reward_kwargs[PREFERENCE]}
            return rewards

        def _chosen(self) -> tuple[list[str], list[list[float]], list[list[int]]]:
            """(question, w, chosen completion ids) per prompt of the last batch, as trl ranked them."""
            last = self._last
            B = len(last["rewards"]) // 2
            first, second = last["rewards"].split(B)
            out_q, out_w, out_ids = [], [], []
            eos = set(self.eos_token_ids)
            for i in range(B):
                k = i if bool(first[i] >= second[i]) else i + B  # trl: ties go to the first sample
                ids = []
                for t in last["completion_ids"][k]:
                    if t == self._tokenizer.pad_token_id and t not in eos:
                        break
                    ids.append(t)
                    if t in eos:
                        break
                out_q.append(last["question"][k])
                out_w.append(list(last[PREFERENCE][k]))
                out_ids.append(ids)
            return out_q, out_w, out_ids

        def weight_consistency(self, model: Any) -> "torch.Tensor":
            """L_wc of the module docstring on the last batch's chosen responses."""
            questions, W, ids = self._chosen()
            tok = self._tokenizer

            def prompt_ids(ws: list[list[float]]) -> list[list[int]]:
                texts = [conditioned_prompt(tok, q, w, self.value_names, self.system_prompt)
                         for q, w in zip(questions, ws)]
                return tok(texts)["input_ids"]

            own, other = prompt_ids(W), prompt_ids([mirrored(w) for w in W])
            pad = tok.pad_token_id
            logp = sequence_logps(model, own + other, ids + ids, pad)  # (2B,)
            with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():
                ref = sequence_logps(model, own + other, ids + ids, pad)
            ratio_own, ratio_other = (logp - ref).chunk(2)
            return -F.logsigmoid(self.beta * (ratio_own - ratio_other)).mean()

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)  # L_DPO, already backpropagated
            if self.beta_w > 0:
                term = self.weight_consistency(model)
                scaled = self.beta_w * term / self.args.gradient_accumulation_steps
                self.accelerator.backward(scaled)  # gradients add up with L_DPO's before the optimizer step
                self.stats["weight_consistency"].append(term.item())
                loss = loss + scaled.detach()
            return loss

    ConditionedTrainer.__qualname__ = "ConditionedTrainer"
    return ConditionedTrainer


# ---- Training ----

def training_rows(datasets: Mapping[str, list[dict[str, Any]]], n_rows: int, alpha: float, seed: int) -> list[dict[str, Any]]:
    """n_rows (prompt, w) rows: the values' distinct prompts in turn, each with its own w ~ Dirichlet(α·1)
    (quantised to what the prompt shows)."""
    prompts = list(dict.fromkeys(p["prompt"] for ps in datasets.values() for p in ps))
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.full(len(datasets), float(alpha)), size=n_rows)
    return [{QUESTION: prompts[i % len(prompts)], PREFERENCE: quantise(W[i])} for i in range(n_rows)]


def trainer_factory(base: Any, datasets: Mapping[str, list[dict[str, Any]]], config: TrainConfig,
                    scalarise: Scalariser, *, beta_w: float, dirichlet_alpha: float, max_new_tokens: int,
                    temperature: float, progress: bool) -> Callable[[Path, list[Any]], Any]:
    """make_trainer(partial, callbacks): the `ConditionedTrainer` of one run on `base` (a loaded `models` base),
    its training rows ((prompt, w) per `training_rows`, rendered by `conditioned_prompt`) and a fresh LoRA;
    `train_conditioned_policy` trains with it, `bench/weight_consistency.py` measures its two terms."""
    import datasets as hf_datasets  # heavy optional dependencies (trl, datasets): loaded when training starts
    from trl.experimental.online_dpo import OnlineDPOConfig

    values = list(datasets)
    n_rows = config.max_steps * config.per_device_batch_size * config.gradient_accumulation_steps
    rows = training_rows(datasets, n_rows, dirichlet_alpha, config.seed)
    texts = [conditioned_prompt(base.tokenizer, r[QUESTION], r[PREFERENCE], values, config.system_prompt) for r in rows]
    rows = [{"prompt": t, **r} for t, r in zip(texts, rows)]

    def make_trainer(partial: Path, all_callbacks: list[Any]) -> Any:
        args = trainer_arguments(OnlineDPOConfig, config, partial, progress, loss_type="sigmoid",
                                 max_new_tokens=max_new_tokens, temperature=temperature)
        return conditioned_trainer()(
            model=base.model, reward_funcs=[scalarise], args=args, train_dataset=hf_datasets.Dataset.from_list(rows),
            processing_class=base.tokenizer, peft_config=lora_config(config), callbacks=all_callbacks,
            beta_w=beta_w, value_names=values, system_prompt=config.system_prompt,
        )

    return make_trainer


def train_conditioned_policy(
    base_dir: str,
    datasets: Mapping[str, list[dict[str, Any]]],
    out_dir: Path,
    config: TrainConfig,
    base_fingerprint: str,
    scorers: Mapping[str, str],
    *,
    method: str,
    beta_w: float,
    dirichlet_alpha: float = 1.0,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    progress: bool = True,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train one preference-conditioned LoRA policy (module docstring) and save it as a value-vector dir.

    The prompts are the distinct prompts of `datasets` (the values' preference data: only their prompts and,
    for the reward normalisation, their responses are used); `scorers` maps each value to its reward model.
    `config.max_steps` optimizer steps of `per_device_batch_size` prompts each; checkpoints and resume as
    `dpo.train_dpo_vector` (`<out_dir>.partial/`). Returns per-step losses, the MI-EPO term, timings.
    """
    if not datasets:
        raise ConfigError("no values given; a conditioned policy needs at least two values' data")
    for value, pairs in datasets.items():
        check_pairs(pairs, source=f"value {value!r}")
    check_conditioning(beta_w, dirichlet_alpha)
    if config.max_steps < 1:
        raise ConfigError(f"max_steps={config.max_steps}: an online method needs a step count (it has no epochs "
                          "over fixed data); set max_steps >= 1")
    out_dir = Path(out_dir)
    base = load_training_base(base_dir, base_fingerprint, out_dir, overwrite)
    values = list(datasets)
    scalarise = Scalariser.fit(datasets, scorers)
    settings = {"beta_w": beta_w, "dirichlet_alpha": dirichlet_alpha, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "scorers": scalarise.scorers, "mean": scalarise.mean, "sd": scalarise.sd}
    all_pairs = [p for ps in datasets.values() for p in ps]
    make_trainer = trainer_factory(base, datasets, config, scalarise, beta_w=beta_w, dirichlet_alpha=dirichlet_alpha,
                                   max_new_tokens=max_new_tokens, temperature=temperature, progress=progress)
    identity = run_identity("+".join(values), method, config, all_pairs, base_fingerprint, conditioned_trainer(),
                            settings)
    run = train_resumable(make_trainer, out_dir, identity, method, progress=progress, callbacks=callbacks)
    terms = run.curve("weight_consistency")
    margins = run.curve("objective/scores_margin")
    meta = run_meta(run, value=method, method=method, base_dir=base_dir, base_fingerprint=base_fingerprint,
                    config=config)
    meta.update({CONDITIONED.name: True,  # the flag CONDITIONED.is_policy reads
                 "values": values, "conditioning": PreferenceWeights().to_dict(),  # how it reads p (its weights)
                 "condition_example": condition_text([1 / len(values)] * len(values), values, config.system_prompt),
                 **settings, "weight_consistency_terms": terms, "scalarised_reward_margins": margins,
                 "paper": get_method(method).paper})
    save_adapter(run, out_dir, meta, overwrite)
    return {"out_dir": str(out_dir), "losses": run.losses, "weight_consistency_terms": terms,
            "scalarised_reward_margins": margins, "step_seconds": run.step_seconds, "train_seconds": run.train_seconds}


MO_ODPO_PAPER = "https://arxiv.org/abs/2503.00295"
MI_EPO_PAPER = "https://arxiv.org/abs/2607.01392"


class _Conditioned(TrainingMethod):
    kind = CONDITIONED
    settings_class = ConditionedSettings

    @property
    def beta_w(self) -> float:
        """β_w when none is given (the settings class's default)."""
        return self.settings_class().beta_w

    def train_vectors(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                      base_fingerprint: str, settings: ConditionedSettings, *,
                      progress: bool = True) -> list[dict[str, Any]]:
        """The one policy into out_root/policy/; a finished one is kept (a rerun resumes or skips)."""
        out = Path(out_root) / POLICY_DIR
        if (out / "adapter_config.json").is_file():
            return []
        s = settings
        return [train_conditioned_policy(base_dir, datasets, out, config, base_fingerprint, s.scorers or {},
                                         method=self.name, beta_w=s.beta_w, dirichlet_alpha=s.dirichlet_alpha,
                                         max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                         progress=progress)]


@register_method("mo-odpo")
class MOODPO(_Conditioned):
    """MO-ODPO: one policy conditioned on w in its prompt, online DPO on the w-scalarised reward."""

    paper = MO_ODPO_PAPER
    description = "MO-ODPO: one policy with w in its prompt, online DPO ranking its own samples by w·r"


@register_method("mi-epo")
class MIEPO(_Conditioned):
    """MI-EPO: MO-ODPO plus the weight-consistency term β_w·L_wc (our formulation, module docstring)."""

    paper = MI_EPO_PAPER
    description = "MI-EPO: MO-ODPO + weight-consistency term (β_w = 0.01; our reading of the paper's MI objective)"
    settings_class = MIEPOSettings
