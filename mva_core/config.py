"""Validated, serialisable configuration records (peft-style dataclasses).

Every field carries a `help`; `__post_init__` raises `ConfigError` on a contradiction, naming the
bad value and the fix. `to_dict()` / `from_dict()` round-trip through JSON so a record can be stored
in the workspace and hashed into a cache key.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from .errors import MVAError

# A value vector's metadata file beside its PEFT adapter (mva_core.vectors writes it); named here, below every module
# that recognises a vector dir by it (vectors, kinds, atomic).
META_FILE = "mva_vector.json"

T = TypeVar("T")

DPO_BETA = 0.1  # DESIGN §1 "DPO (per value)": the one β of every DPO loss (training and diagnostics)


class ConfigError(MVAError, ValueError):
    """A configuration value is out of range or contradicts another one."""


class WeightsError(MVAError, ValueError):
    """A weight vector is the wrong length, non-finite or outside the search space [0, C]."""


# Names that become path parts (values, methods, exports): letters, digits, '-', '_', '.'; no leading dot, so
# a name can neither leave its directory ('..', '/') nor hide (a dot file).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_name(name: Any, what: str = "name") -> str:
    """`name` if it is safe as one path part; raises ConfigError naming it and the allowed characters."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{what} {name!r} is not allowed: use letters, digits, '-', '_' and '.' (not first), "
                          "e.g. 'warmth' or 'harmless-v2'")
    return name


def _type_ok(value: Any, hint: Any) -> bool:
    """Does a JSON value fit a field's annotation (int, float, bool, str, X | None, Literal)?"""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, dict, tuple):
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


class Record:
    """JSON round-trip and a stable content hash, shared by the config dataclasses."""

    def check_types(self) -> None:
        """Raise ConfigError naming the first field whose value does not fit its annotation (e.g. "48" for an
        int read from JSON); called first by each record's __post_init__."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if not _type_ok(value, hints[f.name]):
                fix = "write the number without quotes" if isinstance(value, str) else "give a value of that type"
                raise ConfigError(f"{type(self).__name__}.{f.name} = {value!r} ({type(value).__name__}) is not "
                                  f"{_describe(hints[f.name])}; {fix}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; valid fields are {sorted(known)}")
        return cls(**d)

    # Fields added after records were stored: left out of the fingerprint while at their default, so
    # existing cache keys stay valid.
    _added_fields: dict[str, Any] = {}

    def fingerprint(self) -> str:
        """Short sha256 of the canonical JSON: the record's identity in cache keys."""
        d = {k: v for k, v in self.to_dict().items() if k not in self._added_fields or v != self._added_fields[k]}
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class DecodingConfig(Record):
    """How responses are generated for scoring. Greedy by default so a candidate's score is deterministic.

    Sampled (`do_sample=True`): each candidate gets `num_samples` responses per prompt, every one drawn with its
    own seed, derived from the candidate (its content key, which holds `seed`), the prompt and the sample index
    (`generate.row_seed`), so a rerun is byte-identical whichever candidates share a generate call. Scores are
    averaged per prompt for the reward vector s(w); the per-sample scores are kept for CRD (MI-EPO).
    """

    _added_fields = {"min_new_tokens": 0, "num_samples": 1}

    max_new_tokens: int = field(default=48, metadata={"help": "Tokens generated per response."})
    min_new_tokens: int = field(default=0, metadata={
        "help": "Suppress EOS before this many tokens; benchmarks set it = max_new_tokens so every run decodes the same count."})
    do_sample: bool = field(default=False, metadata={"help": "False = greedy decoding (deterministic scores)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature; ignored when greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass; ignored when greedy."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling; each response's own seed is derived from it, "
                                                   "the candidate, the prompt and the sample index."})
    num_samples: int = field(default=1, metadata={
        "help": "Responses sampled per prompt (needs do_sample); scores are averaged per prompt, and CRD (MI-EPO) "
                "is measured from the samples. 1 = one response per prompt."})
    batch_size: int = field(default=16, metadata={"help": "Rows (candidate x prompt) per generate call."})
    # SmolLM2's own template adds a system prompt; we keep the template as shipped with the tokenizer.
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message; None = template default."})

    def __post_init__(self) -> None:
        self.check_types()
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens}: must be >= 1")
        if not (0 <= self.min_new_tokens <= self.max_new_tokens):
            raise ConfigError(f"min_new_tokens={self.min_new_tokens}: must be in [0, max_new_tokens={self.max_new_tokens}]")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: must be >= 1")
        if self.do_sample and not (self.temperature > 0):
            raise ConfigError(f"temperature={self.temperature}: must be > 0 when do_sample=True")
        if not (0 < self.top_p <= 1):
            raise ConfigError(f"top_p={self.top_p}: must be in (0, 1]")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples={self.num_samples}: must be >= 1 responses per prompt, e.g. 4")
        if self.num_samples > 1 and not self.do_sample:
            raise ConfigError(f"num_samples={self.num_samples} with do_sample=false would decode the same greedy "
                              "response again and again; set do_sample=true (with a temperature, e.g. 0.7) or "
                              "num_samples=1")


# A grid is enumerated in memory before anything runs: 10^6 points × n weights is ~50 MB. Larger asks are
# refused outright; how many candidates a user may run without confirming is the CLI's and the app's choice.
MAX_GRID_POINTS = 1_000_000


class GridTooLargeError(ConfigError):
    """The weight grid asked for has more points than can be enumerated or than the user confirmed."""


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(hint, str(hint))


def parse_weights(text: str) -> list[float]:
    """'1.2,0.4' -> [1.2, 0.4]; a non-number raises WeightsError naming it."""
    out = []
    for part in text.split(","):
        try:
            out.append(float(part))
        except ValueError:
            raise WeightsError(f"weight {part!r} in {text!r} is not a number; write e.g. --weights 1.2,0.4") from None
    return out


@dataclass
class TrainConfig(Record):
    """Settings for training one value vector by DPO with LoRA. Defaults are the CPU_SMALL preset."""

    beta: float = field(default=DPO_BETA, metadata={"help": "DPO β: the KL strength towards the base (paper: 0.1)."})
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
