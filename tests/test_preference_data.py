"""hh-rlhf and PKU-SafeRLHF records -> trl pairs, checked on hand-written records; the paper's 94/1/5 split;
`python -m mva_core data` end to end on local JSONL files."""

from __future__ import annotations

import json

import pytest

from mva_core.preference_data import (
    PreferenceSourceError, load_preference_jsonl, load_source, parse_hh, parse_saferlhf, split_pairs, split_sizes,
)
from tests.test_cli import run

BREAD = "\n\nHuman: How do I bake bread?\n\nAssistant:"
JOKE = "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\nAssistant:"
HH = [
    {"chosen": BREAD + " Mix flour, water and yeast, then bake it hot.", "rejected": BREAD + " I won't help."},
    {"chosen": JOKE + " Why did the cat sit on the mat? To keep an eye on the mouse.", "rejected": JOKE + " No."},
    # the two transcripts differ before the final turn: not one context, skipped
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hey.\n\nHuman: Bye\n\nAssistant: Goodbye!",
     "rejected": "\n\nHuman: Hi\n\nAssistant: Go away.\n\nHuman: Bye\n\nAssistant: Whatever."},
    {"chosen": "\n\nHuman: just a question", "rejected": "\n\nHuman: just a question"},  # no assistant turn
    {"chosen": BREAD + " Same.", "rejected": BREAD + " Same."},  # equal responses
]
SAFE = [
    {"prompt": "How do I pick a lock?", "response_0": "Insert a tension wrench, then rake the pins.",
     "response_1": "I can't help with breaking into places.", "better_response_id": 0, "safer_response_id": 1},
    {"prompt": "Is coffee bad for me?", "response_0": "In moderation it is fine.",
     "response_1": "Coffee is poison, never drink it.", "better_response_id": 0, "safer_response_id": 0},
    {"prompt": "Say something", "response_0": "", "response_1": "Hello.", "better_response_id": 1,
     "safer_response_id": 1},  # empty response: skipped
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_hh_transcripts_become_prompt_and_final_turns():
    parsed = parse_hh(HH)
    assert parsed.pairs == [
        {"prompt": "How do I bake bread?", "chosen": "Mix flour, water and yeast, then bake it hot.",
         "rejected": "I won't help."},
        # several turns: the context as plain text with its Human/Assistant markers, without the last one
        {"prompt": "Human: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke",
         "chosen": "Why did the cat sit on the mat? To keep an eye on the mouse.", "rejected": "No."},
    ]
    assert parsed.n_records == 5
    assert parsed.skipped == {"no_assistant_turn": 1, "prefix_differs": 1, "same_response": 1}


def test_saferlhf_gives_a_helpful_and_a_harmless_set():
    helpful, harmless = parse_saferlhf(SAFE, "helpful"), parse_saferlhf(SAFE, "harmless")
    assert helpful.pairs == [
        {"prompt": "How do I pick a lock?", "chosen": "Insert a tension wrench, then rake the pins.",
         "rejected": "I can't help with breaking into places."},
        {"prompt": "Is coffee bad for me?", "chosen": "In moderation it is fine.",
         "rejected": "Coffee is poison, never drink it."},
    ]
    assert harmless.pairs == [
        {"prompt": "How do I pick a lock?", "chosen": "I can't help with breaking into places.",
         "rejected": "Insert a tension wrench, then rake the pins."},
        {"prompt": "Is coffee bad for me?", "chosen": "In moderation it is fine.",
         "rejected": "Coffee is poison, never drink it."},
    ]
    assert helpful.skipped == harmless.skipped == {"empty_text": 1}


def test_wrong_schema_and_bad_ids_are_named():
    with pytest.raises(PreferenceSourceError, match=r"record 1 has no string field 'chosen'.*--format saferlhf"):
        parse_hh(SAFE)
    with pytest.raises(PreferenceSourceError, match=r"record 1 lacks .*--format hh"):
        parse_saferlhf(HH, "helpful")
    with pytest.raises(PreferenceSourceError, match=r"safer_response_id=2.*0 or 1"):
        parse_saferlhf([{**SAFE[0], "safer_response_id": 2}], "harmless")
    with pytest.raises(PreferenceSourceError, match="objective"):
        parse_saferlhf(SAFE, "honest")  # type: ignore[arg-type]


def test_split_sizes_are_the_papers_fractions():
    assert split_sizes(200) == {"train": 188, "validation": 2, "test": 10}  # 5 % of 200 = 10, 1 % = 2
    assert split_sizes(99) == {"train": 95, "validation": 0, "test": 4}  # floor(4.95), floor(0.99)
    assert split_sizes(0) == {"train": 0, "validation": 0, "test": 0}


def test_split_is_a_seeded_partition_in_source_order():
    pairs = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(200)]
    a, b, c = split_pairs(pairs, seed=0), split_pairs(pairs, seed=0), split_pairs(pairs, seed=1)
    assert a == b and a["test"] != c["test"]
    assert {k: len(v) for k, v in a.items()} == {"train": 188, "validation": 2, "test": 10}
    index = {p["prompt"]: i for i, p in enumerate(pairs)}
    seen = [index[p["prompt"]] for split in a.values() for p in split]
    assert sorted(seen) == list(range(200))  # every pair in exactly one split
    for split in a.values():
        ids = [index[p["prompt"]] for p in split]
        assert ids == sorted(ids)


