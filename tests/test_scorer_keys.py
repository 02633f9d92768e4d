"""Issue 25 items 3 and 4: stored scores and judge verdicts are keyed by the content of the model that computed them
(the spec with a fingerprint of its files), so replacing the weights at `hf:DIR` scores (and judges) anew, with the
new model's numbers read by hand, not the old ones from the store; the fingerprint of a file is read once per
change (its cache entry answers); and a judge checkpoint without its `lm_head` is refused, nothing stored."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from contextlib import redirect_stderr

import numpy as np
import pandas as pd
import pytest
import torch

from mva_core import fingerprints
from mva_core.cli import main
from mva_core.judges import judge_key
from mva_core.results import judge_against_base
from mva_core.scorers import scorer_key
from mva_core.sweep import Evaluator, evaluate_base, sweep
from tests.test_judge import by_hand
from tests.tiny import make_tiny_llama, make_tiny_workspace, make_tokenizer

GRID = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


@pytest.fixture(autouse=True)
def own_fingerprint_cache(tmp_path, monkeypatch):
    """Each test its own cache file (and an empty memo), so what it finds there it wrote itself."""
    monkeypatch.setenv("MVA_FINGERPRINT_CACHE", str(tmp_path / "fingerprints.json"))
    monkeypatch.setattr(fingerprints, "_MEMO", {})


def save_reward_model(path, seed: int):
    """A one-logit Llama sequence classifier with random weights (`seed`), written over whatever is at `path`."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0, num_labels=1)
    model = LlamaForSequenceClassification(cfg).eval()
    model.save_pretrained(path)
    return model


def reward_by_hand(model, tok, prompts, responses) -> np.ndarray:
    """The reward by hand: ChatML text (the tokenizer's template), backbone unbatched, score head on the last token."""
    out = []
    for p, r in zip(prompts, responses):
        text = f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n{r}<|im_end|>\n"
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            out.append(float(model.score(model.model(input_ids=ids).last_hidden_state[0, -1])[0]))
    return np.array(out)


@pytest.mark.slow
def test_sweep_scores_anew_when_the_reward_model_at_the_path_is_replaced(tmp_path):
    rm = tmp_path / "rm"
    old_model = save_reward_model(rm, seed=0)
    tok = make_tokenizer(rm)
    spec = f"hf:{rm}"
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=3, scorers=(spec, "brevity"))
    ev = Evaluator(ws, "mva-no-hsic")
    base_id = evaluate_base(ws, ev.base)
    ids = sweep(ev, GRID).candidate_ids + [base_id]
    rows = ws.store.responses(ids)

    def stored_means():
        table = ws.store.candidates().set_index("id")  # no column at all when no score answers for the spec
        return table.get(f"s_{spec}", pd.Series(np.nan, index=table.index)).loc[ids].to_numpy(dtype=float)

    def by_hand_means(model):
        hand = reward_by_hand(model, tok, rows["prompt"].tolist(), rows["response"].tolist())
        return np.array([hand[(rows["candidate_id"] == cid).to_numpy()].mean() for cid in ids])

    old = by_hand_means(old_model)
    np.testing.assert_allclose(stored_means(), old, atol=1e-5)
    old_key = scorer_key(spec)
    assert old_key == f"{spec}#{fingerprints.model_fingerprint(str(rm))}"

    new_model = save_reward_model(rm, seed=1)  # other weights at the same path; same tokenizer
    new = by_hand_means(new_model)
    assert np.abs(new - old).max() > 1e-3  # the two models disagree, so the checks below can tell them apart
    assert scorer_key(spec) != old_key
    assert np.isnan(stored_means()).all()  # the old model's scores no longer answer for the spec
    again = sweep(ev, GRID)
    assert again.generated == 0 and again.candidate_ids == ids[:-1]  # every candidate from the store ...
    evaluate_base(ws, ev.base)
    np.testing.assert_allclose(stored_means(), new, atol=1e-5)  # ... and scored by the new model
    per_prompt = ws.store.responses(ids)[spec].to_numpy(dtype=float)
    np.testing.assert_allclose(per_prompt, reward_by_hand(new_model, tok, rows["prompt"].tolist(),
                                                          rows["response"].tolist()), atol=1e-5)
    assert (ws.store.responses(ids)["brevity"].to_numpy() == rows["brevity"].to_numpy()).all()  # packaged: kept

    con = sqlite3.connect(ws.root / "mva.sqlite")
    keys = {k for (k,) in con.execute("SELECT DISTINCT scorer FROM scores")}
    n_old = con.execute("SELECT COUNT(*) FROM scores WHERE scorer = ?", (old_key,)).fetchone()[0]
    con.close()
    assert keys == {old_key, scorer_key(spec), "brevity"} and n_old == len(rows)  # nothing lost: old rows kept

    # The model's files gone from this machine (a workspace copied without them): the scores written last show.
    os.rename(rm, tmp_path / "rm-moved")
    assert scorer_key(spec) is None
    np.testing.assert_allclose(stored_means(), new, atol=1e-5)


