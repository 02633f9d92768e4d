"""Issue 16 item 4: the pairwise LLM judge `judge:hf:MODEL` on a tiny causal LM built here — its verdict read by
hand from the model's logits, both orders averaged (swapping the two responses gives 1 − the preference, while one
order alone is position-biased), batch-invariant, refused rather than cut, and the CLI's win rate against the base."""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

from mva_core.cli import main
from mva_core.judges import (JUDGE_PROMPT, HFLogitJudge, JudgeError, JudgeSpecError, get_judge, judge_key,
                             judge_win_rate)
from mva_core.sweep import Evaluator, evaluate_base
from tests.tiny import make_tiny_llama, make_tiny_workspace

PROMPTS = ["How do I bake bread?", "Tell me a joke about cats.", "Explain photosynthesis briefly."]
A = ["Mix flour, water, salt and yeast, knead, rest, and bake it hot.", "The cat sat on the mat and laughed.",
     "Plants turn light, water and air into sugar."]
B = ["I hate this, it is terrible.", "No.", "Thank you, that is wonderful!"]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("judge") / "lm"
    make_tiny_llama(path, seed=3, context=512)
    return path


def by_hand(path, prompt: str, first: str, second: str) -> float:
    """P(A) for one presentation, read from one unbatched forward: softmax over the logits of the answer tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    text = tok.apply_chat_template([{"role": "user", "content": JUDGE_PROMPT.format(prompt=prompt, a=first, b=second)}],
                                   tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].double()
    vocab = tok.get_vocab()
    score = [torch.logsumexp(logits[[vocab[t] for t in (letter, "Ġ" + letter) if t in vocab]], dim=0)
             for letter in "AB"]
    return float(torch.softmax(torch.stack(score), dim=0)[0])


def test_verdict_is_the_answer_token_softmax_and_swapping_gives_one_minus(judge_dir):
    judge = get_judge(f"judge:hf:{judge_dir}")
    first = judge.first_better(PROMPTS, A, B)
    assert first == pytest.approx([by_hand(judge_dir, p, a, b) for p, a, b in zip(PROMPTS, A, B)], abs=1e-6)
    swapped = judge.first_better(PROMPTS, B, A)
    # one order alone is biased towards a slot: P_A(a, b) + P_A(b, a) is not 1 (a random model has strong bias)
    assert np.abs(first + swapped - 1).max() > 1e-3
    pref, back = judge.prefer(PROMPTS, A, B), judge.prefer(PROMPTS, B, A)
    assert pref == pytest.approx(0.5 + 0.5 * (first - swapped), abs=1e-12)
    assert pref + back == pytest.approx(np.ones(3), abs=1e-12)  # the order-swap property
    assert ((pref >= 0) & (pref <= 1)).all()
    # a response against itself is a tie, whatever the bias
    assert judge.prefer(PROMPTS, A, A) == pytest.approx([0.5] * 3, abs=1e-6)


def test_batches_do_not_change_verdicts_and_win_rate_counts_ties_half(judge_dir):
    wide, narrow = HFLogitJudge(str(judge_dir), batch_size=8), HFLogitJudge(str(judge_dir), batch_size=1)
    assert wide.prefer(PROMPTS, A, B) == pytest.approx(narrow.prefer(PROMPTS, A, B), abs=1e-6)
    responses, reference = [A[0], B[1], A[2]], [B[0], B[1], B[2]]  # prompt 1: the same response -> a tie
    pref = wide.prefer(PROMPTS, responses, reference)
    verdict = judge_win_rate(wide, PROMPTS, responses, reference)
    want = np.mean([0.5 if abs(x - 0.5) < 1e-6 else float(x > 0.5) for x in pref])
    assert verdict.win_rate == pytest.approx(want) and verdict.mean_preference == pytest.approx(pref.mean())
    assert abs(pref[1] - 0.5) < 1e-6


def test_bad_specs_and_inputs_name_the_fix(judge_dir):
    with pytest.raises(JudgeSpecError, match=r"unknown judge kind 'vllm'.*valid kinds: hf"):
        get_judge("judge:vllm:some/model")
    with pytest.raises(JudgeSpecError, match="names no model"):
        get_judge("judge:hf:")
    with pytest.raises(JudgeSpecError, match="must start with 'judge:'"):
        get_judge("hf:some/model")
    judge = get_judge(f"judge:hf:{judge_dir}")
    with pytest.raises(JudgeError, match="over the judge's context of 512.*refused, not cut"):
        judge.prefer(PROMPTS[:1], ["bread " * 400], B[:1])
    with pytest.raises(JudgeError, match="one of each per prompt"):
        judge.prefer(PROMPTS, A[:2], B)


def test_cli_judges_candidates_against_the_base(tmp_path, judge_dir):
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=3)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    ids = ev.evaluate([[0.0, 0.0], [1.0, 1.0]]).candidate_ids
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["judge", "--workspace", str(ws.root), "--judge", f"judge:hf:{judge_dir}",
                     *[a for i in ids for a in ("--candidate", str(i))], "--json"]) == 0
    doc = json.loads(out.getvalue())
    rows = {r["id"]: r for r in doc["candidates"]}
    # w = (0, 0) is the base model itself: the same responses, so every prompt is a tie
    assert rows[ids[0]]["judge_win"] == 0.5 and rows[ids[0]]["judge_preference"] == pytest.approx(0.5, abs=1e-6)
    base = ws.store.responses([doc["base_candidate"]])
    cand = ws.store.responses([ids[1]])
    pref = get_judge(f"judge:hf:{judge_dir}").prefer(base["prompt"].tolist(), cand["response"].tolist(),
                                                     base["response"].tolist())
    assert rows[ids[1]]["judge_preference"] == pytest.approx(pref.mean(), abs=1e-9) and rows[ids[1]]["prompts"] == 3
    assert main(["judge", "--workspace", str(ws.root), "--judge", f"judge:hf:{judge_dir}", "--candidate", "999"]) == 2
    # the verdicts were stored per prompt; a rerun reads them (proved by changing them in the file)
    key = judge_key(f"judge:hf:{judge_dir}")  # the spec with the fingerprint of the judge's files
    assert key.startswith(f"judge:hf:{judge_dir}#")
    assert ws.store.judge_verdicts(key, ids[1], doc["base_candidate"]) == pytest.approx(pref)
    con = sqlite3.connect(ws.root / "mva.sqlite")
    con.execute("UPDATE judge_verdicts SET preference = 0.9 WHERE candidate_id = ?", (ids[1],))
    con.commit()
    con.close()
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["judge", "--workspace", str(ws.root), "--judge", f"judge:hf:{judge_dir}",
                     "--candidate", str(ids[1])]) == 0
    assert f"candidate {ids[1]:>5}  wins 1.00  P(better) 0.900  (3 prompts, from the store)" in out.getvalue()
