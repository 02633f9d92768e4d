"""Batched generation for many weight vectors x prompts in one call (left-padded, greedy by default).

Sampled decoding draws every response with its own seed (`row_seed`: the candidate, the prompt, the sample
index), applied per batch row by `RowSampler`, so a response does not depend on which rows share its generate call.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from transformers import (LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList,
                          TemperatureLogitsWarper, TopPLogitsWarper)

from .compose import WeightBatchedModel, row_weights
from .config import ConfigError, DecodingConfig
from .decode_time import DecodeTimeMixture, component_weights
from .errors import MVAError, ResourceLimitError
from .models import chat_prompt, reply_stop
from .notices import notify

Progress = Callable[[int, int], None]  # (decoding steps done, steps total)


class Cancelled(MVAError):
    """The user stopped the work; what finished before the current generate call is kept."""


class _EachToken(StoppingCriteria):
    """Called by `generate` after every decoding step: reports the step, and stops every row once `cancel` is set."""

    def __init__(self, on_step: Callable[[int], None], cancel: threading.Event | None):
        self.step, self.on_step, self.cancel = 0, on_step, cancel

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> torch.Tensor:
        self.step += 1
        self.on_step(self.step)
        stop = self.cancel is not None and self.cancel.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def row_seed(candidate: str, prompt_idx: int, sample_idx: int) -> int:
    """The seed of one sampled response: a 63-bit number from sha256 of (candidate identity, prompt index, sample
    index). The identity is the candidate's content key (it holds the decoding config and so `seed`), so every
    candidate, prompt and sample draws its own stream and a rerun draws the same one."""
    digest = hashlib.sha256(f"{candidate}|{prompt_idx}|{sample_idx}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def default_identity(decoding: DecodingConfig, weights: Sequence[float] | None) -> str:
    """A candidate's identity for seeding when the caller names none: the decoding config (with its seed) and the
    weights rounded to 1e-9 (as `store.candidate_key` rounds them)."""
    w = [] if weights is None else [round(float(x), 9) for x in weights]
    return f"{decoding.fingerprint()}|{w}"


class RowSampler(LogitsProcessor):
    """Sampling with one torch.Generator per batch row (HF `generate` draws every row from one global stream, so a
    row's tokens would depend on its neighbours in the batch).

    Each step: temperature and top-p (transformers' own warpers), then one inverse-CDF draw per row from its own
    generator; every other token is set to −inf, so greedy search (`do_sample=False`) takes the drawn one.
    Processors `generate` builds itself (e.g. `min_new_tokens` masking EOS) run before this one.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        self.seeds = list(seeds)
        self.warpers = LogitsProcessorList(([TemperatureLogitsWarper(temperature)] if temperature != 1.0 else [])
                                           + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else []))
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        B = scores.shape[0]
        assert B == len(self.seeds), f"{B} rows in the batch, {len(self.seeds)} seeds"
        if self.generators is None:  # on the logits' device, created at the first step
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        probs = torch.softmax(self.warpers(input_ids, scores.float()), dim=-1)  # (B, vocab)
        # inverse CDF: one uniform per row from its own generator, then the first token whose cumulative
        # probability reaches it (exactly the categorical draw; 25x faster on CPU than one torch.multinomial per
        # row over a 49k vocabulary: 23 ms vs 540 ms for 16 rows). Tokens of probability 0 are never drawn.
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64, device=scores.device) for g in self.generators])
        cdf = torch.cumsum(probs.double(), dim=-1)
        target = (u * cdf[:, -1]).clamp_min(torch.finfo(torch.float64).tiny).unsqueeze(1)
        drawn = torch.searchsorted(cdf, target).squeeze(1).clamp_max(scores.shape[1] - 1)  # (B,)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(B, device=scores.device), drawn] = 0.0
        return out


def is_out_of_memory(exc: BaseException) -> bool:
    """An accelerator or CPU allocation that failed: torch.OutOfMemoryError (CUDA), or a RuntimeError saying so
    (MPS and older torch: "out of memory"; the CPU allocator: "can't allocate memory")."""
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))


class PromptTooLongError(MVAError):
    """A prompt (with its chat template) and the new tokens do not fit the model's context."""


