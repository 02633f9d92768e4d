"""The method interface and its registry (mergekit's `MergeMethod` + registry): name -> one instance.

Each method module subclasses `TrainingMethod` and registers it with `@register_method("name")`; the class
carries the `paper` it implements and its `settings_class`, a `MethodSettings` dataclass (peft's `LoraConfig`
style, in the torch-free mva_core.method_settings) that `train_all` builds from its keyword settings, refusing
unknown ones; `python -m mva_core train` generates its flags from those fields. The built-in method modules (which
load torch) are imported on the first look-up (`get_method`, `available_methods`), not with this package, so the
flags (`setting_flags`, from `method_settings.SETTINGS`) are listed without them. This module imports nothing of
`methods/` at import time, so every method module can import it without a cycle.
"""

from __future__ import annotations

import importlib
import types
import typing
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping, TypeVar

from ..config import ConfigError, TrainConfig, parse_weights
from ..errors import MVAError, TrainingError
from ..kinds import EXTRAPOLATION, CompositionKind, get_kind
from ..method_settings import SETTINGS, MethodSettings

Datasets = Mapping[str, list[dict[str, Any]]]  # value -> its preference pairs, in training order
M = TypeVar("M", bound=type)


class UnknownMethodError(MVAError, ValueError):
    """No training method is registered under the requested name."""


class UnknownSettingError(ConfigError):
    """A training method was given a setting its settings dataclass has no field for (e.g. a typo)."""


class TrainingMethod:
    """A training method of the DESIGN §1 table.

    `kind` says how its candidates are composed from the vectors in `vectors/<vectors_from or name>/`; a method
    without vectors of its own (`soup`, `dpo-<value>`) reads another method's (`vectors_from`): a candidate is
    identified by its content, so one stored candidate can be a point of several methods. `settings_class` holds
    the keyword settings `train_all` takes (`settings` lists their names); variants of one algorithm (mva, ortho,
    mva-no-hsic) are one class with different settings defaults, as mergekit's TIES/DARE are.
    """

    name: str = ""  # set by register_method
    paper: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: CompositionKind = EXTRAPOLATION
    vectors_from: str = ""  # set by register_method: its own name unless the class names another method
    settings_class: ClassVar[type[MethodSettings]] = MethodSettings

    @property
    def composition(self) -> str:
        """The name of its kind (what workspace rows store)."""
        return self.kind.name

    @property
    def settings(self) -> tuple[str, ...]:
        """The names of the keyword settings `train_all` takes, in field order."""
        return tuple(f.name for f in fields(self.settings_class))

    def make_settings(self, given: Mapping[str, Any] | None = None, /, **more: Any) -> MethodSettings:
        """This method's settings from `given` and `more` (the rest at their defaults); a name that is not a field
        raises UnknownSettingError listing the known ones, a bad value ConfigError (the dataclass's checks)."""
        given = {**(given or {}), **more}
        unknown = sorted(set(given) - set(self.settings))
        if unknown:
            known = ", ".join(self.settings) or "(none)"
            raise UnknownSettingError(
                f"method {self.name!r} has no setting {', '.join(map(repr, unknown))}; its settings are: {known}. "
                "Check the spelling, or leave the setting out for this method")
        return self.settings_class(**given)

    def train_all(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                  base_fingerprint: str, *, progress: bool = True, **settings: Any) -> list[dict[str, Any]]:
        """Train this method's vectors for `datasets` into `out_root` (finished ones are kept, so a rerun resumes);
        a summary per vector trained. The one training entry point: `settings` become `settings_class` (unknown
        names refused), then `train_vectors` trains."""
        return self.train_vectors(base_dir, datasets, Path(out_root), config, base_fingerprint,
                                  self.make_settings(settings), progress=progress)

    def restate(self, out_root: Path, settings: MethodSettings) -> bool:
        """Bring the evaluation-only settings stored with a trained run at `out_root` up to `settings`, without
        retraining (RiC's preference-to-reward mapping); True if anything changed. Most methods have none: False."""
        return False

    def train_vectors(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                      base_fingerprint: str, settings: MethodSettings, *, progress: bool = True) -> list[dict[str, Any]]:
        """What a method with a trainer overrides: train with validated `settings` (a `settings_class`)."""
        raise TrainingError(f"method {self.name!r} has no trainer: its vectors are placed in the workspace by hand "
                            f"(`python -m mva_core init --vectors {self.name}=NAME:DIR`); train another method")


_REGISTRY: dict[str, TrainingMethod] = {}
# The modules of the built-in methods, imported (so registered) on the first look-up: they load torch and trl.
BUILTIN_MODULES = ("conditioned", "dpo", "dpo_lw", "dpo_seqt", "mod", "modpo", "mva", "ric", "soup")
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True  # first: a method module that looks a method up while importing must not recurse
        try:
            for module in BUILTIN_MODULES:
                importlib.import_module(f"{__package__}.{module}")
        except BaseException:
            _builtins_loaded = False  # the next look-up tries again, and fails the same way, rather than half-empty
            raise


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
        if name not in SETTINGS:
            _load_builtins()  # a method of the caller's: a clash with a built-in name raises here, at its registration
        instance = cls_impl()
        if name in SETTINGS and instance.settings_class is not SETTINGS[name]:
            raise TypeError(f"method {name!r}: settings_class {instance.settings_class.__name__} is not "
                            f"{SETTINGS[name].__name__}, which method_settings.SETTINGS names for it; make them agree")
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
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(
            f"unknown training method {name!r}; valid methods: {', '.join(sorted(_REGISTRY)) or '(none)'}"
        ) from None


