"""A base model without a chat template (the paper's Llama-2-7B) reads HH-RLHF dialogue text and its reply stops at
the next human turn (issue 14 item 3). The stop is checked on a tiny model built to emit one token forever: the
token "\\n\\nHuman:" itself."""

from __future__ import annotations

import torch
from tokenizers import AddedToken

from mva_core.config import DecodingConfig
from mva_core.generate import generate_responses
from mva_core.models import chat_prompt, dialogue_prompt
from tests.tiny import make_tiny_llama, make_tokenizer


def test_dialogue_prompt_by_hand():
    assert dialogue_prompt("How do I bake bread?") == "\n\nHuman: How do I bake bread?\n\nAssistant:"
    multi = "Human: Hi\n\nAssistant: Hello!\n\nHuman: Bake bread?"  # as `data --from hh-rlhf` writes several turns
    assert dialogue_prompt(multi) == "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bake bread?\n\nAssistant:"
    assert dialogue_prompt("Hi", "Be brief.") == "Be brief.\n\nHuman: Hi\n\nAssistant:"


def test_reply_stops_at_the_next_human_turn(tmp_path):
    model = make_tiny_llama(tmp_path / "m", vocab_size=408)  # room for the two added tokens
    tok = make_tokenizer(tmp_path / "m")
    tok.chat_template = None
    tok.add_tokens([AddedToken("\n\nHuman:", normalized=False, special=False), AddedToken("ok", special=False)])
    human, ok = tok.convert_tokens_to_ids("\n\nHuman:"), tok.convert_tokens_to_ids("ok")
    assert max(human, ok) < model.config.vocab_size
    assert chat_prompt(tok, "Bake bread?") == "\n\nHuman: Bake bread?\n\nAssistant:"

    def always(token_id: int) -> None:
        """Make greedy decoding emit `token_id` at every step: no residual updates, equal embeddings, one row."""
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            model.model.embed_tokens.weight.fill_(1.0)
            model.lm_head.weight.zero_()
            model.lm_head.weight[token_id] = 1.0

    decoding = DecodingConfig(max_new_tokens=6, batch_size=2)
    always(ok)
    assert generate_responses(model, tok, ["Bake bread?", "Hi"], None, decoding)[0] == ["okokokokokok"] * 2
    always(human)  # the model opens the next human turn at once: the reply is empty, not six turns of it
    assert generate_responses(model, tok, ["Bake bread?", "Hi"], None, decoding)[0] == ["", ""]
