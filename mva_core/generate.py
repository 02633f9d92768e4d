"""Batched generation for many weight vectors x prompts in one call (left-padded, greedy by default)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .compose import WeightBatchedModel, row_weights
from .config import DecodingConfig
from .models import chat_prompt

Progress = Callable[[int, int], None]  # (rows done, rows total)


def generate_responses(
    model: nn.Module | WeightBatchedModel,
    tokenizer: object,
    prompts: Sequence[str],
    weights: np.ndarray | None = None,
    decoding: DecodingConfig | None = None,
    progress: Progress | None = None,
) -> list[list[str]]:
    """Responses [candidate][prompt] for every row of `weights` (K, n) and every prompt.

    With a plain model (`weights=None`) there is one candidate: the model itself. With a
    WeightBatchedModel each generated row carries its own weights, so K candidates x P prompts are
    decoded in ceil(K*P / batch_size) generate calls. Returns the response text only (no prompt).
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
    rows = [(k, j) for k in range(n_candidates) for j in range(len(prompts))]  # (candidate, prompt)
    out: list[list[str]] = [[""] * len(prompts) for _ in range(n_candidates)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id  # type: ignore[attr-defined]
    if decoding.do_sample:
        torch.manual_seed(decoding.seed)
    sampling = (
        dict(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p, top_k=None)
        if decoding.do_sample
        else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    )
    done = 0
    for start in range(0, len(rows), decoding.batch_size):
        chunk = rows[start:start + decoding.batch_size]
        enc = tokenizer(  # type: ignore[operator]
            [texts[j] for _, j in chunk], return_tensors="pt", padding=True, padding_side="left",
            add_special_tokens=False,
        )
        with torch.no_grad():
            if batched:
                with row_weights(weights[[k for k, _ in chunk]]):
                    gen = net.generate(**enc, max_new_tokens=decoding.max_new_tokens, pad_token_id=pad_id, **sampling)
            else:
                gen = net.generate(**enc, max_new_tokens=decoding.max_new_tokens, pad_token_id=pad_id, **sampling)
        new_tokens = gen[:, enc["input_ids"].shape[1]:]  # (rows, new) — left padding keeps prompts aligned
        for (k, j), seq in zip(chunk, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):  # type: ignore[attr-defined]
            out[k][j] = seq.strip()
        done += len(chunk)
        if progress is not None:
            progress(done, len(rows))
    return out