def available_methods() -> dict[str, str]:
    """name -> one-line description, sorted by name."""
    _load_builtins()
    return {name: _describe(_REGISTRY[name]) for name in sorted(_REGISTRY)}


def _describe(method: TrainingMethod) -> str:
    text = method.description or (type(method).__doc__ or "").strip()
    return text.splitlines()[0] if text else ""


# ---- Settings as command-line flags ----

@dataclass(frozen=True)
class SettingFlag:
    """One command-line flag of `python -m mva_core train`, made from the settings field `name` of every registered
    method that has it (`setting_flags`): the field's help and type, and which methods read it with which default."""

    name: str  # the settings field
    flags: tuple[str, ...]  # "--beta-w", then the field's metadata aliases
    help: str
    parse: Callable[[str], Any]  # text -> the field's type
    choices: tuple[Any, ...] | None  # a Literal's values
    methods: tuple[str, ...]


def settings_classes() -> dict[str, type[MethodSettings]]:
    """Method name -> its settings class, without importing a trainer: the built-in methods' (`SETTINGS`), and
    those of the methods registered so far (a method registered by the caller, or a built-in's class as it is now)."""
    return {**SETTINGS, **{name: method.settings_class for name, method in _REGISTRY.items()}}


def setting_flags() -> list[SettingFlag]:
    """A flag per settings field over the methods of `settings_classes` (fields with metadata `cli=False` left
    out), by method name. A field without a `help`, a type that text cannot give, or one name with two different types
    raises TypeError: a method's settings are then wrong, not the user's input."""
    found: dict[str, list[tuple[str, Field, Any]]] = {}
    for name, cls in sorted(settings_classes().items()):
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if not f.metadata.get("help"):
                raise TypeError(f"{cls.__name__}.{f.name} (method {name!r}) needs metadata={{'help': ...}}")
            if f.metadata.get("cli", True):
                found.setdefault(f.name, []).append((name, f, hints[f.name]))
    out = []
    for setting, entries in found.items():
        _, first, hint = entries[0]
        parse, choices = _text_type(hint, setting)
        for method, f, other in entries[1:]:
            if _text_type(other, setting)[1] != choices or _plain(other) != _plain(hint):
                raise TypeError(f"setting {setting!r} is {hint} in {entries[0][0]!r} but {other} in {method!r}; "
                                "give one name one type")
        by_default: dict[str, list[str]] = {}
        for method, f, _ in entries:
            default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
            by_default.setdefault(_flag_text(default), []).append(method)
        where = "; ".join(", ".join(ms) + ("" if d == "None" else f": default {d.strip(chr(39))}")
                          for d, ms in by_default.items())
        # one help per distinct text: the most methods' first, the others named (mva-no-hsic's alpha is "fixed
        # at 0", mva's is the penalty weight: the flag must not read as the first method's alone)
        by_help: dict[str, list[str]] = {}
        for method, f, _ in entries:
            by_help.setdefault(f.metadata["help"], []).append(method)
        helps = sorted(by_help.items(), key=lambda item: -len(item[1]))
        text = helps[0][0] if len(helps) == 1 else "; ".join(f"{', '.join(ms)}: {h}" for h, ms in helps)
        out.append(SettingFlag(setting, ("--" + setting.replace("_", "-"), *first.metadata.get("aliases", ())),
                               f"{text} [{where}]", parse, choices,
                               tuple(m for m, _, _ in entries)))
    return out


def _flag_text(default: Any) -> str:
    """A default as its flag would be written: [0.05, 0.95] -> '0.05,0.95', [[1, 0], [0, 1]] -> '1,0;0,1'."""
    if isinstance(default, list):
        return ";".join(map(_flag_text, default)) if default and isinstance(default[0], list) else ",".join(map(str, default))
    return repr(default)


def _plain(hint: Any) -> Any:
    """`X | None` -> X."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _text_type(hint: Any, name: str) -> tuple[Callable[[str], Any], tuple[Any, ...] | None]:
    """How a flag's text becomes a value of `hint`: (parse, choices)."""
    hint = _plain(hint)
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        return type(choices[0]), choices
    if hint is bool:
        return _parse_bool, (True, False)
    if hint in (int, float, str):
        return hint, None
    if hint == list[float]:
        return parse_weights, None
    if hint == list[list[float]]:
        return _parse_weight_lists, None
    raise TypeError(f"setting {name!r}: no command-line form for {hint}; give its field metadata={{'cli': False}} "
                    "and fill it in the caller, or use int, float, str, bool, Literal or list[float]")


def _parse_bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{text!r} is not true or false")
    return text.lower() in ("true", "1", "yes")


def _parse_weight_lists(text: str) -> list[list[float]]:
    """'0.25,0.75;0.75,0.25' -> [[0.25, 0.75], [0.75, 0.25]]."""
    return [parse_weights(part) for part in text.split(";")]
