"""DPO value vectors (DESIGN §1 "DPO (per value)"): one LoRA adapter θ_i trained on one value's pairs D_i.

    L_DPO = −E log σ(β [log π(y_w|x)/π_ref(y_w|x) − log π(y_l|x)/π_ref(y_l|x)])      (Rafailov et al. 2023, Eq.7)

The loss, the [chosen; rejected] batching and the reference (the same PEFT model with its adapter disabled)
are trl's `DPOTrainer`; this module chooses the settings, renders prompts the way generation does, and
writes the result as a value vector dir (PEFT adapter + `mva_vector.json`). Methods that add a loss term
(MVA's HSIC, the orthogonality baseline) pass their `DPOTrainer` subclass as `trainer_class`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import shutil
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import MVAError
from ..config import ConfigError, Record
from ..data import DataFileError, read_jsonl
from ..models import chat_prompt, load_base
from ..vectors import META_FILE
from . import register_method

PAIR_FIELDS = ("prompt", "chosen", "rejected")


class PreferenceDataError(DataFileError):
    """Preference pairs are unreadable or malformed; the message names the file and line (or the pair)."""


class TrainingError(MVAError, RuntimeError):
    """Training could not run or produced an unusable vector (diverged, wrong base); nothing was written."""


class OutputExistsError(MVAError, FileExistsError):
    """The value vector dir already exists and `overwrite` was not given."""


class ResumeMismatchError(TrainingError):
    """`<out_dir>.partial/` holds checkpoints of another run (other data, config, base, method or init adapter)."""


@dataclass
class TrainConfig(Record):
    """Settings for training one value vector by DPO with LoRA. Defaults are the CPU_SMALL preset."""

    beta: float = field(default=0.1, metadata={"help": "DPO β: the KL strength towards the base (paper: 0.1)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank r of every target layer."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA α; the update is (α / r) · B A."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input during training."})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "v_proj"],
        metadata={"help": "Names of the linear layers that get a LoRA adapter (not lm_head)."},
    )
    learning_rate: float = field(default=5e-4, metadata={"help": "AdamW peak learning rate (linear decay to 0)."})
    max_steps: int = field(default=40, metadata={"help": "Optimizer steps; -1 = run num_train_epochs instead."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the pairs; used only when max_steps = -1."})
    per_device_batch_size: int = field(default=2, metadata={"help": "Preference pairs per forward (2x rows: chosen + rejected)."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Forwards accumulated per optimizer step."})
    max_length: int = field(default=256, metadata={"help": "Tokens kept per prompt+response (the end is cut)."})
    seed: int = field(default=0, metadata={"help": "Seed for LoRA init and data order."})
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message for the chat template; must match DecodingConfig.system_prompt."}
    )
    use_cpu: bool = field(default=True, metadata={"help": "Train on CPU even if a GPU is visible (the embedded default is CPU-sized)."})
    checkpoint_every: int = field(
        default=10, metadata={"help": "Optimizer steps between resumable checkpoints in <out_dir>.partial/ "
                                      "(an interrupted run resumes from the latest one)."})

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str) or not all(isinstance(m, str) for m in self.target_modules):
            raise ConfigError(f"target_modules={self.target_modules!r}: give a list of layer names, e.g. ['q_proj', 'v_proj']")
        self.target_modules = list(self.target_modules)
        if not self.target_modules:
            raise ConfigError("target_modules is empty: name at least one linear layer, e.g. ['q_proj', 'v_proj']")
        if "lm_head" in self.target_modules:
            raise ConfigError("target_modules contains 'lm_head': trl computes log-probs from lm_head.weight directly, "
                              "so an adapter there is never trained; remove it")
        for name in ("beta", "lora_alpha", "learning_rate", "num_train_epochs"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name}={v!r}: must be a positive finite number")
        for name in ("lora_r", "per_device_batch_size", "gradient_accumulation_steps", "checkpoint_every"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be an integer >= 1")
        if not (0.0 <= self.lora_dropout < 1.0):
            raise ConfigError(f"lora_dropout={self.lora_dropout}: must be in [0, 1)")
        if not (isinstance(self.max_steps, int) and (self.max_steps >= 1 or self.max_steps == -1)):
            raise ConfigError(f"max_steps={self.max_steps!r}: give a step count >= 1, or -1 to train num_train_epochs")
        if not (isinstance(self.max_length, int) and self.max_length >= 8):
            raise ConfigError(f"max_length={self.max_length!r}: must be an integer >= 8 tokens")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ConfigError(f"seed={self.seed!r}: must be an integer >= 0")
        if self.max_steps != -1 and self.num_train_epochs != 1.0:
            warnings.warn(f"num_train_epochs={self.num_train_epochs} is ignored because max_steps={self.max_steps}; "
                          "set max_steps=-1 to train by epochs", stacklevel=3)

    # Added after vectors were stored, and it does not change what is trained: left out of the record at its
    # default, so stored vectors' `train_config` (compared on resume, e.g. by mva) still matches.
    _added_fields = {"checkpoint_every": 10}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items()
                if k not in self._added_fields or v != self._added_fields[k]}


# From the released MVA code (github.com/HeFei-X/MVA, config.py/dpo.py): r=64, α=128, q/k/v/o, dropout 0.05,
# batch 2, 3 epochs. It sets no learning rate or max_length, so it ran at the defaults of its trl version
# (TrainingArguments' 5e-5; 512 tokens, as far as we know); we could not check them against the paper's text.
PAPER = TrainConfig(lora_r=64, lora_alpha=128, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                    learning_rate=5e-5, max_steps=-1, num_train_epochs=3.0, per_device_batch_size=2, max_length=512)
# Minutes on 2 CPU cores for a 135M model: a small rank and few steps, with a 10x higher lr so 40 steps move the policy.
CPU_SMALL = TrainConfig(lora_r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                        learning_rate=5e-4, max_steps=40, per_device_batch_size=2, max_length=256)


# ---- Preference data ----

def load_preference_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Pairs from a trl-style JSONL (`prompt`, `chosen`, `rejected`, all non-empty strings; extra fields kept).

    Raises PreferenceDataError naming the file, the 1-based line and the fix.
    """
    try:
        records = read_jsonl(path, PAIR_FIELDS)
    except DataFileError as exc:
        raise PreferenceDataError(str(exc)) from None
    check_pairs(records, source=str(path))
    return records


