"""The serving engine: continuous batching over one weight-batched model, each request its own weights.

Every running request is one batch row of `WeightBatchedModel` (compose.py): each target layer computes
`x Wᵀ + Σ_i w[b,i] · (α_i/r_i) · (x A_iᵀ) B_iᵀ` (MVA Eq.15 per row), so requests at different points of the
front decode together, one forward pass per step, exactly as a model merged at each point would.

Scheduling (step-level continuous batching, Orca-style): between two decoding steps, finished and cancelled
rows leave the batch (their KV rows are dropped) and waiting requests join it (one left-padded prefill forward
for the newcomers, their KV rows left-padded and appended to the running cache). A long request never holds a
new one back by more than one step. The engine knows nothing of HTTP: a request reports through its
`on_event` callback, called from the engine's thread.

Why our own scheduler and not transformers' continuous batching (`generate_batch`, the engine behind
`transformers serve`): that engine packs every request's tokens into one row `(1, ΣT, d)` and keeps which
request owns which position inside its private batch tensors, so per-request weights would need a per-token
weight hook into its internals; and on CPU it decodes slower than a padded batch (README "Serve what you
picked" has the measurements).
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch import nn

from .compose import WeightBatchedModel, row_weights
from .errors import MVAError
from .generate import PromptTooLongError, RowSampler, row_seed

FinishReason = Literal["stop", "length", "cancelled", "error"]


class EngineClosedError(MVAError):
    """The engine was shut down; start the server again."""


@dataclass
class Event:
    """What a request reports: `token` (new text, possibly empty while a multi-byte character is incomplete),
    `done` (the whole text and why it ended) or `error` (the message)."""

    kind: Literal["token", "done", "error"]
    text: str = ""
    finish_reason: FinishReason | None = None
    completion_tokens: int = 0


@dataclass
class EngineRequest:
    """One sequence to decode: prompt token ids, the row's weights (n_values,), and its decoding."""

    prompt_ids: list[int]
    weights: np.ndarray
    max_new_tokens: int
    on_event: Callable[[Event], None]
    min_new_tokens: int = 0
    temperature: float = 0.0  # 0: greedy (argmax), as the workspace's default decoding
    top_p: float = 1.0
    seed: int | None = None  # sampling seed of this row; None: a fresh random one
    stop: Sequence[str] = ()
    id: int = field(default_factory=itertools.count().__next__)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Free this request's row at the next step (a client that went away)."""
        self.cancelled.set()


@dataclass
class _Row:
    """A running request: its generated ids, how many real (non-pad) tokens its KV rows hold, its sampler."""

    req: EngineRequest
    generated: list[int] = field(default_factory=list)
    n_real: int = 0
    sent: int = 0  # characters of text already reported
    sampler: RowSampler | None = None


def _tell(req: EngineRequest, event: Event) -> None:
    """Report to a request; a callback that fails (its client's event loop closed) cancels that request only."""
    try:
        req.on_event(event)
    except Exception:  # noqa: BLE001 — whatever the caller's callback raises must not stop the other rows
        req.cancel()


def _left_pad(t: torch.Tensor, length: int) -> torch.Tensor:
    """Pad dim 2 (sequence) of a KV tensor (B, H, T, D) on the left with zeros to `length`."""
    missing = length - t.shape[2]
    if missing == 0:
        return t
    return torch.cat([t.new_zeros(t.shape[0], t.shape[1], missing, t.shape[3]), t], dim=2)


