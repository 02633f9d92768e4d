"""Rewards-in-Context (DESIGN §1 row `ric`): Yang et al., ICML 2024, https://arxiv.org/abs/2402.10207, with the
released code https://github.com/YangRui2015/RiC read for the details below (not copied).

ONE LoRA policy, fine-tuned offline by supervised learning on responses with their own per-value scores in the
prompt, then steered at inference by writing the scores one wants:

  1. data: the distinct (prompt, response) pairs of every value's preference data, chosen and rejected alike
     (RiC's `prepare_dataset_with_rewards.py` takes both responses of each HH-RLHF pair);
  2. scores: every response scored by every value's scorer r_i, normalised per value over that data,
         s_i(x, y) = (r_i(x, y) − μ_i) / σ_i          (μ_i, σ_i: mean and population sd, as RiC's prepare script)
     and written to 1 decimal into the prompt: "<warmth> 0.4 <brevity> -1.2" (`conditioning.reward_text`);
  3. SFT with trl's `SFTTrainer`: −log π(y | x, s(x, y)) on the response tokens and EOS only (RiC: trl's
     DataCollatorForCompletionOnlyLM; here trl's completion_only_loss on prompt–completion rows);
  4. inference: for a preference p the desired scores f(p) of RiC's preference-to-reward mapping
     (`conditioning.ric_desired_rewards`) go into the prompt the same way, [low_i, high_i] = the range of value
     i's normalised training scores. The mapping is stored with the policy (`conditioning.RewardsInContext` in its
     mva_vector.json), so sweep, Explore and export write what it was trained to read; it is evaluated at MI-EPO's
     preference vectors like every conditioned policy (`kinds.CONDITIONED`).

What differs from RiC, and what is left out:
  - the scores' place: RiC appends them to the user's turn, before "\\n\\nAssistant:"; we write them as the chat
    template's system message (after any workspace system prompt), the slot generation, export cards and MO-ODPO's
    conditioning use, so one evaluation path serves every conditioned policy. The tags are the value names
    (`<warmth>`) instead of RiC's `<rm1_score>`.
  - the mapping's range: RiC's LLM evaluation script takes [low, high] as the min and max of 50 000 standard-normal
    draws (about ±4.2, the span of z-scores over its ~160k responses); with a few hundred responses that asks for
    scores the policy never saw, so we take the min and max of the policy's own normalised training scores.
  - the mapping (`mapping`, chosen at training, stored with the policy): `linf` (default) is the default of RiC's
    `map_rewards_from_preference`, min(N·p_i, 1) of the way from low_i to high_i, so the most preferred value asks
    for its maximum; `l2` (p_i / ‖p‖₂ of the way) is what the released LLM evaluation script passes; `quantile`
    (Q_i(min(N·p_i, 1)), the quantile of value i's training scores) is what its text-to-image inference script
    does, and suits a skewed scorer (the demo's brevity z-scores: median −0.2, 99th percentile 4.7, max 9.1, so
    linf asks for z ≥ 1.2, which 5.7 % of its 283 responses reach, at any p_brevity ≥ 0.1). The paper's own text
    was not available to us offline: all three are read from the released code.
  - measured on the demo (SmolLM2-135M, its 283 responses, CPU_SMALL with lr 1e-3, 72 steps of 4 = one epoch,
    16 validation prompts): the policy does not yet follow the scores in its prompt with either linf or quantile
    (Spearman of p_warmth and mean warmth over MI-EPO's 11 p: −0.06 for linf; brevity 0.38–0.41 at every p).
  - left out: RiC's online stage (multi-objective rejection sampling: generate with sampled desired scores, keep
    the responses above the 0.7 quantile on some value, fine-tune again), its optional score rebalancing
    (`balancing_rewards`, unused by its main script), its 8-bit base and its LoRA (r 64, α 128): `ric` trains with
    the same TrainConfig as every other method.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..conditioning import INNER_RANGE, RIC_MAPPINGS, RewardsInContext, RicMapping, conditioning_from_meta, reward_text
from ..config import ConfigError, TrainConfig
from ..kinds import CONDITIONED
from ..method_settings import RiCSettings
from ..models import render_prompts
from ..preference_data import check_pairs
from ..scorers import get_scorer
from .base import Datasets, TrainingMethod, register_method
from .conditioned import POLICY_DIR
from .harness import (load_training_base, lora_config, run_identity, run_meta, save_adapter, train_resumable,
                      trainer_arguments)

RIC_PAPER = "https://arxiv.org/abs/2402.10207"


# ---- Data: responses with their scores ----

def scored_responses(datasets: Mapping[str, list[dict[str, Any]]],
                     scorers: Mapping[str, str]) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The distinct (prompt, response) pairs of every value's pairs (chosen and rejected, first-seen order) and their
    raw scores (N, n_values): column i is value i's scorer (step 1–2 of the module docstring)."""
    missing = [v for v in datasets if v not in scorers]
    if missing:
        raise ConfigError(f"no scorer for value(s) {missing}: RiC writes every value's score into the prompt and "
                          "needs a reward model per value; give scorers={value: SCORER} (the CLI reads workspace.json)")
    rows = list(dict.fromkeys((p["prompt"], y) for ps in datasets.values() for p in ps
                              for y in (p["chosen"], p["rejected"])))
    prompts, responses = [x for x, _ in rows], [y for _, y in rows]
    R = np.stack([np.asarray(get_scorer(scorers[v]).score(prompts, responses), dtype=float) for v in datasets],
                 axis=1)  # (N, n_values)
    return rows, R


