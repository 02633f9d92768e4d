"""Scorers checked against independent computations: the reward model's logit by hand, VADER and
profanity-check called directly, brevity by hand, MiniLM embeddings pooled by hand, z-scores by hand."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from mva_core.scorers import (
    HFRewardModel,
    NormaliserError,
    RewardModelError,
    ScoreNormaliser,
    ScorerSpecError,
    UnknownScorerError,
    available_scorers,
    get_scorer,
)
from tests.tiny import make_tokenizer

PROMPTS = ["How do I bake bread?", "Tell me a joke about cats.", "Explain photosynthesis briefly.", "Hi", ""]
RESPONSES = [
    "Mix flour, water, salt and yeast, knead, rest, and bake it hot.",
    "The cat sat on the mat and laughed at the dog. Thank you, that is wonderful!",
    "Plants turn light, water and air into sugar.",
    "",
    "I hate this, it is terrible.",
]


# ---- HF reward models ----

def _tiny_reward_model(path, num_labels=1, pad_token_id=0, seed=0):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=pad_token_id, num_labels=num_labels)
    model = LlamaForSequenceClassification(cfg).eval()
    model.save_pretrained(path)
    return model


def _hand_reward(model, tokenizer, text: str, add_special_tokens: bool) -> float:
    """The reward by hand: backbone on the unpadded text, score head on its last token."""
    ids = torch.tensor([tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]])
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[0, -1]  # (C,)
        return float(model.score(hidden)[0])


@pytest.fixture(scope="module")
def chat_rm(tmp_path_factory):
    """A reward model whose tokenizer has a ChatML template and a pad token."""
    path = tmp_path_factory.mktemp("chat_rm")
    model = _tiny_reward_model(path)
    tok = make_tokenizer(path)
    return path, model, tok


@pytest.fixture(scope="module")
def plain_rm(tmp_path_factory):
    """A reward model whose tokenizer has no chat template and no pad token (eos pads), config pad unset."""
    from transformers import PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("plain_rm")
    model = _tiny_reward_model(path, pad_token_id=None, seed=1)
    chat_tok = make_tokenizer(tmp_path_factory.mktemp("chat_tok"))
    tok = PreTrainedTokenizerFast(tokenizer_object=chat_tok.backend_tokenizer, eos_token="<|im_end|>")
    tok.save_pretrained(path)
    return path, model, tok


def test_hf_reward_is_the_logit_of_the_chat_formatted_pair(chat_rm):
    path, model, tok = chat_rm
    hand = [_hand_reward(model, tok, f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n{r}<|im_end|>\n", False)
            for p, r in zip(PROMPTS, RESPONSES)]
    batched = HFRewardModel(str(path), batch_size=16).score(PROMPTS, RESPONSES)
    one_by_one = HFRewardModel(str(path), batch_size=1).score(PROMPTS, RESPONSES)
    assert batched.dtype == np.float64 and batched.shape == (len(RESPONSES),)
    np.testing.assert_allclose(batched, hand, atol=1e-5)
    np.testing.assert_allclose(one_by_one, hand, atol=1e-5)
    assert np.ptp(batched) > 0  # the rows differ, so the check above is not vacuous


def test_hf_reward_without_template_or_pad_token(plain_rm):
    path, model, tok = plain_rm
    hand = [_hand_reward(model, tok, p + "\n" + r, True) for p, r in zip(PROMPTS, RESPONSES)]
    scorer = HFRewardModel(str(path), batch_size=3)  # batches of unequal lengths, padded with eos
    np.testing.assert_allclose(scorer.score(PROMPTS, RESPONSES), hand, atol=1e-5)
    assert scorer.model.config.pad_token_id == tok.eos_token_id


def test_hf_spec_sign_and_cache(chat_rm):
    path = chat_rm[0]
    reward = get_scorer(f"hf:{path}")
    cost = get_scorer(f"hf:{path}@sign=-1")
    assert get_scorer(f"hf:{path}") is reward  # loaded once per process
    assert cost.name == f"hf:{path}@sign=-1" and "negated" in cost.measures
    np.testing.assert_allclose(cost.score(PROMPTS, RESPONSES), -reward.score(PROMPTS, RESPONSES), atol=1e-6)
    assert get_scorer(f"hf:{path}@batch_size=2,sign=1").batch_size == 2


def test_hf_rejects_more_than_one_label(tmp_path):
    _tiny_reward_model(tmp_path, num_labels=2)
    make_tokenizer(tmp_path)
    with pytest.raises(RewardModelError, match="num_labels == 1"):
        HFRewardModel(str(tmp_path))


@pytest.mark.parametrize("spec", ["hf:some/model@sign=abc", "hf:some/model@colour=red", "hf:@sign=-1",
                                  "hf:some/model@sign=2"])
def test_hf_bad_spec(spec):
    with pytest.raises(ScorerSpecError):
        get_scorer(spec)


def test_unknown_scorer_lists_valid_names():
    with pytest.raises(UnknownScorerError) as err:
        get_scorer("helpfulness")
    for name in ("warmth", "civility", "brevity", "relevance", "hf:"):
        assert name in str(err.value)


def test_available_scorers_say_what_they_measure():
    names = available_scorers()
    assert set(names) >= {"warmth", "civility", "brevity", "relevance"}
    assert "VADER" in names["warmth"] and "MiniLM" in names["relevance"]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one prompt per response"):
        get_scorer("brevity").score(["a"], ["b", "c"])


def test_import_is_light():
    code = "import sys, mva_core.scorers; assert not {'torch', 'transformers', 'sklearn'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- Packaged offline scorers ----

def test_warmth_is_vader_compound():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    got = get_scorer("warmth").score(PROMPTS, RESPONSES)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [vader.polarity_scores(r)["compound"] for r in RESPONSES])
    assert got[3] == 0.0 and got[1] > 0 > got[4]


def test_civility_is_one_minus_profanity_probability():
    from profanity_check import predict_prob

    responses = RESPONSES + ["shut up you stupid idiot, fuck off"]
    got = get_scorer("civility").score([""] * len(responses), responses)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, 1.0 - predict_prob(responses))
    assert got[-1] < 0.5 < got[0]
    assert get_scorer("civility").score([], []).shape == (0,)


def test_brevity_by_hand():
    responses = ["", "one", " ".join(["w"] * 10), " ".join(["w"] * 20), " ".join(["w"] * 60) + "\n"]
    got = get_scorer("brevity").score([""] * 5, responses)
    np.testing.assert_allclose(got, [1.0, 1 / (1 + 1 / 20), 1 / 1.5, 0.5, 0.25])
    assert np.all(np.diff(got) < 0)


def test_relevance_orders_and_matches_hand_pooling():
    from transformers import AutoModel, AutoTokenizer

    from mva_core.scorers import minilm_dir

    rel = get_scorer("relevance")
    prompts = ["How do I bake bread?"] * 2 + ["The cat sat on the mat.", "", "Hi"]
    responses = ["Mix flour, water and yeast, knead the dough and bake it in a hot oven.",
                 "The stock market closed higher on Tuesday.", "The cat sat on the mat.", "anything", ""]
    got = rel.score(prompts, responses)
    assert got.dtype == np.float64
    assert got[0] > got[1] + 0.2  # a relevant answer beats an unrelated one
    assert got[2] == pytest.approx(1.0, abs=1e-5)  # identical text
    assert got[3] == 0.0 and got[4] == 0.0  # empty prompt or response

    # by hand: each text alone (no padding), plain mean over tokens, cosine in numpy
    tok, model = AutoTokenizer.from_pretrained(minilm_dir()), AutoModel.from_pretrained(minilm_dir()).eval()

    def embed(text):
        with torch.no_grad():
            return model(**tok(text, return_tensors="pt")).last_hidden_state[0].mean(0).double().numpy()

    for i in range(2):
        a, b = embed(prompts[i]), embed(responses[i])
        assert got[i] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-5)


# ---- z-score against the base model ----

def test_normaliser_by_hand():
    norm = ScoreNormaliser().fit(np.array([1.0, 2.0, 3.0, 4.0]))
    std = np.sqrt(((np.array([1, 2, 3, 4]) - 2.5) ** 2).mean())  # population std, ddof=0
    assert norm.mean == 2.5 and norm.std == pytest.approx(std)
    np.testing.assert_allclose(norm.transform([2.5, 4.0]), [0.0, 1.5 / std])

    two = ScoreNormaliser().fit(np.array([[0.0, 10.0], [2.0, 10.0]]))  # second value has zero spread
    np.testing.assert_allclose(two.mean, [1.0, 10.0])
    np.testing.assert_allclose(two.std, [1.0, 1.0])  # zero std is stored as 1: shift only
    np.testing.assert_allclose(two.transform([[3.0, 12.0]]), [[2.0, 2.0]])
    with pytest.raises(NormaliserError, match="2 values"):
        two.transform(np.zeros((1, 3)))


def test_normaliser_ignores_and_passes_non_finite():
    norm = ScoreNormaliser().fit(np.array([1.0, np.nan, 3.0, np.inf]))
    assert norm.mean == 2.0 and norm.std == 1.0
    out = norm.transform(np.array([np.nan, 4.0, -np.inf]))
    assert np.isnan(out[0]) and out[1] == 2.0 and out[2] == -np.inf
    with pytest.raises(NormaliserError, match="no finite"):
        ScoreNormaliser().fit(np.array([np.nan, np.nan]))
    with pytest.raises(NormaliserError, match="before fit"):
        ScoreNormaliser().transform(np.array([1.0]))
    rebuilt = ScoreNormaliser(mean=2.0, std=0.0)  # from stored stats; zero std -> 1
    assert rebuilt.transform(np.array([5.0]))[0] == 3.0


def test_hf_pads_with_the_models_own_pad_id(tmp_path):
    """Config says pad = eos (id 2) while the tokenizer pads with id 0: batches must pad with 2,
    or the model would pool a padding position."""
    model = _tiny_reward_model(tmp_path, pad_token_id=2, seed=2)
    tok = make_tokenizer(tmp_path)
    scorer = HFRewardModel(str(tmp_path), batch_size=16)
    assert scorer.tokenizer.pad_token_id == 2
    # the model pools the rightmost non-pad token: the template's final "\n" after <|im_end|>
    hand = [_hand_reward(model, tok, f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n{r}<|im_end|>\n", False)
            for p, r in zip(PROMPTS, RESPONSES)]
    np.testing.assert_allclose(scorer.score(PROMPTS, RESPONSES), hand, atol=1e-5)
