"""The training harness every method shares (DPO vectors, conditioned policies): trainer arguments, resume
from step checkpoints, the divergence/finite check, metadata with versions, the atomic save.

A run writes trl/transformers checkpoints to `<out_dir>.partial/` with its identity (`run_identity`); a rerun of
the same run resumes from the latest complete one, another run's are refused. The finished adapter goes into
`out_dir` by an atomic rename, with `mva_vector.json`, and the partial dir is removed.
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..atomic import VALUE_VECTOR, atomic_dir
from ..config import TrainConfig
from ..errors import MVAError, TrainingError
from ..models import load_base, portable_base_name
from ..preference_data import pairs_sha256
from ..vectors import META_FILE, adapter_sha256


class OutputExistsError(MVAError, FileExistsError):
    """The value vector dir already exists and `overwrite` was not given."""


class ResumeMismatchError(TrainingError):
    """`<out_dir>.partial/` holds checkpoints of another run (other data, config, base, method or init adapter)."""


# ---- Trainer parts ----

def step_clock() -> Any:
    """A TrainerCallback recording each optimizer step's wall time (transformers imported lazily)."""
    from transformers import TrainerCallback  # heavy: loaded when training starts

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    return StepClock()


def no_checkpointing(args_class: type) -> dict[str, bool]:
    """Activation checkpointing off, under the name this transformers version reads (renamed in 5.x)."""
    names = {f.name for f in fields(args_class)}
    return {"activation_checkpointing": False} if "activation_checkpointing" in names else {"gradient_checkpointing": False}


# ---- Resumable checkpoints ----

PARTIAL_SUFFIX = ".partial"
RUN_FILE = "mva_run.json"  # the run identity inside <out_dir>.partial/


def partial_dir(out_dir: str | Path) -> Path:
    """Where an unfinished vector's trainer checkpoints live: `<out_dir>.partial/`, beside the vector dir."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + PARTIAL_SUFFIX)


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
        "init_adapter_sha256": None if init_adapter is None else adapter_sha256(init_adapter),
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


def restore_terms(extra_meta: dict[str, Any], log_history: Sequence[dict[str, Any]]) -> None:
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




# ---- One run: arguments, resume, finite check, save ----

def trainer_arguments(args_class: type, config: TrainConfig, partial: Path, progress: bool, **specific: Any) -> Any:
    """`args_class` (trl's DPOConfig, OnlineDPOConfig, SFTConfig) with the settings every method shares: `config`'s
    optimisation (β where the trainer has one), checkpoints every `config.checkpoint_every` steps into `partial`,
    a log entry per step; `specific` adds the trainer's own."""
    beta = {"beta": config.beta} if "beta" in {f.name for f in fields(args_class)} else {}  # SFT has no β
    return args_class(
        output_dir=str(partial), **beta, learning_rate=config.learning_rate, max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, max_length=config.max_length,
        seed=config.seed, data_seed=config.seed,
        # fp32 on CPU: trl defaults to bf16 and gradient checkpointing, both slower or unsupported here.
        bf16=False, fp16=False, use_cpu=config.use_cpu, **no_checkpointing(args_class),
        report_to=[], save_strategy="steps", save_steps=config.checkpoint_every, save_total_limit=1,
        logging_steps=1, disable_tqdm=not progress, dataloader_num_workers=0, **specific,
    )


def lora_config(config: TrainConfig) -> Any:
    """peft's LoraConfig of a fresh adapter on `config.target_modules`."""
    from peft import LoraConfig  # heavy (imports transformers): loaded when training starts

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM")


@dataclass
class TrainedRun:
    """A finished, finite training run: its trainer and the per-step log (covering resumed steps too)."""

    trainer: Any
    steps: list[dict[str, Any]]  # log_history entries of optimizer steps
    resumed_step: int | None
    train_seconds: float
    step_seconds: list[float] = field(default_factory=list)  # this process's steps only

    def curve(self, key: str) -> list[float]:
        """The logged `key` (e.g. "rewards/accuracies") of every step that has it."""
        return [float(h[key]) for h in self.steps if key in h]

    @property
    def losses(self) -> list[float]:
        return self.curve("loss")


def train_resumable(make_trainer: Callable[[Path, list[Any]], Any], out_dir: Path, identity: dict[str, Any],
                    name: str, *, progress: bool, callbacks: Sequence[Any] = ()) -> TrainedRun:
    """Train the trainer `make_trainer(partial_dir, callbacks)` builds, resuming from `<out_dir>.partial/` when it
    holds checkpoints of this `identity`; a run whose loss or LoRA weights are not finite raises TrainingError
    (its checkpoints are removed: resuming would only replay the divergence)."""
    import transformers  # heavy: loaded when training starts

    partial = partial_dir(out_dir)
    resume_from = open_partial(partial, identity)
    clock = step_clock()
    trainer = make_trainer(partial, [clock, *callbacks])
    if not progress:  # with tqdm off, transformers prints every log dict instead
        trainer.remove_callback(transformers.PrinterCallback)
    resumed_step, train_seconds = run_resumable(trainer, resume_from, name)
    # log_history is restored from a resumed checkpoint, so it covers every step of the run.
    steps = [h for h in trainer.state.log_history if "loss" in h and "step" in h]
    run = TrainedRun(trainer, steps, resumed_step, train_seconds, list(clock.seconds))
    losses = run.losses
    lora_finite = all(torch.isfinite(p).all() for n, p in trainer.model.named_parameters() if "lora_" in n)
    if not losses or not all(math.isfinite(x) for x in losses) or not lora_finite:
        shutil.rmtree(partial, ignore_errors=True)
        raise TrainingError(f"training of {name!r} diverged (losses {losses[:5]}…); nothing was written; "
                            "lower learning_rate")
    return run


def run_meta(run: TrainedRun, *, value: str, method: str, base_dir: str, base_fingerprint: str,
             config: TrainConfig) -> dict[str, Any]:
    """The mva_vector.json fields every trained vector has: what it was trained on, its curves and timings."""
    return {
        "value": value, "method": method, "base_model": portable_base_name(base_dir), "base_fingerprint": base_fingerprint,
        "train_config": config.to_dict(),
        "trainer": f"{type(run.trainer).__module__}.{type(run.trainer).__qualname__}",
        "steps": len(run.losses), "losses": run.losses, "reward_accuracies": run.curve("rewards/accuracies"),
        "seconds_per_step": statistics.fmean(run.step_seconds) if run.step_seconds else None,
        "train_seconds": run.train_seconds, "resumed_from_step": run.resumed_step,
    }


def save_adapter(run: TrainedRun, out_dir: Path, meta: dict[str, Any], overwrite: bool = False) -> None:
    """The trained adapter and `meta` (plus library versions and the time) into `out_dir`, atomically; the
    run's checkpoints are removed once it is in place."""
    import peft  # heavy, and already loaded by the trainer
    import transformers
    import trl

    meta = {**meta,
            "versions": {"trl": trl.__version__, "peft": peft.__version__, "transformers": transformers.__version__,
                         "torch": torch.__version__},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    # peft writes base_model_name_or_path from the model it wrapped (here a cache dir): the portable name instead
    run.trainer.model.peft_config["default"].base_model_name_or_path = meta["base_model"]
    with atomic_dir(out_dir, force=overwrite, kind=VALUE_VECTOR) as tmp:
        run.trainer.model.save_pretrained(str(tmp), safe_serialization=True, selected_adapters=["default"])  # not "ref"
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    shutil.rmtree(partial_dir(out_dir), ignore_errors=True)