def normalised_scores(R: np.ndarray, values: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(Z, mean, sd, keep): Z = round((R − μ) / σ, 1) per value over the rows whose every score is finite (`keep`);
    the scores RiC writes into the prompt."""
    keep = np.isfinite(R).all(axis=1)
    if keep.sum() < 2:
        raise ConfigError(f"only {int(keep.sum())} response(s) have a finite score on every value; RiC needs at least "
                          "2 to normalise them: check the scorers on this data")
    mean, sd = R[keep].mean(axis=0), R[keep].std(axis=0)
    flat = [v for v, s in zip(values, sd) if not s > 0]
    if flat:
        raise ConfigError(f"the scorer of value(s) {flat} gives every response the same score, so RiC cannot condition "
                          "on it; use a scorer that tells these responses apart, or leave the value out")
    return np.round((R - mean) / sd, 1) + 0.0, mean, sd, keep


# ---- Training ----

def train_ric_policy(
    base_dir: str,
    datasets: Mapping[str, list[dict[str, Any]]],
    out_dir: Path,
    config: TrainConfig,
    base_fingerprint: str,
    scorers: Mapping[str, str],
    *,
    mapping: RicMapping = "linf",
    inner: Sequence[float] = INNER_RANGE,
    method: str = "ric",
    progress: bool = True,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train the one RiC policy (module docstring, steps 1–3) and save it as a value-vector dir whose
    mva_vector.json carries its conditioning (step 4).

    `config.max_steps` optimizer steps of `per_device_batch_size` responses (max_steps = -1: `num_train_epochs`
    over them); checkpoints and resume as every method (`<out_dir>.partial/`). Returns the per-step losses, the
    number of responses trained on and timings.
    """
    import datasets as hf_datasets  # heavy optional dependencies (trl, datasets): loaded when training starts
    from trl import SFTConfig, SFTTrainer

    if not datasets:
        raise ConfigError("no values given; RiC needs at least one value's preference data")
    for value, pairs in datasets.items():
        check_pairs(pairs, source=f"value {value!r}")
    if mapping not in RIC_MAPPINGS:
        raise ConfigError(f"mapping={mapping!r}: choose one of {list(RIC_MAPPINGS)} "
                          "(RiC's preference-to-reward mapping)")
    out_dir = Path(out_dir)
    base = load_training_base(base_dir, base_fingerprint, out_dir, overwrite)
    values = list(datasets)
    pairs, R = scored_responses(datasets, scorers)
    Z, mean, sd, keep = normalised_scores(R, values)
    if not keep.all():
        warnings.warn(f"{int((~keep).sum())} of {len(keep)} responses have a non-finite score and are left out of "
                      "RiC's training data", stacklevel=2)
    conditioning = RewardsInContext.from_scores(values, Z[keep], mapping, inner)
    rows = [{"prompt": render_prompts(base.tokenizer, [x], conditioning_prompt(z, values, config.system_prompt))[0],
             "completion": y}  # trl appends the EOS to the completion
            for (x, y), z, k in zip(pairs, Z, keep) if k]

    # what the weights depend on (the run identity a resume checks); the mapping only steers evaluation
    settings = {"scorers": {v: scorers[v] for v in values}, "mean": [float(m) for m in mean],
                "sd": [float(s) for s in sd], "n_responses": len(rows)}

    def make_trainer(partial: Path, all_callbacks: list[Any]) -> Any:
        args = trainer_arguments(SFTConfig, config, partial, progress, num_train_epochs=config.num_train_epochs,
                                 completion_only_loss=True, packing=False)
        return SFTTrainer(model=base.model, args=args, train_dataset=hf_datasets.Dataset.from_list(rows),
                          processing_class=base.tokenizer, peft_config=lora_config(config), callbacks=all_callbacks)

    all_pairs = [p for ps in datasets.values() for p in ps]
    identity = run_identity("+".join(values), method, config, all_pairs, base_fingerprint, SFTTrainer, settings)
    run = train_resumable(make_trainer, out_dir, identity, method, progress=progress, callbacks=callbacks)
    meta = run_meta(run, value=method, method=method, base_dir=base_dir, base_fingerprint=base_fingerprint,
                    config=config)
    meta.update({CONDITIONED.name: True,  # the flag CONDITIONED.is_policy reads; `conditioning` says how p is read
                 "values": values, **settings, "conditioning": conditioning.to_dict(),
                 "condition_example": conditioning.text([1 / len(values)] * len(values), values, config.system_prompt),
                 "token_accuracies": run.curve("mean_token_accuracy"), "paper": RIC_PAPER})
    save_adapter(run, out_dir, meta, overwrite)
    return {"out_dir": str(out_dir), "losses": run.losses, "n_responses": len(rows), "conditioning": conditioning,
            "step_seconds": run.step_seconds, "train_seconds": run.train_seconds}


def conditioning_prompt(scores: Sequence[float], values: Sequence[str], system_prompt: str | None) -> str:
    """The system message of a training row: the response's own scores (RiC's prompt relabelling)."""
    text = reward_text(scores, values)
    return f"{system_prompt}\n{text}" if system_prompt else text


@register_method("ric")
class RiC(TrainingMethod):
    """RiC: one policy, SFT on responses with their per-value scores in the prompt; steered by desired scores."""

    paper = RIC_PAPER
    description = ("RiC: one policy, SFT on responses with their scores in the prompt; evaluated with RiC's desired "
                   "scores for each p (offline stage only)")
    kind = CONDITIONED
    settings_class = RiCSettings

    def train_vectors(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                      base_fingerprint: str, settings: RiCSettings, *, progress: bool = True) -> list[dict[str, Any]]:
        """The one policy into out_root/policy/; a finished one is kept (a rerun resumes or skips)."""
        out = Path(out_root) / POLICY_DIR
        if (out / "adapter_config.json").is_file():
            return []
        return [train_ric_policy(base_dir, datasets, out, config, base_fingerprint, settings.scorers or {},
                                 mapping=settings.mapping, inner=settings.inner, method=self.name, progress=progress)]

    def restate(self, out_root: Path, settings: RiCSettings) -> bool:
        """Give the trained policy at out_root/policy/ the evaluation settings `settings` names (mapping, inner
        range) without retraining: the weights do not depend on them (SFT reads each response's own scores), the
        desired scores for p do. Its stored quantiles of the training scores give the new targets. True if its
        mva_vector.json changed; its candidates made with the old targets must then be forgotten (their prompts
        differ, their vectors and p do not: `demo.forget_stale_runs`)."""
        out = Path(out_root) / POLICY_DIR
        meta_file = out / "mva_vector.json"
        if not meta_file.is_file():
            return False
        meta = json.loads(meta_file.read_text())
        old = conditioning_from_meta(meta)
        if not isinstance(old, RewardsInContext):
            return False
        new = RewardsInContext(old.values, old.low, old.high, settings.mapping, old.quantiles, tuple(settings.inner))
        if new == old:
            return False
        values = list(old.values)
        meta.update(conditioning=new.to_dict(), condition_example=new.text([1 / len(values)] * len(values), values),
                    restated_from=old.to_dict() | {"quantiles": "(unchanged)"})
        tmp = meta_file.with_name(meta_file.name + ".partial")
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, meta_file)
        return True
