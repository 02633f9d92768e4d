"""Batched generation for many weight vectors x prompts in one call (left-padded, greedy by default)."""

from __future__ import annotations

import threading
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from transformers import StoppingCriteria, StoppingCriteriaList

from .compose import WeightBatchedModel, row_weights
from .config import DecodingConfig
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
) -> list[list[str]]:
    """Responses [candidate][prompt] for every row of `weights` (K, n) and every prompt.

    With a plain model (`weights=None`) there is one candidate: the model itself. With a
    WeightBatchedModel each generated row carries its own weights, so K candidates x P prompts are
    decoded in ceil(K*P / batch_size) generate calls. Returns the response text only (no prompt).

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
    texts = [chat_prompt(tokenizer, p, decoding.system_prompt) for p in prompts]
    # Rows sorted by prompt length (longest first): chunks then hold prompts of one length, so left
    # padding wastes almost no prefill compute; with many candidates a chunk is often one prompt.
    n_tokens = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]  # type: ignore[operator]
    check_context(net, n_tokens, decoding.max_new_tokens)
    rows = sorted(((k, j) for k in range(n_candidates) for j in range(len(prompts))),
                  key=lambda kj: (-n_tokens[kj[1]], kj[1], kj[0]))  # (candidate, prompt)
    out: list[list[str]] = [[""] * len(prompts) for _ in range(n_candidates)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id  # type: ignore[attr-defined]
    if decoding.do_sample:
        torch.manual_seed(decoding.seed)
    sampling = (
        dict(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p, top_k=None)
        if decoding.do_sample
        else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    )
    stop = reply_stop(tokenizer)
    lengths = dict(max_new_tokens=decoding.max_new_tokens, min_new_tokens=decoding.min_new_tokens or None,
                   pad_token_id=pad_id, **(dict(stop_strings=[stop], tokenizer=tokenizer) if stop else {}))
    n_calls = -(-len(rows) // decoding.batch_size)
    total = n_calls * decoding.max_new_tokens
    fits = [decoding.batch_size]  # rows per generate call that fit in memory so far: halved on out-of-memory

    def decode(chunk: list[tuple[int, int]], watch: _EachToken) -> list[str]:
        """New text per row of `chunk`; out of memory, the rows are halved (here and for later calls) and go on."""
        if len(chunk) > fits[0]:
            return decode(chunk[:len(chunk) // 2], watch) + decode(chunk[len(chunk) // 2:], watch)
        enc = tokenizer(  # type: ignore[operator]
            [texts[j] for _, j in chunk], return_tensors="pt", padding=True, padding_side="left",
            add_special_tokens=False,
        )
        criteria = StoppingCriteriaList([watch])
        try:
            with torch.no_grad():
                if batched:
                    with row_weights(weights[[k for k, _ in chunk]]):
                        gen = net.generate(**enc, **lengths, **sampling, stopping_criteria=criteria)
                else:
                    gen = net.generate(**enc, **lengths, **sampling, stopping_criteria=criteria)
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
            fits[0] = len(chunk) // 2
            notify(f"out of memory generating {len(chunk)} rows in one call ({reason}); going on with {fits[0]} "
                   f"rows per call (set decoding.batch_size to {fits[0]} in workspace.json to start there)")
            return decode(chunk, watch)
        new_tokens = gen[:, enc["input_ids"].shape[1]:]  # (rows, new) — left padding keeps prompts aligned
        return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)  # type: ignore[attr-defined]

    for call, start in enumerate(range(0, len(rows), decoding.batch_size)):
        chunk = rows[start:start + decoding.batch_size]
        done = call * decoding.max_new_tokens
        watch = _EachToken(lambda step, done=done: progress(done + step, total) if progress else None, cancel)
        texts_out = decode(chunk, watch)
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"stopped by request during generate call {call + 1} of {n_calls}; finished work is kept")
        for (k, j), seq in zip(chunk, texts_out):
            out[k][j] = (seq.split(stop)[0] if stop else seq).strip()  # the reply, not the next turn it began
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
