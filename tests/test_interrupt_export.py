"""A half-written export never appears at the target path (issue #6, item 2): `compose --format merged` is killed
with SIGKILL while its files are being written, once onto a new path and once replacing an existing export with
`--force`. The new path must stay absent and the existing export byte-for-byte unchanged; a re-run then writes a
complete model that loads."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from mva_core.compose import merge
from mva_core.vectors import load_value_vectors
from tests.tiny import make_tiny_llama, make_value_vector

ROOT = Path(__file__).resolve().parent.parent
# The CLI, with the model-card writer (called after the weights and tokenizer are on disk, before the rename)
# replaced by: say so, then hang until killed.
STALLED_CLI = """
import sys, time, pathlib
import mva_core.export as export
def stall(*args, **kwargs):
    pathlib.Path(sys.argv[1]).write_text("writing")
    time.sleep(600)
export.model_card = stall
from mva_core.cli import main
sys.exit(main(sys.argv[2:]))
"""


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def compose_args(root: Path, out: Path, weights: str, *extra: str) -> list[str]:
    return ["compose", "--base", str(root / "base"), "--adapter", f"help={root / 'help'}",
            "--adapter", f"harm={root / 'harm'}", "--weights", weights, "--out", str(out), "--format", "merged", *extra]


def kill_mid_write(tmp: Path, args: list[str]) -> None:
    ready = tmp / f"ready-{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, "-c", STALLED_CLI, str(ready), *args], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while not ready.exists():
        assert proc.poll() is None, f"compose exited early: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "compose never reached the write"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def tree_hash(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export_kill")
    make_tiny_llama(root / "base")
    for value, seed in [("help", 1), ("harm", 2)]:
        make_value_vector(root / "base", root / value, value, seed=seed)
    return root


@pytest.mark.slow
def test_sigkill_mid_export_leaves_no_partial_output(tiny, tmp_path):
    out = tmp_path / "exports" / "merged"

    # ---- Killed while writing a new export: nothing at the target; the half-written dir is a hidden temp ----
    kill_mid_write(tmp_path, compose_args(tiny, out, "0.7,0.3"))
    assert not out.exists()
    partial = [p for p in out.parent.iterdir() if p.name.startswith(".merged.partial-")]
    assert len(partial) == 1 and (partial[0] / "model.safetensors").is_file()  # it was killed mid-export
    assert not (partial[0] / "README.md").exists()

    # ---- Re-run: the leftover does not block it, and the target is a complete model ----
    from mva_core.cli import main

    assert main(compose_args(tiny, out, "0.7,0.3")) == 0
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= set(os.listdir(out))
    got = AutoModelForCausalLM.from_pretrained(out).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny / "base").eval()
    want = merge(base, load_value_vectors([tiny / "help", tiny / "harm"]), [0.7, 0.3]).state_dict()
    assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)
    before = tree_hash(out)

    # ---- Killed while replacing it with --force: the old export stays, byte for byte ----
    kill_mid_write(tmp_path, compose_args(tiny, out, "0.1,0.9", "--force"))
    assert tree_hash(out) == before
