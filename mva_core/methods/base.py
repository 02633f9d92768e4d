"""The method interface and its registry (mergekit's `MergeMethod` + registry): name -> one instance.

Each method module subclasses `TrainingMethod` and registers it with `@register_method("name")`; the class
carries the `paper` it implements. This module imports nothing of `methods/`, so every method module can
import it without a cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from ..config import TrainConfig
from ..errors import MVAError, TrainingError
from ..kinds import EXTRAPOLATION, CompositionKind, get_kind

Datasets = Mapping[str, list[dict[str, Any]]]  # value -> its preference pairs, in training order
M = TypeVar("M", bound=type)


class UnknownMethodError(MVAError, ValueError):
    """No training method is registered under the requested name."""


class TrainingMethod:
    """A training method of the DESIGN §1 table.

    `kind` says how its candidates are composed from the vectors in `vectors/<vectors_from or name>/`; a method
    without vectors of its own (`soup`, `dpo-<value>`) reads another method's (`vectors_from`): a candidate is
    identified by its content, so one stored candidate can be a point of several methods. `settings` names the
    keyword settings `train_all` reads (the CLI passes just those).
    """

    name: str = ""  # set by register_method
    paper: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: CompositionKind = EXTRAPOLATION
    vectors_from: str = ""  # set by register_method: its own name unless the class names another method
    config_class: ClassVar[type] = TrainConfig
    settings: ClassVar[tuple[str, ...]] = ()

    @property
    def composition(self) -> str:
        """The name of its kind (what workspace rows store)."""
        return self.kind.name

    def train_all(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                  base_fingerprint: str, *, progress: bool = True, **settings: Any) -> list[dict[str, Any]]:
        """Train this method's vectors for `datasets` into `out_root` (finished ones are kept, so a rerun resumes);
        a summary per vector trained. The one training entry point."""
        raise TrainingError(f"method {self.name!r} has no trainer: its vectors are placed in the workspace by hand "
                            f"(`python -m mva_core init --vectors {self.name}=NAME:DIR`); train another method")


_REGISTRY: dict[str, TrainingMethod] = {}


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register one instance under `name`. The class must carry a `paper` URL; a plain class
    (not a TrainingMethod: vectors a user brings) gets the interface's defaults, and may name its kind as
    `composition = "<kind name>"`."""

    def register(cls: M) -> M:
        if not getattr(cls, "paper", None):
            raise TypeError(f"method {name!r} ({cls!r}) needs a `paper` attribute with the URL of what it implements")
        kind = cls.__dict__.get("composition")
        kind = get_kind(kind) if isinstance(kind, str) else getattr(cls, "kind", EXTRAPOLATION)
        if not isinstance(kind, CompositionKind):
            raise TypeError(f"method {name!r}: kind={kind!r} is not a mva_core.kinds.CompositionKind")
        if not issubclass(cls, TrainingMethod):
            cls_impl = type(cls.__name__, (cls, TrainingMethod), {"__doc__": cls.__doc__, "__module__": cls.__module__})
        else:
            cls_impl = cls
        instance = cls_impl()
        previous = _REGISTRY.get(name)
        if previous is not None and type(previous).__qualname__ != type(instance).__qualname__:
            raise ValueError(f"method name {name!r} is already registered to {previous!r}; pick another name")
        instance.name = name
        instance.kind = kind
        instance.vectors_from = getattr(cls, "vectors_from", "") or name
        _REGISTRY[name] = instance
        return cls

    return register


def get_method(name: str) -> TrainingMethod:
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


def _describe(method: TrainingMethod) -> str:
    text = method.description or (type(method).__doc__ or "").strip()
    return text.splitlines()[0] if text else ""