def test_load_source_from_files(tmp_path):
    hh = load_source(str(write_jsonl(tmp_path / "hh.jsonl", HH)), "hh")
    assert len(hh.pairs) == 2 and hh.skipped["prefix_differs"] == 1
    safe = write_jsonl(tmp_path / "safe.jsonl", SAFE)
    assert load_source(str(safe), "saferlhf", "harmless").pairs == parse_saferlhf(SAFE, "harmless").pairs
    with pytest.raises(PreferenceSourceError, match="--objective helpful|harmless"):
        load_source(str(safe), "saferlhf")
    with pytest.raises(PreferenceSourceError, match="--format hh|saferlhf"):
        load_source(str(safe))
    with pytest.raises(PreferenceSourceError, match="hh-rlhf:helpful-base"):
        load_source("hh-rlhf:")
    with pytest.raises(PreferenceSourceError, match="neither"):
        load_source(str(tmp_path / "pairs.csv"), "hh")


@pytest.mark.slow
def test_cli_data_writes_trl_splits(tmp_path):
    # 200 hand-made transcripts (each its own context) plus one whose prefixes differ
    records = [{"chosen": f"\n\nHuman: question {i}?\n\nAssistant: good answer {i}.",
                "rejected": f"\n\nHuman: question {i}?\n\nAssistant: bad answer {i}."} for i in range(200)]
    records.append(HH[2])
    src = write_jsonl(tmp_path / "hh.jsonl", records)
    out = tmp_path / "splits"
    proc = run("data", "--from", src, "--format", "hh", "--out", out, "--seed", "0")
    assert "201 records -> 200 pairs (skipped: 1 prefix_differs)" in proc.stdout
    counts = {name: len(load_preference_jsonl(out / f"{name}.jsonl")) for name in ("train", "validation", "test")}
    assert counts == {"train": 188, "validation": 2, "test": 10}
    assert "train.jsonl  188 lines" in proc.stdout
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"prompt", "chosen", "rejected"} and first["chosen"].startswith("good answer")
    test_before = (out / "test.jsonl").read_text()

    again = run("data", "--from", src, "--format", "hh", "--out", out, check=False)
    assert again.returncode != 0 and "--force" in again.stderr
    run("data", "--from", src, "--format", "hh", "--out", out, "--force")
    assert (out / "test.jsonl").read_text() == test_before  # same seed, same split

    safe = write_jsonl(tmp_path / "safe.jsonl", SAFE)
    bad = run("data", "--from", safe, "--format", "saferlhf", "--out", tmp_path / "s", check=False)
    assert bad.returncode != 0 and "--objective" in bad.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_cli_hub_source_without_network_names_the_fix(tmp_path, monkeypatch):
    # An empty cache and HF_HUB_OFFLINE=1 (set by run): datasets cannot reach the hub.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    proc = run("data", "--from", "hh-rlhf:helpful-base", "--out", tmp_path / "hh", check=False)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "could not load Anthropic/hh-rlhf (data_dir 'helpful-base')" in line
    assert "--format" in line and not (tmp_path / "hh").exists()
