"""Training methods by name (DESIGN §1 table), mergekit-style: `@register_method("dpo")` on a `TrainingMethod`
subclass (instantiated once); each carries the `paper` it implements and its composition `kind`
(mva_core.kinds). Methods built on DPO reuse `dpo.train_dpo_vector` and add their loss term in a
`DPOTrainer` subclass; every method trains through `harness` (trainer settings, resume, finite check, save).

Importing this package loads no trainer (no torch): the method modules register on the first `get_method` or
`available_methods`, and `setting_flags` reads the settings dataclasses of mva_core.method_settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

from ..config import META_FILE, TrainConfig
from .base import (
    Datasets, MethodSettings, SettingFlag, TrainingMethod, UnknownMethodError, UnknownSettingError, available_methods,
    get_method, register_method, setting_flags, settings_classes,
)

if TYPE_CHECKING:
    from ..models import BaseModel
    from ..store import Store

__all__ = ["JobExecutor", "MethodSettings", "SettingFlag", "TrainJob", "TrainingMethod", "UnknownMethodError",
           "UnknownSettingError", "available_methods", "get_method", "register_method", "setting_flags",
           "settings_classes", "train_method", "vector_logs"]
T = TypeVar("T")


class JobExecutor(Protocol):
    """Where a training job runs: the `call` of the one executor interface (sweep.Executor), declared here, below
    sweep, so that `train_method` can name it. sweep.LocalExecutor runs the job in this process; executor.RayExecutor
    as one Ray task with its CPU/GPU resources."""

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, computed where this executor runs jobs; its result, or its exception."""
        ...


@dataclass(frozen=True)
class TrainJob:
    """One training run's work as an executor runs it: `method`'s vectors for `datasets` into `out_root` (finished
    ones kept). Picklable, so Ray can send it; its paths must be ones the executor's machine sees (on a cluster, a
    workspace on a shared file system)."""

    method: str
    base_dir: str
    datasets: dict[str, list[dict[str, Any]]]
    out_root: Path
    config: TrainConfig
    base_fingerprint: str
    settings: MethodSettings
    progress: bool = True

    def __call__(self) -> None:
        get_method(self.method).train_vectors(self.base_dir, self.datasets, self.out_root, self.config,
                                               self.base_fingerprint, self.settings, progress=self.progress)

    def __str__(self) -> str:
        return f"{self.method} training into {self.out_root}"


def train_method(name: str, base: BaseModel, datasets: Datasets, out_root: str | Path, config: TrainConfig, *,
                 progress: bool = True, store: Store | None = None, run_config: dict[str, Any] | None = None,
                 run_name: str | None = None, executor: JobExecutor | None = None,
                 **settings: Any) -> dict[str, dict[str, Any]]:
    """Train registered method `name` on `datasets` (value -> preference pairs, in training order) into
    `out_root`, the way `python -m mva_core train` and `demo build` both do; finished vectors are skipped.

    `settings` are the fields of the method's `settings_class` (alpha/penalty/mode... for the sequential methods,
    preferences/scorers for one vector per preference...); a name the method does not have raises
    UnknownSettingError listing the ones it has, before anything is trained. With a `store` the run is recorded (kind "train":
    `run_config`, then per vector dir its losses, reward accuracies and penalty terms, or "stopped").
    Returns that per-vector log: {dir name: {losses, reward_accuracies, hsic_terms, ortho_terms, ...}}.
    `run_name` is the method the stored run is recorded under when the run has a name of its own (a demo's
    `mva-alpha1`, a run of `mva`; default `name`).
    `executor` runs the training (a `TrainJob`) through its `call`: None or sweep.LocalExecutor in this process, with
    the progress bar; executor.RayExecutor as a Ray task, which writes the vectors under `out_root` (so a path its
    worker sees) and prints a line when it starts and one when it ends. The run row is opened and closed here
    alone, and a job that fails marks it failed with the job's error.
    """
    method = get_method(name)
    checked = method.make_settings(settings)  # refuses unknown or bad settings before a run is recorded
    out_root = Path(out_root)
    job = TrainJob(name, base.path, dict(datasets), out_root, config, base.fingerprint, checked, progress)

    def train() -> None:
        if executor is None:
            job()
        else:
            executor.call(job)

    if store is None:
        train()
        return vector_logs(out_root)
    with store.run("train", run_config or {"method": name, "values": list(datasets), "train_config": config.to_dict(),
                                           "out": str(out_root)}, run_name or name) as run:
        train()
        run.log.update(vector_logs(out_root))
    return run.log


def vector_logs(out_root: str | Path) -> dict[str, dict[str, Any]]:
    """Per value-vector dir under `out_root`: the training curves its mva_vector.json holds."""
    out: dict[str, dict[str, Any]] = {}
    for d in sorted(p for p in Path(out_root).iterdir() if (p / META_FILE).is_file()):
        meta = json.loads((d / META_FILE).read_text())
        out[d.name] = {k: meta.get(k) for k in ("losses", "reward_accuracies", "hsic_terms", "ortho_terms",
                                                 "weight_consistency_terms", "scalarised_reward_margins",
                                                 "seconds_per_step", "preference")}
    return out