def check_context(net: nn.Module, n_tokens: Sequence[int], max_new_tokens: int) -> None:
    """Refuse (rather than cut) prompts that do not fit: a cut prompt would be scored as if it were whole."""
    context = getattr(getattr(net, "config", None), "max_position_embeddings", None)
    if not isinstance(context, int) or not n_tokens:
        return
    j = int(np.argmax(n_tokens))
    if n_tokens[j] + max_new_tokens > context:
        raise PromptTooLongError(
            f"prompt {j} is {n_tokens[j]:,} tokens with its chat template; with {max_new_tokens} new tokens that "
            f"exceeds the model's context of {context:,}; shorten or drop it (prompts are refused, not cut, so "
            "every score is of the whole prompt)")


def generate_responses(
    model: nn.Module | WeightBatchedModel,
    tokenizer: object,
    prompts: Sequence[str],
    weights: np.ndarray | None = None,
    decoding: DecodingConfig | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    identities: Sequence[str] | None = None,
) -> list[list[str]]:
    """Responses [candidate][prompt]: one per candidate and prompt (`decoding.num_samples` must be 1; for
    several per prompt use `generate_samples`, which this calls and documents)."""
    decoding = decoding or DecodingConfig()
    if decoding.num_samples != 1:
        raise ConfigError(f"num_samples={decoding.num_samples}: generate_responses returns one response per prompt; "
                          "call generate_samples for several")
    return [[s[0] for s in cand] for cand in
            generate_samples(model, tokenizer, prompts, weights, decoding, progress, cancel, identities)]


# Rows per generate call found to fit in memory, per model and max_new_tokens: the next call on the model (the next
# sweep chunk) starts there instead of running out of memory, and telling so, once more.
_ROWS_THAT_FIT: weakref.WeakKeyDictionary[nn.Module, dict[int, int]] = weakref.WeakKeyDictionary()


