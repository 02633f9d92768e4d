"""Exports name the base portably (issue 14 item 5): the embedded default by its hub id, any other base by the path
the user gave; no path of the machine's model cache appears in any exported or shipped file; cards follow the
Hub's conventions (`base_model`, `library_name` of what the folder holds, `tags`)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from mva_core.export import export_card, export_mergekit, export_peft
from mva_core.models import DEFAULT_BASE, DEFAULT_BASE_HUB_ID, BaseModel, weights_fingerprint
from mva_core.vectors import load_value_vector
from mva_core.workspace import DEMO_WORKSPACE
from tests.tiny import make_tiny_llama, make_value_vector


def card_meta(folder: Path) -> dict:
    return yaml.safe_load((folder / "README.md").read_text().split("---")[1])


def test_default_base_is_named_by_hub_id_and_no_cache_path_leaks(tmp_path):
    cache = tmp_path / "home" / ".cache" / "mva_explorer" / "models" / DEFAULT_BASE  # where the GGUF is converted
    make_tiny_llama(cache)
    vec = load_value_vector(make_value_vector(cache, tmp_path / "vec" / "warmth", "warmth", seed=1))
    base = BaseModel(model=AutoModelForCausalLM.from_pretrained(cache), tokenizer=AutoTokenizer.from_pretrained(cache),
                     spec=DEFAULT_BASE, path=str(cache), fingerprint=weights_fingerprint(str(cache)))
    peft_dir = export_peft(base, [vec], [0.5], tmp_path / "peft")
    recipe_dir = export_mergekit(base, [vec], [0.5], tmp_path / "mergekit")
    card_dir = export_card(base, [vec], [0.5], tmp_path / "card")
    for folder in (peft_dir, recipe_dir, card_dir):
        for f in folder.rglob("*"):
            if f.is_file() and f.suffix in {".json", ".yaml", ".md", ""}:
                assert str(cache) not in f.read_text(errors="ignore"), f"{f} names the cache dir"
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(peft_dir).base_model_name_or_path == DEFAULT_BASE_HUB_ID
    assert json.loads((peft_dir / "mva_vector.json").read_text())["base_model"] == DEFAULT_BASE_HUB_ID
    assert yaml.safe_load((recipe_dir / "mergekit.yaml").read_text())["base_model"] == DEFAULT_BASE_HUB_ID
    meta = card_meta(peft_dir)
    assert meta["base_model"] == DEFAULT_BASE_HUB_ID and meta["library_name"] == "peft" and "lora" in meta["tags"]
    assert card_meta(recipe_dir)["library_name"] == "mergekit" and "library_name" not in card_meta(card_dir)
    assert "de-quantised from the Q4_1 GGUF" in (peft_dir / "README.md").read_text()


def test_a_user_path_is_kept_as_given(tmp_path):
    make_tiny_llama(tmp_path / "mybase")
    vec = load_value_vector(make_value_vector(tmp_path / "mybase", tmp_path / "v", "warmth", seed=2))
    base = BaseModel(model=AutoModelForCausalLM.from_pretrained(tmp_path / "mybase"),
                     tokenizer=AutoTokenizer.from_pretrained(tmp_path / "mybase"), spec="runs/../mybase",
                     path=str(tmp_path / "mybase"), fingerprint="x")
    meta = card_meta(export_card(base, [vec], [1.0], tmp_path / "card"))
    assert meta["base_model"] == "runs/../mybase"


def test_shipped_demo_files_hold_no_machine_path():
    for f in DEMO_WORKSPACE.rglob("*.json"):
        text = f.read_text()
        for marker in ("/root/", "/home/", "/tmp/", ".cache/"):
            assert marker not in text, f"{f} holds a machine path ({marker})"


def test_a_converted_gguf_dir_is_named_by_what_it_was_converted_from(tmp_path):
    """Training loads the base from the converted dir; its metadata must name the source, not that dir."""
    from mva_core.models import SOURCE_FILE, portable_base_name

    default = tmp_path / "cache" / DEFAULT_BASE
    default.mkdir(parents=True)
    (default / SOURCE_FILE).write_text(json.dumps({"gguf": "SmolLM2-135M-Instruct.Q4_1.gguf", "size": 1}))  # older
    assert portable_base_name(str(default)) == DEFAULT_BASE_HUB_ID
    mine = tmp_path / "cache" / "mymodel"
    mine.mkdir()
    (mine / SOURCE_FILE).write_text(json.dumps({"gguf": "mymodel.gguf", "size": 1, "spec": "models/mymodel.gguf"}))
    assert portable_base_name(str(mine)) == "models/mymodel.gguf"
    assert portable_base_name(str(tmp_path / "plain")) == str(tmp_path / "plain")  # a dir the user gave
