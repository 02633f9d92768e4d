"""Reward models are read as their trainers read them (issue 14 items 1-2), on tiny stand-ins built here with the
paper models' layouts: a GPT-2 sequence classifier under a `Ray2333/gpt2-large-…` path (HH-RLHF text) and a
safe-rlhf `LlamaModelForScore` (`model.*` + `score_head.weight`) under a `PKU-Alignment/beaver-…` path. Every
expected reward is computed by hand from the modules' own forward; a model with a missing weight is refused."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mva_core.scorers import HFRewardModel, RewardModelError, ScorerSpecError, get_scorer
from tests.tiny import make_tokenizer

PROMPTS = ["How do I bake bread?", "Tell me a joke about cats."]
RESPONSES = ["Mix flour and water, then bake it hot.", "The cat sat on the mat."]


def plain_tokenizer(path):
    tok = make_tokenizer(path)
    tok.chat_template = None
    tok.save_pretrained(path)
    (path / "tokenizer_config.json").write_text(
        json.dumps({k: v for k, v in json.loads((path / "tokenizer_config.json").read_text()).items()
                    if k != "chat_template"}))
    for f in path.glob("chat_template.*"):
        f.unlink()
    return tok


@pytest.fixture(scope="module")
def gpt2_rm(tmp_path_factory):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    path = tmp_path_factory.mktemp("hub") / "Ray2333" / "gpt2-large-harmless-reward_model"
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(vocab_size=400, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                                     num_labels=1, pad_token_id=0)).eval()
    model.save_pretrained(path)
    return path, model, plain_tokenizer(path)


@pytest.fixture(scope="module")
def beaver(tmp_path_factory):
    """A safe-rlhf score model: LlamaModel weights under `model.` and a bias-free `score_head` (score_dim 1)."""
    from transformers import LlamaConfig, LlamaModel

    path = tmp_path_factory.mktemp("hub") / "PKU-Alignment" / "beaver-7b-v1.0-cost"
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2, architectures=["LlamaModelForScore"])
    cfg.score_dim, cfg.bias, cfg.score_type = 1, False, "cost"
    backbone = LlamaModel(cfg).eval()
    head = torch.nn.Linear(32, 1, bias=False)
    torch.nn.init.normal_(head.weight, std=0.5)
    path.mkdir(parents=True)
    cfg.save_pretrained(path)
    state = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    save_file({**state, "score_head.weight": head.weight.detach().clone()}, str(path / "model.safetensors"),
              metadata={"format": "pt"})
    return path, backbone, head, plain_tokenizer(path)


def by_hand(tok, text: str, forward) -> float:
    ids = torch.tensor([tok(text, add_special_tokens=True)["input_ids"]])
    with torch.no_grad():
        return float(forward(ids))


def test_gpt2_reward_model_reads_hh_rlhf_text_by_default(gpt2_rm):
    path, model, tok = gpt2_rm
    hh = [by_hand(tok, f"\n\nHuman: {p}\n\nAssistant: {r}", lambda ids: model(ids).logits[0, 0])
          for p, r in zip(PROMPTS, RESPONSES)]
    plain = [by_hand(tok, f"{p}\n{r}", lambda ids: model(ids).logits[0, 0]) for p, r in zip(PROMPTS, RESPONSES)]
    scorer = HFRewardModel(str(path), batch_size=2)
    assert scorer.template == "hh" and "template 'hh'" in scorer.measures
    np.testing.assert_allclose(scorer.score(PROMPTS, RESPONSES), hh, rtol=1e-5, atol=1e-6)
    as_plain = get_scorer(f"hf:{path}@template=plain")
    np.testing.assert_allclose(as_plain.score(PROMPTS, RESPONSES), plain, rtol=1e-5, atol=1e-6)
    assert not np.allclose(hh, plain)  # the template matters: the 0.109 vs 0.003


def test_safe_rlhf_score_model_is_its_end_score(beaver):
    path, backbone, head, tok = beaver
    eos = tok.eos_token

    def end_score(ids):
        return head(backbone(ids).last_hidden_state[0, -1])[0]

    hand = [by_hand(tok, f"BEGINNING OF CONVERSATION: USER: {p} ASSISTANT:{r}{eos}", end_score)
            for p, r in zip(PROMPTS, RESPONSES)]
    reward = HFRewardModel(str(path), batch_size=2)  # rows of unequal length share a right-padded batch
    assert reward.safe_rlhf and reward.template == "pku" and "safe-rlhf end score" in reward.measures
    np.testing.assert_allclose(reward.score(PROMPTS, RESPONSES), hand, rtol=1e-5, atol=1e-6)
    cost = get_scorer(f"hf:{path}@sign=-1")
    np.testing.assert_allclose(cost.score(PROMPTS, RESPONSES), -np.asarray(hand), rtol=1e-5, atol=1e-6)
    again = HFRewardModel(str(path), batch_size=1)  # a second load gives the same numbers: nothing random
    np.testing.assert_allclose(again.score(PROMPTS, RESPONSES), hand, rtol=1e-5, atol=1e-6)


def test_safe_rlhf_checkpoint_read_as_a_classifier_is_refused(beaver, tmp_path):
    """What AutoModelForSequenceClassification alone does to a beaver checkpoint: `score.weight` newly initialised."""
    src, *_ = beaver
    path = tmp_path / "mislabelled"
    path.mkdir()
    for f in src.iterdir():
        (path / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(architectures=["LlamaForSequenceClassification"], num_labels=1)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RewardModelError, match=r"no trained weights for score\.weight .*would be random"):
        HFRewardModel(str(path))


def test_a_causal_lm_is_refused_naming_the_missing_head(tmp_path):
    from tests.tiny import make_tiny_llama

    make_tiny_llama(tmp_path / "lm")
    with pytest.raises(RewardModelError, match=r"score\.weight .*LlamaForCausalLM"):
        HFRewardModel(str(tmp_path / "lm"))


def test_safe_rlhf_without_its_head_is_refused(beaver, tmp_path):
    from safetensors.torch import load_file

    src, *_ = beaver
    path = tmp_path / "headless"
    path.mkdir()
    for f in src.iterdir():
        if f.name != "model.safetensors":
            (path / f.name).write_bytes(f.read_bytes())
    state = {k: v for k, v in load_file(str(src / "model.safetensors")).items() if not k.startswith("score_head")}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RewardModelError, match="no score_head.weight"):
        HFRewardModel(str(path))


def test_template_option_is_checked(gpt2_rm):
    path, *_ = gpt2_rm
    with pytest.raises(ScorerSpecError, match="template='xml'"):
        get_scorer(f"hf:{path}@template=xml")
    with pytest.raises(ScorerSpecError, match="has no chat template"):
        get_scorer(f"hf:{path}@template=chat")


# ---- Read as trained by default (issue 27 item 5) ----

def copy_model(src, dst):
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_safe_rlhf_layout_reads_pku_text_without_template(beaver, tmp_path):
    """The layout alone (`LlamaModelForScore`, no PKU path) gives safe-rlhf's text, not plain text."""
    src, backbone, head, tok = beaver
    path = copy_model(src, tmp_path / "my-org" / "score-model")  # nothing in the path says safe-rlhf

    def end_score(ids):
        return head(backbone(ids).last_hidden_state[0, -1])[0]

    pku = [by_hand(tok, f"BEGINNING OF CONVERSATION: USER: {p} ASSISTANT:{r}{tok.eos_token}", end_score)
           for p, r in zip(PROMPTS, RESPONSES)]
    plain = [by_hand(tok, f"{p}\n{r}", end_score) for p, r in zip(PROMPTS, RESPONSES)]
    inferred = get_scorer(f"hf:{path}")
    assert inferred.template == "pku" and "template 'pku'" in inferred.measures
    np.testing.assert_allclose(inferred.score(PROMPTS, RESPONSES), pku, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(get_scorer(f"hf:{path}@template=pku").score(PROMPTS, RESPONSES), pku,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(get_scorer(f"hf:{path}@template=plain").score(PROMPTS, RESPONSES), plain,
                               rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(pku) - np.asarray(plain)).min() > 1e-3  # the 3.37 vs -9.95


class Collect(logging.Handler):
    """Every record transformers logs (its root logger does not propagate, and its stderr handler holds the stream
    it found at import, so neither caplog nor capfd is sure to see its load report)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.text = ""

    def emit(self, record):
        self.text += record.getMessage() + "\n"

    def __enter__(self):
        logging.getLogger("transformers").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("transformers").removeHandler(self)


def test_safe_rlhf_load_report_does_not_reach_the_user(beaver, tmp_path, capfd):
    """transformers reports the checkpoint's score_head as UNEXPECTED to a plain AutoModel; we read that head."""
    src, *_ = beaver
    path = copy_model(src, tmp_path / "quiet")
    with Collect() as logged:
        HFRewardModel(str(path)).score(PROMPTS, RESPONSES)
    err = capfd.readouterr().err
    assert "UNEXPECTED" not in err and "score_head" not in err, err
    assert "UNEXPECTED" not in logged.text and "LOAD REPORT" not in logged.text, logged.text


def test_a_stray_tensor_beside_the_score_head_is_still_reported(beaver, tmp_path):
    """Only the head we read is expected: another unknown tensor in the checkpoint still shows in the report (and
    the collector above does see transformers' report)."""
    from safetensors.torch import load_file

    src, *_ = beaver
    path = copy_model(src, tmp_path / "stray")
    state = load_file(str(path / "model.safetensors"))
    save_file({**state, "value_head.weight": torch.zeros(1, 32)}, str(path / "model.safetensors"),
              metadata={"format": "pt"})
    with Collect() as logged:
        HFRewardModel(str(path))
    assert "LOAD REPORT" in logged.text and "value_head.weight" in logged.text and "score_head" not in logged.text


def test_plain_text_guess_is_told_once(gpt2_rm, tmp_path):
    """No chat template, no template=, no known layout: scored on plain text, and the user told so once, with the
    format used and how to name another."""
    from mva_core.notices import notices_to

    src, model, tok = gpt2_rm
    path = copy_model(src, tmp_path / "unknown-org" / "some-reward-model")
    plain = [by_hand(tok, f"{p}\n{r}", lambda ids: model(ids).logits[0, 0]) for p, r in zip(PROMPTS, RESPONSES)]
    told: list[str] = []
    with notices_to(told.append):
        scorer = get_scorer(f"hf:{path}")
        assert scorer.template == "plain"
        np.testing.assert_allclose(scorer.score(PROMPTS, RESPONSES), plain, rtol=1e-5, atol=1e-6)
        scorer.score(PROMPTS[:1], RESPONSES[:1])
        HFRewardModel(str(path), batch_size=1).score(PROMPTS, RESPONSES)  # another load of the same model
    assert len(told) == 1, told
    assert "{prompt}\\n{response}" in told[0] and "template=plain" in told[0]
    assert f"hf:{path}@template=" in told[0] and str(path) in told[0]
    told.clear()
    with notices_to(told.append):  # chosen, not guessed: nothing to tell
        get_scorer(f"hf:{copy_model(src, tmp_path / 'explicit')}@template=plain").score(PROMPTS, RESPONSES)
    assert told == []