def generate_samples(
    model: nn.Module | WeightBatchedModel,
    tokenizer: object,
    prompts: Sequence[str],
    weights: np.ndarray | None = None,
    decoding: DecodingConfig | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    identities: Sequence[str] | None = None,
    decode_time: bool = False,
    prompt_ids: Sequence[int] | None = None,
) -> list[list[list[str]]]:
    """Responses [candidate][prompt][sample] for every row of `weights` (K, n), every prompt and each of
    `decoding.num_samples` samples (1 when greedy).

    `decode_time` (a WeightBatchedModel only): candidate w is MOD's decode-time mixture (mva_core.decode_time), not
    the model composed at w: each sequence runs n + 1 rows (the base and each value's model alone, each with its
    own KV cache) and every token is picked from their mixed log-probs; a generate call then holds
    `batch_size // (n + 1)` sequences (at least 1), so it costs what `batch_size` rows cost.

    With a plain model (`weights=None`) there is one candidate: the model itself. With a
    WeightBatchedModel each generated row carries its own weights, so K candidates x P prompts x S samples are
    decoded in ceil(K*P*S / batch_size) generate calls. Returns the response text only (no prompt).

    Sampled decoding: response (k, j, s) is drawn with seed `row_seed(identities[k], j, s)` by `RowSampler`, so it
    is the same whichever rows share its call (up to float noise in the logits of differently padded batches).
    `identities` (one per candidate; the store's candidate keys) default to `default_identity`. `prompt_ids` (one
    per prompt) are the prompts' indices in the candidate's whole prompt set, for the seeds, when `prompts` is a part
    of it (an any-time evaluation generates a few prompts at a time, mva_core.live); default 0, 1, …

    `progress(done, total)` counts decoding steps: total = generate calls × max_new_tokens, reported after every
    token (a call that ends early at EOS jumps to its end), so a bar moves and an ETA exists from the first token.
    `cancel` set: decoding stops at the next token and `Cancelled` is raised; nothing of this call is returned.
    """
    decoding = decoding or DecodingConfig()
    batched = isinstance(model, WeightBatchedModel)
    if batched:
        if weights is None:
            raise ValueError("a WeightBatchedModel needs `weights` of shape (candidates, n_values)")
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float32))
        assert weights.shape[1] == model.n_values, f"weights are {weights.shape}, model has {model.n_values} values"
        n_candidates, net = weights.shape[0], model.model
    else:
        n_candidates, net = 1, model
    if decode_time and not batched:
        raise ValueError("decode-time composition needs a WeightBatchedModel (its n + 1 rows per sequence)")
    expand = model.n_values + 1 if decode_time else 1  # model rows per sequence: 1, or the base and each value's
    if identities is None:
        identities = [default_identity(decoding, None if weights is None else weights[k]) for k in range(n_candidates)]
    if len(identities) != n_candidates:
        raise ValueError(f"{len(identities)} identities for {n_candidates} candidates; give one per candidate")
    n_samples = decoding.num_samples if decoding.do_sample else 1
    seed_ids = list(range(len(prompts))) if prompt_ids is None else [int(i) for i in prompt_ids]
    if len(seed_ids) != len(prompts):
        raise ValueError(f"{len(seed_ids)} prompt_ids for {len(prompts)} prompts; give one per prompt")
    texts = [chat_prompt(tokenizer, p, decoding.system_prompt) for p in prompts]
    # Rows sorted by prompt length (longest first): chunks then hold prompts of one length, so left
    # padding wastes almost no prefill compute; with many candidates a chunk is often one prompt.
    n_tokens = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]  # type: ignore[operator]
    check_context(net, n_tokens, decoding.max_new_tokens)
    rows = sorted(((k, j, s) for k in range(n_candidates) for j in range(len(prompts)) for s in range(n_samples)),
                  key=lambda kjs: (-n_tokens[kjs[1]], kjs[1], kjs[0], kjs[2]))  # (candidate, prompt, sample)
    out: list[list[list[str]]] = [[[""] * n_samples for _ in prompts] for _ in range(n_candidates)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id  # type: ignore[attr-defined]
    # Sampling is done by RowSampler (one seeded generator per row); generate itself then searches greedily.
    sampling = dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    stop = reply_stop(tokenizer)
    lengths = dict(max_new_tokens=decoding.max_new_tokens, min_new_tokens=decoding.min_new_tokens or None,
                   pad_token_id=pad_id, **(dict(stop_strings=[stop], tokenizer=tokenizer) if stop else {}))
    per_call = max(1, decoding.batch_size // expand)  # sequences per generate call
    n_calls = -(-len(rows) // per_call)
    total = n_calls * decoding.max_new_tokens
    learned = _ROWS_THAT_FIT.get(model, {}).get(decoding.max_new_tokens, decoding.batch_size)
    fits = [min(decoding.batch_size, learned)]  # model rows per generate call that fit in memory: halved on out-of-memory

    def decode(chunk: list[tuple[int, int, int]], watch: _EachToken) -> list[str]:
        """New text per row of `chunk`; out of memory, the rows are halved (here and for later calls) and go on.
        Each row keeps its own sampling seed, so a halved call draws what the whole one would have."""
        if len(chunk) > max(1, fits[0] // expand):
            return decode(chunk[:len(chunk) // 2], watch) + decode(chunk[len(chunk) // 2:], watch)
        enc = tokenizer(  # type: ignore[operator]
            [texts[j] for _, j, _ in chunk for _ in range(expand)], return_tensors="pt", padding=True,
            padding_side="left", add_special_tokens=False,
        )
        sampler = RowSampler([row_seed(identities[k], seed_ids[j], s) for k, j, s in chunk], decoding.temperature,
                             decoding.top_p) if decoding.do_sample else None
        if decode_time:  # the sampler (one seed per sequence) draws from the mixture, not from a row
            processors = LogitsProcessorList([DecodeTimeMixture(weights[[k for k, _, _ in chunk]], then=sampler)])
            rows_w = np.tile(component_weights(model.n_values), (len(chunk), 1))  # (len(chunk)·(n+1), n)
        else:
            processors = LogitsProcessorList([sampler] if sampler is not None else [])
            rows_w = weights[[k for k, _, _ in chunk]] if batched else None
        criteria = StoppingCriteriaList([watch])
        try:
            with torch.no_grad():
                if batched:
                    with row_weights(rows_w):
                        gen = net.generate(**enc, **lengths, **sampling, logits_processor=processors,
                                           stopping_criteria=criteria)
                else:
                    gen = net.generate(**enc, **lengths, **sampling, logits_processor=processors,
                                       stopping_criteria=criteria)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            if not is_out_of_memory(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            if len(chunk) == 1:
                raise ResourceLimitError(
                    f"out of memory generating a single row ({enc['input_ids'].shape[1]} prompt tokens + "
                    f"{decoding.max_new_tokens} new): {reason}; lower decoding.max_new_tokens in workspace.json or "
                    "use a smaller base model") from exc
            fits[0] = max(1, len(chunk) // 2) * expand
            _ROWS_THAT_FIT.setdefault(model, {})[decoding.max_new_tokens] = fits[0]
            notify(f"out of memory generating {len(chunk) * expand} rows in one call ({reason}); going on with {fits[0]} "
                   f"rows per call (set decoding.batch_size to {fits[0]} in workspace.json to start there)")
            return decode(chunk, watch)
        new_tokens = gen[::expand, enc["input_ids"].shape[1]:]  # (rows, new) — left padding keeps prompts aligned
        return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)  # type: ignore[attr-defined]

    for call, start in enumerate(range(0, len(rows), per_call)):
        chunk = rows[start:start + per_call]
        done = call * decoding.max_new_tokens
        watch = _EachToken(lambda step, done=done: progress(done + step, total) if progress else None, cancel)
        texts_out = decode(chunk, watch)
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"stopped by request during generate call {call + 1} of {n_calls}; finished work is kept")
        for (k, j, s), seq in zip(chunk, texts_out):
            out[k][j][s] = (seq.split(stop)[0] if stop else seq).strip()  # the reply, not the next turn it began
        if progress is not None:
            progress(done + decoding.max_new_tokens, total)
    return out


def greedy_agreement(
    reference: nn.Module,
    model: WeightBatchedModel,
    tokenizer: object,
    prompts: Sequence[str],
    weights: Sequence[float],
    decoding: DecodingConfig | None = None,
    atol: float = 1e-3,
) -> dict[str, float | int]:
    """Step-by-step check that the weight-batched model decodes like `reference` (the merged model).

    Both decode greedily; at every step the logits of the two must agree within `atol`, and the chosen
    tokens must be identical except where the reference's top-two logits are closer than `atol` (a
    near-tie, where float rounding may pick either). A row is compared up to its first divergence.
    """
    decoding = decoding or DecodingConfig()
    texts = [chat_prompt(tokenizer, p, decoding.system_prompt) for p in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)  # type: ignore[operator]
    kw = dict(max_new_tokens=decoding.max_new_tokens, min_new_tokens=decoding.min_new_tokens or None, do_sample=False,
              temperature=None, top_p=None, top_k=None, output_logits=True, return_dict_in_generate=True,
              pad_token_id=tokenizer.pad_token_id)  # type: ignore[attr-defined]
    with torch.no_grad():
        ref = reference.generate(**enc, **kw)
        with row_weights(np.tile(np.asarray(weights, dtype=np.float32), (len(prompts), 1))):
            got = model.model.generate(**enc, **kw)
    ref_logits = torch.stack(ref.logits, dim=1)  # (rows, steps, vocab)
    got_logits = torch.stack(got.logits, dim=1)
    n_prompt = enc["input_ids"].shape[1]
    ref_tok, got_tok = ref.sequences[:, n_prompt:], got.sequences[:, n_prompt:]  # (rows, steps)
    max_diff, steps, near_ties, mismatches = 0.0, 0, 0, 0
    for r in range(len(prompts)):
        for t in range(min(ref_logits.shape[1], got_logits.shape[1])):
            max_diff = max(max_diff, (ref_logits[r, t] - got_logits[r, t]).abs().max().item())
            steps += 1
            if ref_tok[r, t] != got_tok[r, t]:
                top2 = ref_logits[r, t].topk(2).values
                if (top2[0] - top2[1]).item() < atol:
                    near_ties += 1
                else:
                    mismatches += 1
                break  # later steps continue from different prefixes
    return {"max_abs_logit_diff": max_diff, "steps": steps, "near_ties": near_ties, "mismatches": mismatches}