def test_scores_an_older_version_stored_under_the_bare_spec_are_not_taken_for_the_model(tmp_path):
    """A store written before content keys holds `hf:DIR` rows: nothing says which weights made them, so they do not
    answer for the files at DIR now, and a sweep scores them again (packaged scorers' rows keep their name)."""
    rm = tmp_path / "rm"
    model = save_reward_model(rm, seed=2)
    tok = make_tokenizer(rm)
    spec = f"hf:{rm}"
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2, scorers=(spec, "brevity"))
    ev = Evaluator(ws, "mva-no-hsic")
    ids = ev.evaluate(GRID[:2]).candidate_ids
    con = sqlite3.connect(ws.root / "mva.sqlite")
    con.execute("UPDATE scores SET scorer = ?, value = 9.0 WHERE scorer = ?", (spec, scorer_key(spec)))
    con.commit()
    con.close()
    assert f"s_{spec}" not in ws.store.candidates()  # no score answers for the spec
    assert ev.evaluate(GRID[:2]).generated == 0
    rows = ws.store.responses(ids)
    np.testing.assert_allclose(rows[spec].to_numpy(dtype=float),
                               reward_by_hand(model, tok, rows["prompt"].tolist(), rows["response"].tolist()), atol=1e-5)


def save_judge(path, seed: int) -> None:
    """A tiny causal LM (ChatML tokenizer) initialised with a wide spread (0.3, not 0.02), so its verdicts depend on
    the replies and two judges' verdicts differ by far more than float noise (at 0.02 both stay within 1e-4 of ½)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0, tie_word_embeddings=False, initializer_range=0.3)
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    make_tokenizer(path)


def test_judge_verdicts_are_judged_anew_when_the_judge_model_is_replaced(tmp_path):
    judge_dir = tmp_path / "judge"
    save_judge(judge_dir, seed=3)
    spec = f"judge:hf:{judge_dir}"
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=3)
    ev = Evaluator(ws, "mva-no-hsic")
    base_id = evaluate_base(ws, ev.base)
    cid = ev.evaluate([[1.0, 1.0]]).candidate_ids[0]
    base, cand = ws.store.responses([base_id]), ws.store.responses([cid])
    prompts, a, b = base["prompt"].tolist(), cand["response"].tolist(), base["response"].tolist()

    def pref_by_hand() -> np.ndarray:
        return np.array([0.5 + 0.5 * (by_hand(judge_dir, p, x, y) - by_hand(judge_dir, p, y, x))
                         for p, x, y in zip(prompts, a, b)])

    first = judge_against_base(ws, [cid], base_id, spec).iloc[0]
    old = pref_by_hand()
    assert not first["from_store"] and first["judge_preference"] == pytest.approx(old.mean(), abs=1e-6)
    assert judge_against_base(ws, [cid], base_id, spec).iloc[0]["from_store"]
    old_key = judge_key(spec)

    save_judge(judge_dir, seed=4)  # another judge at the same path
    new = pref_by_hand()
    assert abs(new.mean() - old.mean()) > 1e-2
    assert judge_key(spec) != old_key
    after = judge_against_base(ws, [cid], base_id, spec).iloc[0]
    assert not after["from_store"] and after["judge_preference"] == pytest.approx(new.mean(), abs=1e-6)
    assert ws.store.judge_verdicts(judge_key(spec), cid, base_id) == pytest.approx(new, abs=1e-6)
    assert ws.store.judge_verdicts(old_key, cid, base_id) == pytest.approx(old, abs=1e-6)  # kept, not answering
    assert judge_against_base(ws, [cid], base_id, spec).iloc[0]["from_store"]


def test_a_judge_checkpoint_without_its_lm_head_is_refused_and_nothing_stored(tmp_path):
    from safetensors.torch import load_file, save_file

    judge_dir = tmp_path / "judge"
    make_tiny_llama(judge_dir, seed=3, context=512)
    weights = load_file(judge_dir / "model.safetensors")
    assert "lm_head.weight" in weights  # untied: the head is a tensor of its own
    del weights["lm_head.weight"]
    save_file(weights, judge_dir / "model.safetensors", metadata={"format": "pt"})
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    cid = ev.evaluate([[1.0, 1.0]]).candidate_ids[0]
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["judge", "--workspace", str(ws.root), "--judge", f"judge:hf:{judge_dir}", "--candidate", str(cid)])
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]  # (progress bars aside)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err.getvalue(), err.getvalue()
    assert lines[0].startswith("error: judge model ") and "no trained weights for lm_head.weight" in lines[0]
    con = sqlite3.connect(ws.root / "mva.sqlite")
    assert con.execute("SELECT COUNT(*) FROM judge_verdicts").fetchone()[0] == 0
    con.close()


def test_a_files_hash_is_read_from_the_cache_until_the_file_changes(tmp_path):
    rm = tmp_path / "rm"
    save_reward_model(rm, seed=0)
    make_tokenizer(rm)
    weights = (rm / "model.safetensors").resolve()
    first = fingerprints.model_fingerprint(str(rm))
    cache = fingerprints.fingerprint_cache_path()
    doc = json.loads(cache.read_text())
    entry = dict(doc["files"][str(weights)])
    st = weights.stat()
    assert entry == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino,
                     "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert {"config.json", "tokenizer.json"} <= {os.path.basename(p) for p in doc["files"]}

    # A new process (empty memo) takes the hash from the cache file: an entry we falsify is what it answers,
    # so the file was not read again.
    doc["files"][str(weights)]["sha256"] = "0" * 64
    cache.write_text(json.dumps(doc))
    fingerprints._MEMO.clear()
    assert fingerprints.file_sha256(weights) == "0" * 64
    assert fingerprints.model_fingerprint(str(rm)) != first
    # The file changed (a new mtime, same size and bytes): hashed again, the true hash back.
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert fingerprints.file_sha256(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert fingerprints.model_fingerprint(str(rm)) == first
    assert json.loads(cache.read_text())["files"][str(weights)]["sha256"] == entry["sha256"]