def check_pairs(pairs: Sequence[dict[str, Any]], source: str = "pairs") -> None:
    """Every pair has non-empty string prompt/chosen/rejected and chosen != rejected."""
    if not pairs:
        raise PreferenceDataError(f"{source}: no preference pairs; give at least one {{prompt, chosen, rejected}} record")
    for i, pair in enumerate(pairs, start=1):
        for key in PAIR_FIELDS:
            if not isinstance(pair.get(key), str) or not pair[key].strip():
                raise PreferenceDataError(f"{source}: pair {i} has no text in field {key!r}; "
                                          f"every pair needs non-empty strings {list(PAIR_FIELDS)}")
        if pair["chosen"] == pair["rejected"]:
            # An identical pair has zero DPO gradient: it is a data bug (e.g. a scoring tie), not a preference.
            raise PreferenceDataError(f"{source}: pair {i} has identical chosen and rejected text; remove it")


def pairs_sha256(pairs: Sequence[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON of the pairs' prompt/chosen/rejected (file formatting does not matter)."""
    blob = json.dumps([[p[k] for k in PAIR_FIELDS] for p in pairs], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def render_prompts(tokenizer: Any, prompts: Sequence[str], system_prompt: str | None = None) -> list[str]:
    """Prompt strings that trl's tokenizer call turns into exactly the ids `generate.py` feeds the model.

    Generation tokenizes `chat_prompt(...)` with `add_special_tokens=False`; trl tokenizes with the default
    (True). Where the tokenizer adds a BOS that the template already wrote (Llama-3 style), drop the
    template's copy; any other difference is refused rather than trained on a context generation never sees.
    """
    texts = [chat_prompt(tokenizer, p, system_prompt) for p in prompts]
    probe = texts[0]
    want = tokenizer(probe, add_special_tokens=False)["input_ids"]
    if tokenizer(probe)["input_ids"] == want:
        return texts
    bos = getattr(tokenizer, "bos_token", None)
    if bos and probe.startswith(bos) and tokenizer(probe[len(bos):])["input_ids"] == want:
        return [t[len(bos):] if t.startswith(bos) else t for t in texts]
    raise TrainingError("the tokenizer adds special tokens that the chat template does not write, so training would "
                        "see other prompt tokens than generation; use a tokenizer whose chat template writes its BOS")


# ---- Training ----

def _step_clock():
    """A TrainerCallback recording each optimizer step's wall time (transformers imported lazily)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    return StepClock()


def _no_checkpointing(config_class: type) -> dict[str, bool]:
    """Activation checkpointing off, under the name this transformers version reads (renamed in 5.x)."""
    from dataclasses import fields

    names = {f.name for f in fields(config_class)}
    return {"activation_checkpointing": False} if "activation_checkpointing" in names else {"gradient_checkpointing": False}


# ---- Resumable checkpoints ----

PARTIAL_SUFFIX = ".partial"
RUN_FILE = "mva_run.json"  # the run identity inside <out_dir>.partial/


def partial_dir(out_dir: str | Path) -> Path:
    """Where an unfinished vector's trainer checkpoints live: `<out_dir>.partial/`, beside the vector dir."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + PARTIAL_SUFFIX)


def _adapter_sha256(adapter_dir: str | Path) -> str:
    """sha256 over a PEFT adapter dir's config and weight files (names and bytes)."""
    h = hashlib.sha256()
    for f in sorted(Path(adapter_dir).glob("adapter_*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def run_identity(value: str, method: str, config: TrainConfig, pairs: Sequence[dict[str, Any]], base_fingerprint: str,
                 trainer_class: type | None = None, extra_meta: dict[str, Any] | None = None,
                 init_adapter: str | Path | None = None,
                 columns: dict[str, Sequence[float]] | None = None) -> dict[str, Any]:
    """What a checkpoint must have been trained on to be resumed (everything but the checkpoint cadence)."""
    train_config = {k: v for k, v in config.to_dict().items() if k != "checkpoint_every"}
    return json.loads(json.dumps({
        "value": value, "method": method, "base_fingerprint": base_fingerprint, "data_sha256": pairs_sha256(pairs),
        "n_pairs": len(pairs), "train_config": train_config,
        "trainer": None if trainer_class is None else f"{trainer_class.__module__}.{trainer_class.__qualname__}",
        "extra_meta": extra_meta or {},  # e.g. mva's alpha, HSIC mode and earlier vectors' hashes
        "init_adapter_sha256": None if init_adapter is None else _adapter_sha256(init_adapter),
        "columns": {k: [float(x) for x in v] for k, v in (columns or {}).items()},
    }, sort_keys=True, default=str))


def _checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def _checkpoints(partial: Path) -> list[Path]:
    """transformers' `checkpoint-<step>` dirs in `partial`, by step."""
    found = [p for p in partial.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()]
    return sorted(found, key=_checkpoint_step)


def open_partial(partial: Path, identity: dict[str, Any]) -> Path | None:
    """Create `partial` with `identity`, or check the stored one; the latest complete checkpoint, if any.

    Checkpoints of another run are refused (ResumeMismatchError); a dir without checkpoints holds nothing to
    lose and is taken over. A checkpoint is complete once its trainer_state.json (written last by
    transformers) parses; newer, incomplete ones (a kill mid-save) are removed so that checkpoint rotation
    cannot keep them over the good one.
    """
    run_file = partial / RUN_FILE
    has_checkpoints = partial.is_dir() and bool(_checkpoints(partial))
    if has_checkpoints:
        if not run_file.is_file():
            raise ResumeMismatchError(f"{partial} holds checkpoints but no {RUN_FILE}, so they cannot be checked "
                                      "against this run; delete that dir to train from the start")
        try:
            stored = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResumeMismatchError(f"{run_file} is unreadable ({exc}); delete {partial} to train from the start") from None
        diff = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
        if diff:
            raise ResumeMismatchError(
                f"{partial} holds checkpoints of another run (differs in {', '.join(diff)}); delete that dir to "
                "train this run from the start, or rerun with the original data and settings to resume it")
    else:
        partial.mkdir(parents=True, exist_ok=True)
        tmp = run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(identity, indent=2, sort_keys=True, ensure_ascii=False))
        tmp.replace(run_file)
        return None
    complete: list[Path] = []
    for ckpt in _checkpoints(partial):
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
            complete.append(ckpt)
        except (OSError, ValueError):
            pass
    latest = complete[-1] if complete else None
    for ckpt in _checkpoints(partial):
        if ckpt not in complete and (latest is None or _checkpoint_step(ckpt) > _checkpoint_step(latest)):
            shutil.rmtree(ckpt, ignore_errors=True)
    return latest


def _restore_terms(extra_meta: dict[str, Any], log_history: Sequence[dict[str, Any]]) -> None:
    """After a resume, refill extra_meta's `<name>_terms` lists (a trainer's per-step penalty log, e.g. mva's
    hsic_terms) from the log history, which holds the steps before the checkpoint too; in place, so the
    caller's list sees them."""
    for key, terms in extra_meta.items():
        name = key[: -len("_terms")]
        if key.endswith("_terms") and isinstance(terms, list):
            restored = [float(h[name]) for h in log_history if name in h and "loss" in h]
            if len(restored) >= len(terms):
                terms[:] = restored


def run_resumable(trainer: Any, resume_from: Path | None, name: str) -> tuple[int | None, float]:
    """`trainer.train()`, from checkpoint `resume_from` when given (said on stderr); (resumed step, seconds)."""
    resumed_step = None
    if resume_from is not None:
        resumed_step = _checkpoint_step(resume_from)
        print(f"resuming {name} from step {resumed_step} ({resume_from})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    return resumed_step, time.perf_counter() - start


def load_training_base(base_dir: str, base_fingerprint: str, out_dir: Path, overwrite: bool) -> Any:
    """The base to train on, loaded afresh (trainers wrap and patch it); refuses an existing `out_dir` unless
    `overwrite`, and a base whose weights are not `base_fingerprint`."""
    if Path(out_dir).exists() and not overwrite:
        raise OutputExistsError(f"{out_dir} already exists; pick another output dir or pass overwrite=True to replace it")
    base = load_base(base_dir)
    if base.fingerprint != base_fingerprint:
        raise TrainingError(f"base_fingerprint {base_fingerprint!r} does not match the weights in {base_dir} "
                            f"({base.fingerprint}); pass mva_core.models.weights_fingerprint of the base you train on")
    return base


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
    import datasets
    import peft
    import torch
    import transformers
    import trl
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from ..atomic import atomic_dir

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
        from peft import PeftModel

        # trainable copy of the saved adapter; trl adds a frozen copy named "ref" as this stage's reference
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    lora = None if init_adapter is not None else LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM")
    clock = _step_clock()
    bars_were_off = datasets.are_progress_bars_disabled()
    if not progress:
        datasets.disable_progress_bars()
    # Trainer checkpoints go beside the vector and outlive a crash: a rerun of the same run resumes from them.
    partial = partial_dir(out_dir)
    resume_from = open_partial(partial, run_identity(value, method, config, pairs, base_fingerprint, trainer_class,
                                                     extra_meta, init_adapter, columns))
    try:
        args = DPOConfig(
            output_dir=str(partial), beta=config.beta, loss_type=["sigmoid"],  # sigmoid = the DPO loss above
            learning_rate=config.learning_rate, max_steps=config.max_steps, num_train_epochs=config.num_train_epochs,
            per_device_train_batch_size=config.per_device_batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            max_length=config.max_length, truncation_mode="keep_start", seed=config.seed, data_seed=config.seed,
            # fp32 on CPU: trl defaults to bf16 and gradient checkpointing, both slower or unsupported here.
            bf16=False, fp16=False, use_cpu=config.use_cpu, **_no_checkpointing(DPOConfig),
            report_to=[], save_strategy="steps", save_steps=config.checkpoint_every, save_total_limit=1,
            eval_strategy="no", dataloader_num_workers=0,
            logging_steps=1, disable_tqdm=not progress, precompute_ref_log_probs=False,
        )
        trainer = (trainer_class or DPOTrainer)(
            model=model, ref_model=None, args=args, train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer, peft_config=lora, callbacks=[clock, *callbacks], **(trainer_kwargs or {}),
        )
        if not progress:  # with tqdm off, transformers prints every log dict instead
            trainer.remove_callback(transformers.PrinterCallback)
        n_used = len(trainer.train_dataset)
        if n_used == 0:
            raise PreferenceDataError(f"every prompt is at least max_length={config.max_length} tokens long, so no "
                                      "pair has a response left to train on; raise max_length or shorten the prompts")
        resumed_step, train_seconds = run_resumable(trainer, resume_from, value)
    finally:
        if not progress and not bars_were_off:
            datasets.enable_progress_bars()

    # log_history is restored from a resumed checkpoint, so it covers every step of the run.
    steps = [h for h in trainer.state.log_history if "loss" in h and "step" in h]
    if resumed_step is not None and extra_meta:
        _restore_terms(extra_meta, steps)
    losses = [float(h["loss"]) for h in steps]
    accuracies = [float(h["rewards/accuracies"]) for h in steps if "rewards/accuracies" in h]
    peft_model = trainer.model
    lora_finite = all(torch.isfinite(p).all() for n, p in peft_model.named_parameters() if "lora_" in n)
    if not losses or not all(math.isfinite(x) for x in losses) or not lora_finite:
        shutil.rmtree(partial, ignore_errors=True)  # resuming would only replay the divergence
        raise TrainingError(f"training of {value!r} diverged (losses {losses[:5]}…); nothing was written; "
                            "lower learning_rate")

    meta = {
        "value": value, "method": method, "base_model": str(base_dir), "base_fingerprint": base_fingerprint,
        "train_config": config.to_dict(), "trainer": f"{type(trainer).__module__}.{type(trainer).__qualname__}",
        "data_sha256": pairs_sha256(pairs), "n_pairs": len(pairs), "n_pairs_used": n_used,
        "steps": len(losses), "losses": losses, "reward_accuracies": accuracies,
        "final_reward_accuracy": accuracies[-1] if accuracies else None,
        "seconds_per_step": statistics.fmean(clock.seconds) if clock.seconds else None,
        "train_seconds": train_seconds, "resumed_from_step": resumed_step,
        "versions": {"trl": trl.__version__, "peft": peft.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(extra_meta or {}),
    }
    with atomic_dir(out_dir, force=overwrite, kind="value_vector") as tmp:
        peft_model.save_pretrained(str(tmp), safe_serialization=True, selected_adapters=["default"])  # not "ref"
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    shutil.rmtree(partial, ignore_errors=True)  # the vector is in place: its checkpoints are done with
    return {
        "value": value, "method": method, "out_dir": str(out_dir), "losses": losses,
        "reward_accuracies": accuracies, "final_reward_accuracy": meta["final_reward_accuracy"],
        "seconds_per_step": meta["seconds_per_step"], "step_seconds": list(clock.seconds),
        "train_seconds": train_seconds, "n_pairs": len(pairs), "n_pairs_used": n_used,
    }


def with_pair_columns(trainer_class: type, names: Sequence[str]) -> type:
    """`trainer_class` (a trl.DPOTrainer) keeping the per-pair number columns `names` (from train_dpo_vector's
    `columns`) through trl's column filter and collator: each batch then holds `names` as (B,) tensors."""
    import torch

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
class DPO:
    """One LoRA value vector per value, trained by DPO against the base model; used alone at weight 1 (DPO-<value>)."""

    paper = "https://arxiv.org/abs/2305.18290"
    description = "DPO with LoRA: one value vector per value, reference = base model (paper rows DPO-<value>)"
    config_class = TrainConfig
    composition = "vertices"
    vectors_from = "mva-no-hsic"  # its vectors are these same per-value DPO vectors when vectors/dpo is absent

    def train(self, base_dir: str, pairs: list[dict[str, Any]], value: str, out_dir: Path, config: TrainConfig,
              base_fingerprint: str, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
        return train_dpo_vector(base_dir, pairs, value, out_dir, config, base_fingerprint, method=self.name,  # type: ignore[attr-defined]
                                progress=progress, overwrite=overwrite)
