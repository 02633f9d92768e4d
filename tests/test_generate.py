"""Batched generation: one weight-batched call == each candidate merged and decoded alone."""

import numpy as np
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from mva_core.compose import WeightBatchedModel, merge
from mva_core.config import DecodingConfig
from mva_core.generate import generate_responses
from mva_core.vectors import load_value_vectors
from tests.tiny import make_tiny_llama, make_value_vector

PROMPTS = ["How do I bake bread?", "Tell me a joke about cats, please, a long one with a dog in it.", "Hi"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    make_tiny_llama(root / "base")
    dirs = [make_value_vector(root / "base", root / n, n, seed=s) for n, s in [("a", 1), ("b", 2)]]
    base = AutoModelForCausalLM.from_pretrained(root / "base").eval()
    tok = AutoTokenizer.from_pretrained(root / "base")
    return base, tok, load_value_vectors(dirs)


@pytest.mark.slow
def test_weight_batched_generation_equals_merged_per_candidate(setup):
    base, tok, vectors = setup
    W = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 1.5]])
    dec = DecodingConfig(max_new_tokens=10, batch_size=4)  # rows of different candidates share a batch
    batched = generate_responses(WeightBatchedModel(base, vectors), tok, PROMPTS, W, dec)
    assert len(batched) == 3 and all(len(r) == len(PROMPTS) for r in batched)
    for k, w in enumerate(W):
        alone = generate_responses(merge(base, vectors, w), tok, PROMPTS, None, DecodingConfig(max_new_tokens=10, batch_size=1))[0]
        assert batched[k] == alone, f"candidate {w}"
    assert batched[0] != batched[2]  # the vectors change what is generated


def test_responses_exclude_the_prompt_and_padding_is_left(setup):
    base, tok, _ = setup
    dec1 = DecodingConfig(max_new_tokens=8, batch_size=1)
    dec3 = DecodingConfig(max_new_tokens=8, batch_size=3)
    one = generate_responses(base, tok, PROMPTS, None, dec1)[0]
    three = generate_responses(base, tok, PROMPTS, None, dec3)[0]
    assert one == three  # left padding: batching prompts of different length changes nothing
    for p, r in zip(PROMPTS, one):
        assert "<|im_start|>" not in r and not r.startswith(p)


@pytest.mark.slow
def test_greedy_agreement_step_by_step(setup):
    from mva_core.generate import greedy_agreement

    base, tok, vectors = setup
    wb = WeightBatchedModel(base, vectors)
    for w in ([0.0, 0.0], [1.0, 0.35], [2.0, 1.5]):
        res = greedy_agreement(merge(base, vectors, w), wb, tok, PROMPTS, w,
                               DecodingConfig(max_new_tokens=12, min_new_tokens=12), atol=1e-4)
        assert res["steps"] >= len(PROMPTS) * 12 - 2
        assert res["mismatches"] == 0 and res["max_abs_logit_diff"] < 1e-4, res
    # A different weight vector is caught: the check can fail.
    res = greedy_agreement(merge(base, vectors, [1.0, 0.0]), wb, tok, PROMPTS, [0.0, 1.0],
                           DecodingConfig(max_new_tokens=12), atol=1e-4)
    assert res["max_abs_logit_diff"] > 1e-2


def test_progress_moves_every_token_and_cancel_stops_at_the_next(tmp_path):
    """Issue 17 item 2: the bar moves during a generate call (one report per decoding step, total = calls ×
    max_new_tokens) and a Cancel stops decoding at the next token, returning nothing of that call."""
    import threading

    from mva_core.generate import Cancelled
    from tests.tiny import make_tiny_llama, make_tokenizer

    model = make_tiny_llama(tmp_path / "m")
    tok = make_tokenizer(tmp_path / "m")
    decoding = DecodingConfig(max_new_tokens=6, min_new_tokens=6, batch_size=2)  # 3 prompts: 2 calls of 6 steps
    seen: list[tuple[int, int]] = []
    generate_responses(model, tok, PROMPTS[:3], None, decoding, progress=lambda d, t: seen.append((d, t)))
    assert {t for _, t in seen} == {12}
    assert [d for d, _ in seen if d <= 6][:6] == [1, 2, 3, 4, 5, 6]  # one report per token of the first call
    assert seen[-1][0] == 12 and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))

    cancel, steps = threading.Event(), []

    def on_progress(done: int, total: int) -> None:
        steps.append(done)
        if done == 3:
            cancel.set()  # what the Cancel button does, from another thread

    with pytest.raises(Cancelled, match="generate call 1 of 2"):
        generate_responses(model, tok, PROMPTS[:3], None, decoding, progress=on_progress, cancel=cancel)
    assert max(steps) == 3  # stopped right after the step that saw the request
