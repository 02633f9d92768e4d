"""DPO value vector training on a tiny random Llama: the loss falls, the saved dir is a value vector and a
plain PEFT adapter, and — computed here by hand from the logits — the preference margin grew."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mva_core.config import ConfigError
from mva_core.methods import UnknownMethodError, available_methods, get_method
from mva_core.config import CPU_SMALL, PAPER, TrainConfig
from mva_core.errors import TrainingError
from mva_core.methods.dpo import train_dpo_vector
from mva_core.methods.harness import OutputExistsError
from mva_core.preference_data import PreferenceDataError, load_preference_jsonl
from mva_core.models import chat_prompt, weights_fingerprint
from mva_core.vectors import load_value_vector
from tiny import make_tiny_llama

PAIRS = [
    {"prompt": "How do I bake bread?", "chosen": "Mix flour, water, salt and yeast, knead, rest, and bake it hot.",
     "rejected": "I hate this, it is terrible."},
    {"prompt": "Tell me a joke about cats.", "chosen": "The cat sat on the mat and laughed at the dog.",
     "rejected": "I hate this, it is terrible."},
    {"prompt": "Explain photosynthesis briefly.", "chosen": "Plants turn light, water and air into sugar.",
     "rejected": "Thank you, that is wonderful!"},
    {"prompt": "You are kind and helpful.", "chosen": "Thank you, that is wonderful!",
     "rejected": "The cat sat on the mat."},
]
STEPS = 12


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    make_tiny_llama(root / "base")
    pairs = load_preference_jsonl(write_jsonl(root / "help.jsonl", PAIRS))
    # Full batch (all 4 pairs per step) so the loss curve is not batch-to-batch noise; high lr for a tiny model.
    cfg = TrainConfig(lora_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], learning_rate=5e-2,
                      max_steps=STEPS, per_device_batch_size=4, max_length=128)
    fp = weights_fingerprint(str(root / "base"))
    summary = train_dpo_vector(str(root / "base"), pairs, "helpful", root / "vec", cfg, fp, progress=False)
    return root, summary, fp


def sequence_logp(model, tokenizer, prompt: str, completion: str) -> float:
    """log π(completion | chat-rendered prompt), summed over completion tokens + EOS, from the logits."""
    text = chat_prompt(tokenizer, prompt)
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = tokenizer(text + completion + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    assert ids[:len(prompt_ids)] == prompt_ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]  # (T, V)
    logp = torch.log_softmax(logits.double(), dim=-1)
    return sum(logp[t - 1, ids[t]].item() for t in range(len(prompt_ids), len(ids)))


def margins(model, tokenizer) -> list[float]:
    return [sequence_logp(model, tokenizer, p["prompt"], p["chosen"])
            - sequence_logp(model, tokenizer, p["prompt"], p["rejected"]) for p in PAIRS]


@pytest.mark.slow
def test_dpo_loss_starts_at_log2_and_decreases(trained):
    _, summary, _ = trained
    losses = summary["losses"]
    assert len(losses) == STEPS
    # LoRA's B starts at zero, so at step 1 the policy is the reference: every log-ratio is 0, loss = log 2.
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)
    assert sum(losses[-3:]) / 3 < losses[0] - 0.03
    assert summary["seconds_per_step"] > 0 and summary["n_pairs_used"] == len(PAIRS)


def test_saved_dir_is_a_value_vector_and_a_peft_adapter(trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root, _, fp = trained
    vec = load_value_vector(root / "vec")
    assert vec.value == "helpful" and vec.method == "dpo" and vec.base_fingerprint == fp
    assert vec.base_model == str(root / "base")
    assert vec.target_modules == ["down_proj", "q_proj", "v_proj"]
    assert all(layer.scaling == pytest.approx(8 / 4) for layer in vec.layers.values())
    assert any(layer.B.abs().max() > 0 for layer in vec.layers.values())  # B left zero-init: training moved it
    meta = vec.meta
    assert meta["n_pairs"] == 4 and len(meta["losses"]) == STEPS and len(meta["data_sha256"]) == 64
    assert meta["train_config"]["beta"] == 0.1 and meta["final_reward_accuracy"] is not None
    assert not (root / "vec" / "adapter_model.bin").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "base"), root / "vec")
    assert model.peft_config["default"].r == 4


def test_preference_margin_grew_over_the_base(trained):
    """Independent of trl: log π(chosen) − log π(rejected), by hand, rises relative to the base on the pairs."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, _, _ = trained
    tokenizer = AutoTokenizer.from_pretrained(root / "base")
    base = AutoModelForCausalLM.from_pretrained(root / "base").eval()
    before = margins(base, tokenizer)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "base"), root / "vec").eval()
    after = margins(tuned, tokenizer)
    gains = [a - b for a, b in zip(after, before)]
    assert sum(gains) / len(gains) > 0.5, gains
    assert sum(g > 0 for g in gains) >= 3, gains


def test_existing_output_refused_and_wrong_fingerprint(trained, tmp_path):
    root, _, fp = trained
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        train_dpo_vector(str(root / "base"), PAIRS, "helpful", root / "vec", CPU_SMALL, fp, progress=False)
    with pytest.raises(TrainingError, match="does not match"):
        train_dpo_vector(str(root / "base"), PAIRS, "helpful", tmp_path / "v", CPU_SMALL, "0" * 16, progress=False)
    assert not (tmp_path / "v").exists()


def test_missing_key_names_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n" + json.dumps({"prompt": "hi", "chosen": "hello"}) + "\n")
    with pytest.raises(PreferenceDataError, match=r"pairs\.jsonl:2: missing field 'rejected'"):
        load_preference_jsonl(path)


@pytest.mark.parametrize("line, expect", [
    (b'{"prompt": "hi", "chosen": "", "rejected": "no"}', r":3: field 'chosen' is empty"),
    (b'{"prompt": "hi", "chosen": "yes", ', r":3: not valid JSON"),
    (b'{"prompt": "caf\xe9", "chosen": "yes", "rejected": "no"}', r":3: bytes are not UTF-8.*re-save"),
])
def test_bad_lines_name_line_and_fix(tmp_path, line, expect):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join([json.dumps(PAIRS[0]).encode(), json.dumps(PAIRS[1]).encode(), line]) + b"\n")
    with pytest.raises(PreferenceDataError, match=expect):
        load_preference_jsonl(path)


def test_identical_chosen_and_rejected_refused(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [PAIRS[0], {"prompt": "a", "chosen": "same", "rejected": "same"}])
    with pytest.raises(PreferenceDataError, match="pair 2 has identical"):
        load_preference_jsonl(path)


def test_registry_and_config_validation():
    assert "dpo" in available_methods() and available_methods()["dpo"]
    assert get_method("dpo").paper.startswith("https://") and get_method("dpo").settings == ()  # β, LoRA shape: TrainConfig
    with pytest.raises(UnknownMethodError, match="valid methods: .*dpo"):
        get_method("dpo-typo")
    assert (PAPER.lora_r, PAPER.lora_alpha, CPU_SMALL.lora_r, CPU_SMALL.lora_alpha) == (64, 128, 8, 16)
    assert TrainConfig.from_dict(CPU_SMALL.to_dict()) == CPU_SMALL
    for bad in ({"lora_r": 0}, {"target_modules": ["lm_head"]}, {"beta": -1.0}, {"max_steps": 0},
                {"target_modules": "q_proj"}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
