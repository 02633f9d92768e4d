"""DPO value vectors (DESIGN §1 "DPO (per value)"): one LoRA adapter θ_i trained on one value's pairs D_i.

    L_DPO = −E log σ(β [log π(y_w|x)/π_ref(y_w|x) − log π(y_l|x)/π_ref(y_l|x)])      (Rafailov et al. 2023, Eq.7)

The loss, the [chosen; rejected] batching and the reference (the same PEFT model with its adapter disabled)
are trl's `DPOTrainer`; this module chooses the settings, renders prompts the way generation does, and
writes the result as a value vector dir (PEFT adapter + `mva_vector.json`). Methods that add a loss term
(MVA's HSIC, the orthogonality baseline) pass their `DPOTrainer` subclass as `trainer_class`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import ConfigError, TrainConfig
from ..kinds import VERTICES
from ..models import render_prompts
from ..preference_data import PreferenceDataError, check_pairs, pairs_sha256
from .base import Datasets, MethodSettings, TrainingMethod, register_method
from .harness import (
    restore_terms, load_training_base, lora_config, run_identity, run_meta, save_adapter, train_resumable,
    trainer_arguments,
)


def train_dpo_vector(
    base_dir: str,
    pairs: list[dict[str, Any]],
    value: str,
    out_dir: Path,
    config: TrainConfig,
    base_fingerprint: str,
    method: str = "dpo",
    progress: bool = True,
    *,
    overwrite: bool = False,
    trainer_class: type | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    extra_meta: dict[str, Any] | None = None,
    init_adapter: str | Path | None = None,
    columns: dict[str, Sequence[float]] | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train one value vector θ_value by DPO with LoRA on `pairs` and save it as a value vector dir at `out_dir`.

    The reference π_ref is the base model (trl disables the adapter). `trainer_class` (a `trl.DPOTrainer`
    subclass) and `trainer_kwargs` let other methods add a loss term. Writes into a temp dir beside `out_dir`
    and renames it into place; an existing `out_dir` is refused unless `overwrite`. The base is loaded afresh
    from `base_dir` (trl and peft wrap and patch the model they train; a caller's loaded base stays untouched).
    Every `config.checkpoint_every` steps a checkpoint goes to `<out_dir>.partial/` with the run's identity
    (`run_identity`); rerunning the same run resumes from the latest one, another run's checkpoints are refused
    (ResumeMismatchError), and the dir is removed once the vector is written. `callbacks` are extra
    `TrainerCallback`s (tests use one to cut a run).
    Returns a summary: per-step losses (losses[k] is the batch loss before update k, so losses[0] = log 2 as
    LoRA's B starts at zero) and reward accuracies, seconds per step, pair counts, the written path.
    """
    import datasets  # heavy optional dependencies (trl, datasets): loaded when training starts
    from trl import DPOConfig, DPOTrainer

    if not value or not value.strip():
        raise ConfigError("value name is empty; name the value this vector is for, e.g. 'harmless'")
    check_pairs(pairs)
    out_dir = Path(out_dir)
    base = load_training_base(base_dir, base_fingerprint, out_dir, overwrite)
    model, tokenizer = base.model, base.tokenizer
    prompts = render_prompts(tokenizer, [p["prompt"] for p in pairs], config.system_prompt)
    # Plain-text completions: trl appends the EOS (ChatML's <|im_end|>), which is where generation stops.
    rows = [{"prompt": t, "chosen": p["chosen"], "rejected": p["rejected"]} for t, p in zip(prompts, pairs)]
    for name, column in (columns or {}).items():  # per-pair numbers a trainer subclass reads (dpo-lw's weights)
        assert len(column) == len(rows), f"column {name!r} has {len(column)} entries for {len(rows)} pairs"
        for row, x in zip(rows, column):
            row[name] = float(x)

    if init_adapter is not None:
        from peft import PeftModel  # heavy: loaded when training starts

        # trainable copy of the saved adapter; trl adds a frozen copy named "ref" as this stage's reference
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    n_used = 0

    def make_trainer(partial: Path, all_callbacks: list[Any]) -> Any:
        nonlocal n_used
        args = trainer_arguments(DPOConfig, config, partial, progress, loss_type=["sigmoid"],  # the DPO loss above
                                 num_train_epochs=config.num_train_epochs, truncation_mode="keep_start",
                                 eval_strategy="no", precompute_ref_log_probs=False)
        trainer = (trainer_class or DPOTrainer)(
            model=model, ref_model=None, args=args, train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer, peft_config=None if init_adapter is not None else lora_config(config),
            callbacks=all_callbacks, **(trainer_kwargs or {}),
        )
        n_used = len(trainer.train_dataset)
        if n_used == 0:
            raise PreferenceDataError(f"every prompt is at least max_length={config.max_length} tokens long, so no "
                                      "pair has a response left to train on; raise max_length or shorten the prompts")
        return trainer

    bars_were_off = datasets.are_progress_bars_disabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        run = train_resumable(make_trainer, out_dir, run_identity(value, method, config, pairs, base_fingerprint,
                                                                  trainer_class, extra_meta, init_adapter, columns),
                              value, progress=progress, callbacks=callbacks)
    finally:
        if not progress and not bars_were_off:
            datasets.enable_progress_bars()
    if run.resumed_step is not None and extra_meta:
        restore_terms(extra_meta, run.steps)
    meta = run_meta(run, value=value, method=method, base_dir=base_dir, base_fingerprint=base_fingerprint,
                    config=config)
    accuracies = meta["reward_accuracies"]
    meta.update({"data_sha256": pairs_sha256(pairs), "n_pairs": len(pairs), "n_pairs_used": n_used,
                 "final_reward_accuracy": accuracies[-1] if accuracies else None, **(extra_meta or {})})
    save_adapter(run, out_dir, meta, overwrite)
    return {
        "value": value, "method": method, "out_dir": str(out_dir), "losses": run.losses,
        "reward_accuracies": accuracies, "final_reward_accuracy": meta["final_reward_accuracy"],
        "seconds_per_step": meta["seconds_per_step"], "step_seconds": run.step_seconds,
        "train_seconds": run.train_seconds, "n_pairs": len(pairs), "n_pairs_used": n_used,
    }


