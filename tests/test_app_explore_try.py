"""AppTest of Explore's "Try it" box: a message at the sliders' weights through the serving engine, checked against a
model merged at those weights generating alone; the snippets name the same point."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from tests.apptest import APP
from tests.tiny import make_tiny_workspace


def test_try_it_replies_at_slider_weights_and_shows_snippets(tmp_path, monkeypatch):
    from mva_core.compose import merge
    from mva_core.models import chat_prompt, load_base
    from mva_core.vectors import load_value_vector

    ws = make_tiny_workspace(tmp_path)
    monkeypatch.setenv("MVA_WORKSPACE", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    at.slider(key="w_warmth").set_value(0.8)
    at.slider(key="w_brevity").set_value(0.25)
    at.text_input(key="explore_try_message").set_value("Tell me a joke about cats.")
    at.button(key="explore_try_send").click().run()
    assert not at.exception, at.exception
    point, message, reply = at.session_state["explore_try_reply"]
    assert point == {"warmth": 0.8, "brevity": 0.25} and message == "Tell me a joke about cats."

    base = load_base(str(tmp_path / "base"))
    vectors = [load_value_vector(d) for d in ws.vector_dirs("mva-no-hsic")]
    model = merge(base.model, vectors, [0.8, 0.25])
    tok = base.tokenizer
    enc = tok(chat_prompt(tok, message), return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=ws.manifest.decoding.max_new_tokens, do_sample=False,
                         pad_token_id=tok.pad_token_id)
    assert reply == tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    codes = [c.value for c in at.code]
    curl = next(c for c in codes if c.startswith("curl"))
    body = json.loads(curl.split("-d '", 1)[1].rstrip("'"))
    assert body["mva"]["weights"] == {"warmth": 0.8, "brevity": 0.25} and body["messages"][0]["content"] == message
    assert any("extra_body={'mva': {'weights': {'warmth': 0.8, 'brevity': 0.25}}}" in c for c in codes)
