"""The real CLI, end to end, as a user runs it: compose -> score -> pareto, plus its errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from mva_core.compose import merge
from mva_core.vectors import load_value_vectors
from tests.tiny import make_tiny_llama, make_value_vector

ROOT = Path(__file__).resolve().parent.parent


def run(*args, check=True):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MVA_MODEL_CACHE": os.environ.get("MVA_MODEL_CACHE", "/tmp/mva-test-cache")}
    proc = subprocess.run([sys.executable, "-m", "mva_core", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_tiny_llama(root / "base")
    dirs = [make_value_vector(root / "base", root / v, v, seed=s) for v, s in [("help", 1), ("harm", 2)]]
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Hi there", "Bake bread?"]))
    return root, dirs


@pytest.mark.slow
def test_compose_score_pareto_end_to_end(tiny, tmp_path):
    root, dirs = tiny
    rows = []
    for i, w in enumerate([(0.0, 0.0), (1.2, 0.4), (0.4, 1.2), (1.0, 1.0)]):
        out = tmp_path / f"m{i}"
        run("compose", "--base", root / "base", "--adapter", f"help={dirs[0]}", "--adapter", f"harm={dirs[1]}",
            "--weights", ",".join(map(str, w)), "--C", "2", "--out", out, "--workspace", tmp_path / "ws")
        # The merged export loads in plain transformers and equals the composition.
        model = AutoModelForCausalLM.from_pretrained(out).eval()
        ids = torch.arange(3, 19).reshape(1, -1)
        ref = merge(AutoModelForCausalLM.from_pretrained(root / "base").eval(), load_value_vectors(dirs), w)
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, atol=2e-5, rtol=1e-4)
        assert "weights" in (out / "README.md").read_text()
        res = json.loads(run("score", "--model", out, "--scorer", "brevity", "warmth", "--prompts",
                             root / "prompts.jsonl", "--max-new-tokens", "6", "--json",
                             "--workspace", tmp_path / "ws").stdout)
        assert len(res["responses"]) == 2
        rows.append((res["mean"]["brevity"], res["mean"]["warmth"]))
    csv = tmp_path / "cands.csv"
    csv.write_text("brevity,warmth\n" + "".join(f"{a},{b}\n" for a, b in rows) + "nan,0.5\n")
    out = run("pareto", csv, "--objectives", "brevity,warmth", "--json")
    result = json.loads(out.stdout)
    assert set(result) == {"pareto", "rank", "hypervolume", "ref", "excluded"}
    assert result["excluded"] == [4] and result["rank"][4] is None and "non-finite" in out.stderr
    # independent dominance check on the finite rows
    front = [i for i, a in enumerate(rows)
             if not any(all(b[k] >= a[k] for k in range(2)) and b != a and any(b[k] > a[k] for k in range(2)) for b in rows)]
    assert sorted(result["pareto"]) == sorted(front)


@pytest.mark.slow
def test_cli_errors_are_one_line_and_nonzero(tiny, tmp_path):
    root, dirs = tiny
    cases = [
        (["compose", "--base", root / "base", "--adapter", f"help={dirs[0]}", "--weights", "1.5", "--out", tmp_path / "x"],
         "outside [0, C=1.0]"),
        (["compose", "--base", root / "base", "--adapter", f"help={dirs[0]}", "--weights", "0.5,0.5", "--out", tmp_path / "x"],
         "give one weight per value"),
        (["compose", "--base", root / "base", "--adapter", "help", "--weights", "0.5", "--out", tmp_path / "x"],
         "NAME=PATH"),
        (["compose", "--base", root / "base", "--adapter", f"help={tmp_path / 'nope'}", "--weights", "0.5", "--out", tmp_path / "x"],
         "does not exist"),
        (["pareto", tmp_path / "missing.csv", "--objectives", "a,b"], "missing.csv"),
    ]
    for args, needle in cases:
        proc = run(*args, "--workspace", tmp_path / "ws", check=False)
        assert proc.returncode != 0, args
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and needle in last, (args, proc.stderr[-500:])
    # export onto an existing path is refused without --force
    out = tmp_path / "exists"
    out.mkdir()
    proc = run("compose", "--base", root / "base", "--adapter", f"help={dirs[0]}", "--weights", "0.5", "--out", out,
               "--workspace", tmp_path / "ws", check=False)
    assert proc.returncode != 0 and "--force" in proc.stderr
