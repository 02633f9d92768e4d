"""Training methods by name (DESIGN §1 table), mergekit-style: `@register_method("dpo")` on a `TrainingMethod`
subclass (instantiated once); each carries the `paper` it implements and its composition `kind`
(mva_core.kinds). Methods built on DPO reuse `dpo.train_dpo_vector` and add their loss term in a
`DPOTrainer` subclass; every method trains through `harness` (trainer settings, resume, finite check, save).

Importing this package loads no trainer (no torch): the method modules register on the first `get_method` or
`available_methods`, and `setting_flags` reads the settings dataclasses of mva_core.method_settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import META_FILE, TrainConfig
from .base import (
    Datasets, MethodSettings, SettingFlag, TrainingMethod, UnknownMethodError, UnknownSettingError, available_methods,
    get_method, register_method, setting_flags, settings_classes,
)

if TYPE_CHECKING:
    from ..models import BaseModel
    from ..store import Store

__all__ = ["MethodSettings", "SettingFlag", "TrainingMethod", "UnknownMethodError", "UnknownSettingError", "available_methods",
           "get_method", "register_method", "setting_flags", "settings_classes", "train_method", "vector_logs"]


def train_method(name: str, base: BaseModel, datasets: Datasets, out_root: str | Path, config: TrainConfig, *,
                 progress: bool = True, store: Store | None = None, run_config: dict[str, Any] | None = None,
                 run_name: str | None = None, **settings: Any) -> dict[str, dict[str, Any]]:
    """Train registered method `name` on `datasets` (value -> preference pairs, in training order) into
    `out_root`, the way `python -m mva_core train` and `demo build` both do; finished vectors are skipped.

    `settings` are the fields of the method's `settings_class` (alpha/penalty/mode... for the sequential methods,
    preferences/scorers for one vector per preference...); a name the method does not have raises
    UnknownSettingError listing the ones it has, before anything is trained. With a `store` the run is recorded (kind "train":
    `run_config`, then per vector dir its losses, reward accuracies and penalty terms, or "stopped").
    Returns that per-vector log: {dir name: {losses, reward_accuracies, hsic_terms, ortho_terms, ...}}.
    `run_name` is the method the stored run is recorded under when the run has a name of its own (a demo's
    `mva-alpha1`, a run of `mva`; default `name`).
    """
    method = get_method(name)
    checked = method.make_settings(settings)  # refuses unknown or bad settings before a run is recorded
    out_root = Path(out_root)
    if store is None:
        method.train_vectors(base.path, datasets, out_root, config, base.fingerprint, checked, progress=progress)
        return vector_logs(out_root)
    with store.run("train", run_config or {"method": name, "values": list(datasets), "train_config": config.to_dict(),
                                           "out": str(out_root)}, run_name or name) as run:
        method.train_vectors(base.path, datasets, out_root, config, base.fingerprint, checked, progress=progress)
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