class ServeEngine:
    """Continuous batching over one model in memory; a background thread runs the decoding steps.

    `model` is a `WeightBatchedModel` (each row its own weights) or a plain causal LM (the base alone: the
    benchmark's baseline through the same code path; rows then carry no weights).
    """

    def __init__(self, model: WeightBatchedModel | nn.Module, tokenizer: object, max_rows: int = 64,
                 eos_token_ids: Sequence[int] | None = None):
        self.batched = isinstance(model, WeightBatchedModel)
        self.net: nn.Module = model.model if isinstance(model, WeightBatchedModel) else model
        self.n_values = model.n_values if isinstance(model, WeightBatchedModel) else 0
        self.tokenizer = tokenizer
        self.max_rows = max_rows
        self.context = getattr(getattr(self.net, "config", None), "max_position_embeddings", None)
        self.eos = set(eos_token_ids if eos_token_ids is not None else self._eos_ids())
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else min(self.eos))
        self._waiting: deque[EngineRequest] = deque()
        self._rows: list[_Row] = []
        self._cache: object | None = None  # DynamicCache of the running rows, left-padded
        self._mask: torch.Tensor | None = None  # (B, L) 1 where the cache holds a real token
        self._cond = threading.Condition()
        self._closed = False
        self.steps = 0  # decoding forwards run (one per step for every running row)
        self.max_batch_seen = 0
        self._thread = threading.Thread(target=self._loop, name="mva-serve-engine", daemon=True)
        self._thread.start()

    def _eos_ids(self) -> list[int]:
        """The ids that end a reply: the generation config's EOS (what `generate` stops at) and the tokenizer's."""
        ids: list[int] = []
        gen = getattr(getattr(self.net, "generation_config", None), "eos_token_id", None)
        for x in ([gen] if isinstance(gen, int) else list(gen or [])):
            ids.append(int(x))
        tok = getattr(self.tokenizer, "eos_token_id", None)
        if tok is not None:
            ids.append(int(tok))
        return ids or [0]

    # ---- public ----
    def check_fits(self, n_prompt: int, max_new_tokens: int) -> None:
        """Refuse a request whose prompt and new tokens do not fit the model's context (PromptTooLongError)."""
        if isinstance(self.context, int) and n_prompt + max_new_tokens > self.context:
            raise PromptTooLongError(
                f"the prompt is {n_prompt:,} tokens; with max_tokens={max_new_tokens} that exceeds the model's "
                f"context of {self.context:,}; lower max_tokens to at most {max(self.context - n_prompt, 0):,} "
                "or shorten the prompt")

    def submit(self, req: EngineRequest) -> EngineRequest:
        """Queue a request; it joins the running batch before the next decoding step."""
        w = np.asarray(req.weights, dtype=np.float32).reshape(-1)
        if w.shape[0] != self.n_values:
            raise ValueError(f"{w.shape[0]} weights for a model with {self.n_values} value vectors")
        if not req.prompt_ids:
            raise ValueError("empty prompt")
        self.check_fits(len(req.prompt_ids), req.max_new_tokens)
        req.weights = w
        with self._cond:
            if self._closed:
                raise EngineClosedError("the serving engine is shut down; restart the server")
            self._waiting.append(req)
            self._cond.notify()
        return req

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    @property
    def running(self) -> int:
        return len(self._rows)

    # ---- the loop ----
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._rows:
                    self._cond.wait()
                if self._closed:
                    return
                room = self.max_rows - len(self._rows)
                joining = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
            try:
                self._drop([r for r in self._rows if r.req.cancelled.is_set()], "cancelled")
                for req in [r for r in joining if r.cancelled.is_set()]:  # gone before it joined
                    _tell(req, Event("done", finish_reason="cancelled"))
                joining = [r for r in joining if not r.cancelled.is_set()]
                if joining:
                    self._prefill(joining)
                if self._rows:
                    self._decode_step()
            except Exception as exc:  # a failure of the forward: every running row is told, the engine goes on
                message = f"{type(exc).__name__}: {exc}"
                for row in self._rows:
                    _tell(row.req, Event("error", text=message, finish_reason="error"))
                for req in joining:
                    if not any(r.req is req for r in self._rows):
                        _tell(req, Event("error", text=message, finish_reason="error"))
                self._rows, self._cache, self._mask = [], None, None

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: object | None,
                 weights: np.ndarray) -> tuple[torch.Tensor, object]:
        """One forward pass of the rows; returns the last position's logits (B, vocab) and the grown cache."""
        from transformers import DynamicCache  # heavy: loaded with the model

        cache = cache if cache is not None else DynamicCache()
        with torch.no_grad():
            if self.batched:
                with row_weights(weights):
                    out = self.net(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                                   use_cache=True)
            else:
                out = self.net(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        return out.logits[:, -1, :].float(), out.cache

    def _weights(self, rows: Sequence[_Row]) -> np.ndarray:
        return np.stack([r.req.weights for r in rows]) if self.n_values else np.zeros((len(rows), 0), np.float32)

    def _prefill(self, reqs: list[EngineRequest]) -> None:
        """The newcomers' prompts in one left-padded forward at their own weights; their KV rows join the cache."""
        from transformers import DynamicCache  # heavy: loaded with the model

        T = max(len(r.prompt_ids) for r in reqs)
        ids = torch.full((len(reqs), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), T), dtype=torch.long)
        for b, r in enumerate(reqs):
            ids[b, T - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
            mask[b, T - len(r.prompt_ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp_min(0)  # (B, T): real tokens count 0, 1, …; pads sit at 0
        rows = [_Row(req=r, n_real=len(r.prompt_ids)) for r in reqs]
        logits, cache = self._forward(ids, mask, positions, None, self._weights(rows))
        if self._cache is None:
            self._cache, self._mask = cache, mask
        else:  # left-pad the shorter of the two caches and stack the rows
            old, L = self._cache, max(self._mask.shape[1], T)
            data = []
            for lo, ln in zip(old.layers, cache.layers):  # type: ignore[attr-defined]
                data.append((torch.cat([_left_pad(lo.keys, L), _left_pad(ln.keys, L)]),
                             torch.cat([_left_pad(lo.values, L), _left_pad(ln.values, L)])))
            self._cache = DynamicCache(ddp_cache_data=data)
            pad = lambda m: torch.cat([m.new_zeros(m.shape[0], L - m.shape[1]), m], dim=1)  # noqa: E731
            self._mask = torch.cat([pad(self._mask), pad(mask)])
        self._rows += rows
        self._advance(rows, logits)

    def _decode_step(self) -> None:
        """One forward pass over every running row (its last token in, the next token out)."""
        rows = self._rows
        ids = torch.tensor([[r.generated[-1]] for r in rows], dtype=torch.long)  # (B, 1)
        self._mask = torch.cat([self._mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)  # (B, L+1)
        positions = torch.tensor([[r.n_real] for r in rows], dtype=torch.long)  # (B, 1)
        logits, self._cache = self._forward(ids, self._mask, positions, self._cache, self._weights(rows))
        for r in rows:
            r.n_real += 1
        self.steps += 1
        self.max_batch_seen = max(self.max_batch_seen, len(rows))
        self._advance(rows, logits)

    def _advance(self, rows: list[_Row], logits: torch.Tensor) -> None:
        """Choose each row's next token, report its text, and drop the rows that are done."""
        finished: list[tuple[_Row, FinishReason]] = []
        for b, row in enumerate(rows):
            req = row.req
            scores = logits[b:b + 1]  # (1, vocab)
            if len(row.generated) < req.min_new_tokens:  # as MinNewTokensLogitsProcessor: no EOS before the minimum
                scores = scores.clone()
                scores[:, sorted(self.eos)] = float("-inf")
            if req.temperature > 0:
                if row.sampler is None:
                    seed = req.seed if req.seed is not None else secrets.randbits(63)
                    row.sampler = RowSampler([seed], req.temperature, req.top_p)
                prefix = torch.tensor([req.prompt_ids + row.generated])
                scores = row.sampler(prefix, scores)
            token = int(scores.argmax(-1).item())
            row.generated.append(token)
            reason = self._report(row, token)
            if reason is not None:
                finished.append((row, reason))
        for row, reason in finished:
            self._drop([row], reason)

    def _text(self, row: _Row) -> str:
        return self.tokenizer.decode(row.generated, skip_special_tokens=True)  # type: ignore[attr-defined]

    def _report(self, row: _Row, token: int) -> FinishReason | None:
        """Send the row's new text; the reason it is done, or None."""
        req = row.req
        text = self._text(row)
        reason: FinishReason | None = None
        cut = min((text.find(s) for s in req.stop if s and s in text), default=-1)
        if cut >= 0:
            text, reason = text[:cut], "stop"
        elif token in self.eos:
            reason = "stop"
        elif len(row.generated) >= req.max_new_tokens:
            reason = "length"
        # Hold back an incomplete multi-byte character and, while a stop string may still be forming, its prefix.
        hold = 0 if reason else max([len(s) - 1 for s in req.stop if s] + [0])
        safe = len(text) - hold
        while safe > row.sent and not reason and text[safe - 1] == "\ufffd":
            safe -= 1
        if safe > row.sent:
            _tell(req, Event("token", text=text[row.sent:safe]))
            row.sent = safe
        return reason

    def _drop(self, rows: list[_Row], reason: FinishReason) -> None:
        """Remove `rows` from the batch (their KV rows too) and tell each it is done."""
        if not rows:
            return
        gone = {id(r) for r in rows}
        keep = [i for i, r in enumerate(self._rows) if id(r) not in gone]
        for r in rows:
            text = self._text(r)
            cut = min((text.find(s) for s in r.req.stop if s and s in text), default=-1)
            n = len(r.generated) - (1 if r.generated and r.generated[-1] in self.eos and reason == "stop" else 0)
            _tell(r.req, Event("done", text=text[:cut] if cut >= 0 else text, finish_reason=reason,
                                completion_tokens=n))
        self._rows = [self._rows[i] for i in keep]
        if not self._rows:
            self._cache, self._mask = None, None
            return
        index = torch.tensor(keep, dtype=torch.long)
        self._cache.batch_select_indices(index)  # type: ignore[union-attr]
        self._mask = self._mask[index]
        # Columns that are padding in every remaining row (the longest rows left) are cut away.
        lead = int((self._mask.cumsum(-1) == 0).sum(-1).min().item())
        if lead:
            self._mask = self._mask[:, lead:]
            for layer in self._cache.layers:  # type: ignore[union-attr]
                layer.keys, layer.values = layer.keys[:, :, lead:], layer.values[:, :, lead:]


def seed_of(seed: int | None, choice: int) -> int | None:
    """The sampling seed of choice `choice` of a request that gave `seed` (None stays None: a random draw)."""
    return None if seed is None else row_seed(f"serve|{seed}", 0, choice)
