"""`python -m mva_core train` end to end on a tiny model: vectors written, run and curves stored, resume skips."""

import json

import pytest

from mva_core.store import Store
from mva_core.vectors import load_value_vectors
from tests.test_cli import run
from tests.tiny import make_tiny_llama

PAIRS = {
    "warm": [("Say hi", "Hello friend, lovely to see you!", "Go away."),
             ("Rate my cake", "It looks wonderful, well done!", "It is bad."),
             ("Any advice?", "You can do it, I believe in you!", "No.")],
    "short": [("Say hi", "Hi.", "Hello there my friend, how are you doing on this fine day?"),
              ("Rate my cake", "Good.", "Well, let me think about the cake in great detail first."),
              ("Any advice?", "Rest.", "There are many things you could consider doing about it.")],
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    make_tiny_llama(root / "base")
    for v, rows in PAIRS.items():
        (root / f"{v}.jsonl").write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                                                 for p, c, r in rows))
    return root


def test_train_mva_records_run_and_resumes(setup):
    root = setup
    args = ["train", "--method", "mva", "--values", "warm,short", "--data", f"warm={root / 'warm.jsonl'}",
            "--data", f"short={root / 'short.jsonl'}", "--base", root / "base", "--alpha", "10", "--steps", "3",
            "--lr", "1e-2", "--workspace", root / "ws"]
    first = run(*args)
    vectors = load_value_vectors([root / "ws" / "vectors" / "mva" / v for v in ("warm", "short")])
    assert [v.method for v in vectors] == ["mva", "mva"]
    runs = Store(root / "ws" / "mva.sqlite").runs()
    log = json.loads(runs.iloc[-1]["log"])
    assert runs.iloc[-1]["status"] == "done" and runs.iloc[-1]["kind"] == "train"
    assert len(log["warm"]["losses"]) == 3 and len(log["short"]["hsic_terms"]) == 3
    assert "warm:" in first.stdout and "short:" in first.stdout
    hashes = [v.hash for v in vectors]
    run(*args)  # a second run resumes: nothing is retrained, the vectors stay bit for bit
    assert [v.hash for v in load_value_vectors([root / "ws" / "vectors" / "mva" / v for v in ("warm", "short")])] == hashes


def test_train_rejects_mismatched_data(setup):
    root = setup
    proc = run("train", "--method", "dpo", "--values", "warm,short", "--data", f"warm={root / 'warm.jsonl'}",
               "--base", root / "base", "--workspace", root / "ws2", check=False)
    assert proc.returncode != 0 and "must name the same values" in proc.stderr.strip().splitlines()[-1]
    proc = run("train", "--method", "nope", "--values", "warm", "--data", f"warm={root / 'warm.jsonl'}",
               "--base", root / "base", "--workspace", root / "ws2", check=False)
    assert proc.returncode != 0 and "valid methods" in proc.stderr
