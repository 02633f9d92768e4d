"""The serving engine alone (no HTTP): a request that joins a running batch decodes beside it, leaves first, and
both equal a model merged at their weights generating alone; a cancelled request's row leaves at the next step."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.tiny import make_tiny_workspace


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from mva_core.sweep import Evaluator

    ws = make_tiny_workspace(tmp_path_factory.mktemp("engine"))
    return Evaluator(ws, "mva-no-hsic")


def merged_ids(ev, weights, prompt_ids, n):
    import torch

    from mva_core.compose import merge

    model = merge(ev.base.model, ev.vectors, weights)
    out = model.generate(input_ids=torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids),
                         dtype=torch.long), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return ev.base.tokenizer.decode(out[0, len(prompt_ids):], skip_special_tokens=True)


class Collector:
    def __init__(self):
        self.tokens, self.done, self.finished = 0, None, threading.Event()

    def __call__(self, ev):
        if ev.kind == "token":
            self.tokens += 1
        else:
            self.done = ev
            self.finished.set()


def test_join_mid_run_leaves_first_and_both_exact(tiny):
    from mva_core.models import chat_prompt
    from mva_core.serve_engine import EngineRequest, ServeEngine

    tok = tiny.base.tokenizer
    long_ids = tok(chat_prompt(tok, "How do I bake bread?"), add_special_tokens=False)["input_ids"]
    short_ids = tok(chat_prompt(tok, "Hi"), add_special_tokens=False)["input_ids"]
    engine = ServeEngine(tiny.model, tok)
    try:
        long_c, short_c = Collector(), Collector()
        gate = threading.Event()
        original = long_c.__call__

        engine.submit(EngineRequest(prompt_ids=long_ids, weights=np.array([0.9, 0.1]), max_new_tokens=60,
                                    min_new_tokens=60, on_event=lambda ev: (original(ev), gate.set()
                                                                              if long_c.tokens >= 5 else None)))
        assert gate.wait(60)
        engine.submit(EngineRequest(prompt_ids=short_ids, weights=np.array([0.2, 0.7]), max_new_tokens=6,
                                    min_new_tokens=6, on_event=short_c))
        assert short_c.finished.wait(60)
        assert not long_c.finished.is_set()  # the short one joined the running batch and left before the long one
        assert engine.max_batch_seen == 2
        assert long_c.finished.wait(120)
        assert short_c.done.finish_reason == "length" and short_c.done.completion_tokens == 6
        assert short_c.done.text == merged_ids(tiny, [0.2, 0.7], short_ids, 6)
        assert long_c.done.text == merged_ids(tiny, [0.9, 0.1], long_ids, 60)
    finally:
        engine.close()


def test_cancel_frees_the_row(tiny):
    from mva_core.serve_engine import EngineRequest, ServeEngine

    engine = ServeEngine(tiny.model, tiny.base.tokenizer)
    try:
        c = Collector()
        req = engine.submit(EngineRequest(prompt_ids=[1, 5, 6, 7], weights=np.array([0.5, 0.5]),
                                          max_new_tokens=200, min_new_tokens=200, on_event=c))
        req.cancel()
        assert c.finished.wait(60)
        assert c.done.finish_reason == "cancelled" and c.done.completion_tokens < 200
        assert engine.running == 0
    finally:
        engine.close()


def test_too_long_is_refused(tiny):
    from mva_core.generate import PromptTooLongError
    from mva_core.serve_engine import EngineRequest, ServeEngine

    engine = ServeEngine(tiny.model, tiny.base.tokenizer)
    try:
        with pytest.raises(PromptTooLongError, match="max_tokens"):
            engine.submit(EngineRequest(prompt_ids=[1] * 10, weights=np.array([0.5, 0.5]), max_new_tokens=250,
                                        on_event=Collector()))
    finally:
        engine.close()
