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


@pytest.mark.slow
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


@pytest.mark.slow
def test_train_rejects_mismatched_data(setup):
    root = setup
    proc = run("train", "--method", "dpo", "--values", "warm,short", "--data", f"warm={root / 'warm.jsonl'}",
               "--base", root / "base", "--workspace", root / "ws2", check=False)
    assert proc.returncode != 0 and "must name the same values" in proc.stderr.strip().splitlines()[-1]
    proc = run("train", "--method", "nope", "--values", "warm", "--data", f"warm={root / 'warm.jsonl'}",
               "--base", root / "base", "--workspace", root / "ws2", check=False)
    assert proc.returncode != 0 and "valid methods" in proc.stderr


@pytest.mark.slow
def test_train_modpo_then_sweep_each_model_from_the_cli(setup):
    """One model per preference through the CLI: modpo's margins come from the workspace's scorers, the run is
    recorded per vector dir, and `sweep` evaluates each model alone (weight 1), labelled with its preference."""
    from mva_core.config import DecodingConfig
    from mva_core.data import write_jsonl
    from mva_core.results import candidate_table
    from mva_core.workspace import Manifest, ValueSpec, Workspace

    root = setup
    ws = root / "wsm"
    write_jsonl(ws / "prompts" / "validation.jsonl", [{"prompt": p} for p in ("Say hi", "Any advice?")])
    Workspace.create(ws, Manifest(base=str(root / "base"), values=[ValueSpec("warm", "warmth"), ValueSpec("short", "brevity")],
                                  decoding=DecodingConfig(max_new_tokens=4, batch_size=8)))
    run("train", "--method", "modpo", "--values", "warm,short", "--data", f"warm={root / 'warm.jsonl'}",
        "--data", f"short={root / 'short.jsonl'}", "--base", root / "base", "--steps", "2",
        "--preferences", "0.25,0.75;0.75,0.25", "--workspace", ws)
    dirs = sorted(p.name for p in (ws / "vectors" / "modpo").iterdir())
    assert dirs == ["w=0.25,0.75", "w=0.75,0.25"]
    meta = json.loads((ws / "vectors" / "modpo" / "w=0.25,0.75" / "mva_vector.json").read_text())
    assert meta["primary"] == "short" and meta["margin_scorers"] == {"warm": "warmth"}
    log = json.loads(Store(ws / "mva.sqlite").runs().iloc[-1]["log"])
    assert sorted(log) == dirs and all(len(e["losses"]) == 2 for e in log.values())
    out = run("sweep", "--method", "modpo", "--workspace", ws)
    assert "2 candidates of modpo" in out.stdout
    t = candidate_table(Workspace(ws))
    got = sorted(t.loc[t["method"] == "modpo", ["w_warm", "w_short"]].to_numpy().tolist())
    assert got == [[0.25, 0.75], [0.75, 0.25]]


@pytest.mark.slow
def test_cli_sweep_on_another_prompt_set_and_a_subset_of_values(tmp_path):
    """sweep --prompts FILE --values warmth: exactly the grid (0..1 step .5) on warmth with brevity at 0, generated
    on that file's prompts (plus the base model on them), the default set untouched."""
    from mva_core.data import write_jsonl
    from mva_core.workspace import Workspace
    from tests.tiny import make_tiny_workspace

    ws = make_tiny_workspace(tmp_path / "ws")
    other = tmp_path / "other.jsonl"
    write_jsonl(other, [{"prompt": "Name a color."}, {"prompt": "Count to three."}])
    out = run("sweep", "--method", "mva-no-hsic", "--grid", "0:1:0.5", "--values", "warmth", "--prompts", other,
              "--workspace", tmp_path / "ws")
    assert "3 candidates" in out.stdout
    cand = Workspace(tmp_path / "ws").store.candidates()
    swept = cand[cand["method"] == "mva-no-hsic"]
    assert sorted(map(tuple, swept["weights"])) == [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0)]
    assert len(cand[cand["method"] == "base"]) == 1
    for cid in cand["id"]:
        assert ws.store.responses([int(cid)])["prompt"].tolist() == ["Name a color.", "Count to three."]
    bad = run("sweep", "--method", "mva-no-hsic", "--values", "nope", "--workspace", tmp_path / "ws", check=False)
    assert bad.returncode != 0 and "choose one or more of ['warmth', 'brevity']" in bad.stderr.strip().splitlines()[-1]
