"""Issue #27 item 6: `demo build` twice from the same seed gives identical stored scores. A tiny demo (random-init
Llama, 4 training prompts, 2 validation prompts, 2 training steps per vector) built twice into two directories:
the same pairs, the same vector bytes, and the same responses and scores for every candidate, sampled ones
included (matched by content key); and a rebuild of a finished demo adds nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mva_core.config import DecodingConfig
from mva_core.demo import DemoSpec, build_demo
from mva_core.workspace import ValueSpec
from tests.tiny import make_tiny_llama

TRAIN = {"max_steps": 2}


def tiny_spec(base: Path) -> DemoSpec:
    return DemoSpec(
        directory="unused", base=str(base), n_train_prompts=4, n_validation_prompts=2, grid_step=0.5,
        # civility varies continuously on the tiny model's text (VADER warmth is mostly 0: tied pairs)
        values=(ValueSpec("warmth", "civility"), ValueSpec("brevity", "brevity")),
        methods={"mva-no-hsic": {"train": TRAIN}, "mva-delta": {"train": TRAIN, "store": "float16"},
                 "mo-odpo": {"train": TRAIN, "max_new_tokens": 8}},
        decoding=DecodingConfig(max_new_tokens=8, batch_size=16),
        sampled=DecodingConfig(max_new_tokens=8, batch_size=16, do_sample=True, num_samples=2, temperature=1.0,
                               seed=0),
        description="tiny determinism test demo")


def stored(root: Path) -> dict[str, list[tuple]]:
    """Every candidate's responses, samples and scores, keyed by the candidate's content key (ids may differ)."""
    con = sqlite3.connect(root / "mva.sqlite")
    out = {
        "responses": con.execute("SELECT c.key, r.prompt_idx, r.response FROM responses r JOIN candidates c "
                                 "ON c.id = r.candidate_id ORDER BY 1, 2").fetchall(),
        "scores": con.execute("SELECT c.key, s.prompt_idx, s.scorer, s.value FROM scores s JOIN candidates c "
                              "ON c.id = s.candidate_id ORDER BY 1, 2, 3").fetchall(),
        "sample_scores": con.execute("SELECT c.key, s.prompt_idx, s.sample_idx, s.scorer, s.value FROM sample_scores s "
                                     "JOIN candidates c ON c.id = s.candidate_id ORDER BY 1, 2, 3, 4").fetchall(),
        "candidates": con.execute("SELECT key, method, source FROM candidates ORDER BY 1").fetchall(),
    }
    con.close()
    return out


@pytest.mark.slow
def test_tiny_demo_build_twice_from_one_seed_stores_identical_scores(tmp_path):
    base = tmp_path / "base"
    make_tiny_llama(base)
    spec = tiny_spec(base)
    first, second = tmp_path / "first", tmp_path / "second"
    build_demo(first, seed=0, spec=spec)
    build_demo(second, seed=0, spec=spec)
    a, b = stored(first), stored(second)
    assert len(a["scores"]) > 0 and len(a["sample_scores"]) > 0
    assert {m for _, m, _ in a["candidates"]} >= {"base", "mva-no-hsic", "mva-delta", "mo-odpo"}
    for table in a:
        assert a[table] == b[table], table
    for f in sorted(first.rglob("*")):  # pairs, vectors (float16 ones too) and their metadata's training curves
        if f.is_file() and f.suffix in {".jsonl", ".safetensors"}:
            assert f.read_bytes() == (second / f.relative_to(first)).read_bytes(), f
    assert (first / "vectors" / "mva-delta" / "warmth" / "adapter_model.safetensors").is_symlink()
    # a rebuild of a finished demo is a no-op on what is stored
    build_demo(first, seed=0, spec=spec)
    assert stored(first) == a
