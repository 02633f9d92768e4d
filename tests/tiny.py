"""Tiny random models built by the tests themselves (offline, seconds): a Llama causal LM, a BPE
tokenizer with a ChatML template, LoRA value vectors made with peft, and a reward classifier."""

from __future__ import annotations

import json
from pathlib import Path

import torch

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "How do I bake bread? Mix flour, water, salt and yeast, knead, rest, and bake it hot.",
    "You are kind and helpful. Thank you, that is wonderful! I hate this, it is terrible.",
    "Tell me a joke about cats. The cat sat on the mat and laughed at the dog.",
    "Explain photosynthesis briefly: plants turn light, water and air into sugar.",
]


def make_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(path)
    return fast


def make_tiny_llama(path: Path, seed: int = 0, vocab_size: int = 400, context: int = 256):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(path)
    make_tokenizer(path)
    return model


def make_value_vector(base_dir: Path, out: Path, value: str, seed: int, r: int = 4, alpha: int = 8,
                      targets=("q_proj", "v_proj", "down_proj"), method: str = "test") -> Path:
    """A peft LoRA adapter with random (non-zero) A and B, saved the way peft saves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from mva_core.models import weights_fingerprint

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    peft_model.save_pretrained(out)
    (out / "mva_vector.json").write_text(json.dumps({
        "value": value, "method": method, "base_model": str(base_dir),
        "base_fingerprint": weights_fingerprint(str(base_dir))}))
    return out


def make_tiny_workspace(root: Path, method: str = "mva-no-hsic", n_prompts: int = 3, decoding=None,
                        scorers: tuple[str, str] = ("warmth", "brevity")):
    """A workspace over the tiny Llama: two values measured by cheap packaged scorers, one vector set.
    `decoding` (a DecodingConfig) replaces the default greedy 8-token decoding; `scorers` measure the two values
    (warmth, brevity) — e.g. civility, which varies on the tiny model's text where VADER's warmth is mostly 0."""
    from mva_core.config import DecodingConfig
    from mva_core.data import write_jsonl
    from mva_core.workspace import Manifest, ValueSpec, Workspace

    make_tiny_llama(root / "base")
    for i, value in enumerate(["warmth", "brevity"]):
        make_value_vector(root / "base", root / "vectors" / method / value, value, seed=10 + i, method=method)
    prompts = ["How do I bake bread?", "Tell me a joke about cats.", "Explain photosynthesis briefly.",
               "You are kind and helpful, thank you!"][:n_prompts]
    write_jsonl(root / "prompts" / "validation.jsonl", [{"prompt": p} for p in prompts])
    return Workspace.create(root, Manifest(
        base=str(root / "base"), values=[ValueSpec("warmth", scorers[0]), ValueSpec("brevity", scorers[1])], C=1.0,
        decoding=decoding or DecodingConfig(max_new_tokens=8, batch_size=8), description="tiny test workspace"))