def with_pair_columns(trainer_class: type, names: Sequence[str]) -> type:
    """`trainer_class` (a trl.DPOTrainer) keeping the per-pair number columns `names` (from train_dpo_vector's
    `columns`) through trl's column filter and collator: each batch then holds `names` as (B,) tensors."""
    class PairColumns(trainer_class):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            collate = self.data_collator

            def with_columns(examples: list[dict[str, Any]]) -> dict[str, Any]:
                batch = collate(examples)
                for name in names:
                    batch[name] = torch.tensor([float(e[name]) for e in examples])
                return batch

            self.data_collator = with_columns

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            self._signature_columns = [*self._signature_columns, *(n for n in names if n not in self._signature_columns)]

    return PairColumns


# ---- Registry entry ----

@register_method("dpo")
class DPO(TrainingMethod):
    """One LoRA value vector per value, trained by DPO against the base model; used alone at weight 1 (DPO-<value>)."""

    paper = "https://arxiv.org/abs/2305.18290"
    description = "DPO with LoRA: one value vector per value, reference = base model (paper rows DPO-<value>)"
    kind = VERTICES
    vectors_from = "mva-no-hsic"  # its vectors are these same per-value DPO vectors when vectors/dpo is absent

    def train_vectors(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                      base_fingerprint: str, settings: MethodSettings, *, progress: bool = True) -> list[dict[str, Any]]:
        """One vector per value into out_root/<value>/; values with a finished vector are skipped (no settings:
        β and the LoRA shape are the TrainConfig's)."""
        return [self.train(base_dir, pairs, value, Path(out_root) / value, config, base_fingerprint, progress=progress)
                for value, pairs in datasets.items()
                if not (Path(out_root) / value / "adapter_config.json").is_file()]

    def train(self, base_dir: str, pairs: list[dict[str, Any]], value: str, out_dir: Path, config: TrainConfig,
              base_fingerprint: str, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
        """One value's vector."""
        return train_dpo_vector(base_dir, pairs, value, out_dir, config, base_fingerprint, method=self.name,
                                progress=progress, overwrite=overwrite)
