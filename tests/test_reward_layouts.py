"""Reward models are read as their trainers read them (issue 14 items 1-2), on tiny stand-ins built here with the
paper models' layouts: a GPT-2 sequence classifier under a `Ray2333/gpt2-large-…` path (HH-RLHF text) and a
safe-rlhf `LlamaModelForScore` (`model.*` + `score_head.weight`) under a `PKU-Alignment/beaver-…` path. Every
expected reward is computed by hand from the modules' own forward; a model with a missing weight is refused."""

from __future__ import annotations

import json

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
