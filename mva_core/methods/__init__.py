"""Training methods by name (DESIGN §1 table), mergekit-style: `@register_method("dpo")` on a class
(instantiated once) or a callable; each carries the `paper` it implements.

A method object has `name`, `paper`, `description` and `train(base_dir, pairs, value, out_dir, config,
base_fingerprint, ...)` returning a summary dict; methods built on DPO reuse `dpo.train_dpo_vector` and add
their loss term in a `DPOTrainer` subclass.

It also says how its candidates are composed from the vectors in `vectors/<vectors_from or name>/`:
`composition` is one of COMPOSITIONS. A method without vectors of its own (`soup`, `dpo-<value>`) reads
another method's (`vectors_from`): a candidate is identified by its content, so one stored candidate can be a
point of several methods (the `soup` point w = (0.5, 0.5) is also an `mva-no-hsic` point).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, TypeVar

from ..errors import MVAError

T = TypeVar("T")

Composition = Literal["extrapolation", "simplex", "vertices", "each", "conditioned"]
COMPOSITIONS: dict[str, str] = {
    "extrapolation": "w in [0, C]^n over one vector per value (MVA Eq.15)",
    "simplex": "w on the simplex, sum w = 1, over one vector per value (Rewarded Soups)",
    "vertices": "each value's vector alone at weight 1 (paper rows DPO-<value>)",
    "each": "every trained vector alone at weight 1 (one model per preference, or one model)",
    "conditioned": "one policy at weight 1 with the evaluation preference p in its prompt (MO-ODPO, MI-EPO)",
}

_REGISTRY: dict[str, Any] = {}


class UnknownMethodError(MVAError, ValueError):
    """No training method is registered under the requested name."""


def register_method(name: str) -> Callable[[T], T]:
    """Class/callable decorator: register it under `name`. It must carry a `paper` URL."""

    def register(obj: T) -> T:
        if not getattr(obj, "paper", None):
            raise TypeError(f"method {name!r} ({obj!r}) needs a `paper` attribute with the URL of what it implements")
        composition = getattr(obj, "composition", "extrapolation")
        if composition not in COMPOSITIONS:
            raise TypeError(f"method {name!r}: composition={composition!r}; choose one of {sorted(COMPOSITIONS)}")
        instance = obj() if isinstance(obj, type) else obj
        previous = _REGISTRY.get(name)
        if previous is not None and type(previous).__qualname__ != type(instance).__qualname__:
            raise ValueError(f"method name {name!r} is already registered to {previous!r}; pick another name")
        instance.name = name  # type: ignore[attr-defined]
        instance.composition = composition  # type: ignore[attr-defined]
        instance.vectors_from = getattr(obj, "vectors_from", None) or name  # type: ignore[attr-defined]
        _REGISTRY[name] = instance
        return obj

    return register


def get_method(name: str) -> Any:
    """The registered method `name`; an unknown name raises listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(
            f"unknown training method {name!r}; valid methods: {', '.join(sorted(_REGISTRY)) or '(none)'}"
        ) from None


def available_methods() -> dict[str, str]:
    """name -> one-line description, sorted by name."""
    return {name: _describe(_REGISTRY[name]) for name in sorted(_REGISTRY)}


def train_method(name: str, base: Any, datasets: dict[str, list[dict[str, Any]]], out_root: Any, config: Any, *,
                 progress: bool = True, store: Any = None, run_config: dict[str, Any] | None = None,
                 **settings: Any) -> dict[str, dict[str, Any]]:
    """Train registered method `name` on `datasets` (value -> preference pairs, in training order) into
    `out_root`, the way `python -m mva_core train` and `demo build` both do; finished vectors are skipped.

    Three kinds of method: `sequential` ones train all values in order (`train_sequence`, settings alpha/mode);
    ones with `train_all` train over all values at once (dpo-seqt, or one vector per preference: dpo-lw,
    modpo; settings such as preferences/scorers); the rest train one vector per value (`train`).
    `base` is a mva_core.models.BaseModel. With a `store` (mva_core.store.Store) the run is recorded (kind
    "train": `run_config`, then per vector dir its losses, reward accuracies and penalty terms, or "stopped").
    Returns that per-vector log: {dir name: {losses, reward_accuracies, hsic_terms, ortho_terms, ...}}.
    """
    from pathlib import Path

    method = get_method(name)
    out_root = Path(out_root)
    run_id = store.start_run("train", run_config or {"method": name, "values": list(datasets),
                                                     "train_config": config.to_dict(), "out": str(out_root)},
                             name) if store is not None else None
    try:
        _dispatch(method, base, datasets, out_root, config, progress, settings)
    except BaseException as exc:
        if run_id is not None:
            store.finish_run(run_id, "stopped", {"error": repr(exc)})
        raise
    log = vector_logs(out_root)
    if run_id is not None:
        store.finish_run(run_id, "done", log)
    return log


def vector_logs(out_root: Any) -> dict[str, dict[str, Any]]:
    """Per value-vector dir under `out_root`: the training curves its mva_vector.json holds."""
    import json
    from pathlib import Path

    from ..vectors import META_FILE

    out: dict[str, dict[str, Any]] = {}
    for d in sorted(p for p in Path(out_root).iterdir() if (p / META_FILE).is_file()):
        meta = json.loads((d / META_FILE).read_text())
        out[d.name] = {k: meta.get(k) for k in ("losses", "reward_accuracies", "hsic_terms", "ortho_terms",
                                                 "weight_consistency_terms", "scalarised_reward_margins",
                                                 "seconds_per_step", "preference")}
    return out


def _dispatch(method: Any, base: Any, datasets: dict[str, list[dict[str, Any]]], out_root: Any, config: Any,
              progress: bool, settings: dict[str, Any]) -> None:
    if getattr(method, "sequential", False):
        method.train_sequence(base.path, datasets, out_root, config, base.fingerprint, progress=progress,
                              **{k: settings[k] for k in ("alpha", "mode") if k in settings})
    elif hasattr(method, "train_all"):
        method.train_all(base.path, datasets, out_root, config, base.fingerprint, progress=progress, **settings)
    else:
        for value, pairs in datasets.items():
            if not (out_root / value / "adapter_config.json").is_file():
                method.train(base.path, pairs, value, out_root / value, config, base.fingerprint, progress=progress)


def _describe(method: Any) -> str:
    text = getattr(method, "description", None) or (method.__doc__ or "").strip()
    return text.splitlines()[0] if text else ""


# Importing a method module registers it; keep these at the bottom (they import register_method from here).
from . import dpo  # noqa: E402,F401
from . import mva  # noqa: E402,F401
from . import soup  # noqa: E402,F401
from . import dpo_seqt  # noqa: E402,F401
from . import dpo_lw  # noqa: E402,F401
from . import modpo  # noqa: E402,F401
from . import conditioned  # noqa: E402,F401
