"""Per-step resume of value vector training: a run cut after k steps and rerun ends with the same vector as an
uninterrupted run (weights, per-step losses, HSIC terms), a different run is refused, and the CLI resumes after
SIGKILL."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from mva_core.config import TrainConfig
from mva_core.methods.dpo import train_dpo_vector
from mva_core.methods.harness import ResumeMismatchError, partial_dir
from mva_core.methods.mva import train_value
from mva_core.models import weights_fingerprint
from test_methods_dpo import PAIRS  # the same toy pairs
from tiny import make_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
STEPS, EVERY, CUT = 8, 3, 5  # checkpoints at 3 and 6; the cut after step 5 loses steps 4-5, replayed on resume
# Two pairs per batch: two batches per epoch and four epochs, so resuming must also skip to the right batch.
CFG = TrainConfig(lora_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], learning_rate=5e-2, max_steps=STEPS,
                  per_device_batch_size=2, max_length=128, checkpoint_every=EVERY)


class Interrupt(Exception):
    pass


class StopAfter(TrainerCallback):
    """Raise at the end of optimizer step `k`, before that step's log and checkpoint, like a crash."""

    def __init__(self, k: int):
        self.k = k

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.k:
            raise Interrupt(f"cut after step {self.k}")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    make_tiny_llama(root / "base")
    return root, str(root / "base"), weights_fingerprint(str(root / "base"))


def adapter(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "adapter_model.safetensors"))


def meta(path: Path) -> dict:
    return json.loads((path / "mva_vector.json").read_text())


def assert_same_adapter(a: Path, b: Path) -> None:
    wa, wb = adapter(a), adapter(b)
    assert sorted(wa) == sorted(wb)
    for name in wa:
        # Exact equality holds on CPU (same kernels, same order); the brief's tolerance is atol 1e-6.
        assert torch.equal(wa[name], wb[name]), (name, (wa[name] - wb[name]).abs().max().item())


@pytest.mark.slow
def test_interrupted_then_resumed_equals_uninterrupted(base, capsys):
    root, base_dir, fp = base
    full = root / "full"
    train_dpo_vector(base_dir, PAIRS, "helpful", full, CFG, fp, progress=False)
    assert not partial_dir(full).exists()  # removed once the vector is written

    cut = root / "cut"
    with pytest.raises(Interrupt):
        train_dpo_vector(base_dir, PAIRS, "helpful", cut, CFG, fp, progress=False, callbacks=[StopAfter(CUT)])
    partial = partial_dir(cut)
    assert not cut.exists() and sorted(p.name for p in partial.glob("checkpoint-*")) == ["checkpoint-3"]
    identity = json.loads((partial / "mva_run.json").read_text())
    assert identity["value"] == "helpful" and identity["base_fingerprint"] == fp

    capsys.readouterr()
    summary = train_dpo_vector(base_dir, PAIRS, "helpful", cut, CFG, fp, progress=False)
    assert "resuming helpful from step 3" in capsys.readouterr().err
    assert not partial.exists()
    assert_same_adapter(full, cut)
    m_full, m_cut = meta(full), meta(cut)
    # Losses cover all 8 steps (3 restored from the checkpoint's log history, 5 trained now) and match.
    assert len(m_cut["losses"]) == STEPS and m_cut["resumed_from_step"] == 3 and m_full["resumed_from_step"] is None
    assert m_cut["losses"] == pytest.approx(m_full["losses"], abs=1e-6)
    assert m_cut["losses"][0] == pytest.approx(math.log(2), abs=1e-5)  # step 1 came from the restored history
    assert summary["losses"] == m_cut["losses"] and len(summary["step_seconds"]) == STEPS - 3


@pytest.mark.slow
def test_resumed_mva_vector_keeps_every_hsic_term(base, monkeypatch):
    """mva's per-step HSIC terms (MVA Eq.14) are logged by its trainer; after a resume they still cover every step."""
    from mva_core.methods import mva as mva_module

    root, base_dir, fp = base
    first = root / "first"
    train_dpo_vector(base_dir, PAIRS, "helpful", first, replace(CFG, seed=1), fp, progress=False)
    kw = dict(earlier=[first], alpha=10.0, mode="lora_A", progress=False)
    full = train_value(base_dir, PAIRS, "second", root / "mva_full", CFG, fp, **kw)
    with monkeypatch.context() as m:  # train_value has no callbacks hook: hand the cut to the real train_dpo_vector
        real = mva_module.train_dpo_vector
        m.setattr(mva_module, "train_dpo_vector", lambda *a, **k: real(*a, **k, callbacks=[StopAfter(CUT)]))
        with pytest.raises(Interrupt):
            train_value(base_dir, PAIRS, "second", root / "mva_cut", CFG, fp, **kw)
    resumed = train_value(base_dir, PAIRS, "second", root / "mva_cut", CFG, fp, **kw)
    assert len(full["hsic_terms"]) == STEPS and len(resumed["hsic_terms"]) == STEPS
    assert resumed["hsic_terms"] == pytest.approx(full["hsic_terms"], abs=1e-6)
    assert meta(root / "mva_cut")["hsic_terms"] == resumed["hsic_terms"]
    assert_same_adapter(root / "mva_full", root / "mva_cut")


@pytest.mark.slow
def test_checkpoints_of_another_run_are_refused(base):
    root, base_dir, fp = base
    out = root / "other"
    with pytest.raises(Interrupt):
        train_dpo_vector(base_dir, PAIRS, "helpful", out, CFG, fp, progress=False, callbacks=[StopAfter(CUT)])
    with pytest.raises(ResumeMismatchError, match=r"differs in data_sha256, n_pairs.*delete that dir"):
        train_dpo_vector(base_dir, PAIRS[:3], "helpful", out, CFG, fp, progress=False)
    with pytest.raises(ResumeMismatchError, match=r"differs in train_config"):
        train_dpo_vector(base_dir, PAIRS, "helpful", out, replace(CFG, learning_rate=1e-2), fp, progress=False)
    assert (partial_dir(out) / "checkpoint-3").is_dir()  # refused, and nothing was touched
    # The checkpoint cadence is not part of the identity: a different one still resumes.
    train_dpo_vector(base_dir, PAIRS, "helpful", out, replace(CFG, checkpoint_every=2), fp, progress=False)
    assert len(meta(out)["losses"]) == STEPS and not partial_dir(out).exists()


@pytest.mark.slow
def test_a_partial_dir_without_checkpoints_is_taken_over(base):
    """Cut before the first checkpoint: nothing to lose, so a run with other settings starts afresh there."""
    root, base_dir, fp = base
    out = root / "early"
    with pytest.raises(Interrupt):
        train_dpo_vector(base_dir, PAIRS, "helpful", out, CFG, fp, progress=False, callbacks=[StopAfter(EVERY - 1)])
    assert (partial_dir(out) / "mva_run.json").is_file() and not list(partial_dir(out).glob("checkpoint-*"))
    other = replace(CFG, learning_rate=1e-2)
    train_dpo_vector(base_dir, PAIRS, "helpful", out, other, fp, progress=False)
    assert meta(out)["train_config"]["learning_rate"] == 1e-2 and meta(out)["resumed_from_step"] is None


def test_checkpoint_every_is_validated():
    from mva_core.config import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_every=0"):
        TrainConfig(checkpoint_every=0)


@pytest.mark.slow
def test_cli_resumes_after_sigkill(base):
    root, base_dir, _ = base
    data = root / "warm.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    ws = root / "ws_cli"
    cmd = [sys.executable, "-m", "mva_core", "train", "--method", "dpo", "--values", "warm", "--data", f"warm={data}",
           "--base", base_dir, "--steps", "200", "--checkpoint-every", "5", "--lr", "1e-3", "--workspace", str(ws)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MVA_MODEL_CACHE": os.environ.get("MVA_MODEL_CACHE", "/tmp/mva-test-cache")}
    partial = ws / "vectors" / "dpo" / "warm.partial"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not any((c / "trainer_state.json").is_file() for c in partial.glob("checkpoint-*")):
            assert proc.poll() is None, f"training exited ({proc.returncode}) before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        assert proc.poll() is None, "training finished before it could be killed; raise --steps"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (ws / "vectors" / "dpo" / "warm").exists()

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming warm from step " in again.stderr
    assert (ws / "vectors" / "dpo" / "warm" / "adapter_model.safetensors").is_file() and not partial.exists()
    assert len(meta(ws / "vectors" / "dpo" / "warm")["losses"]) == 200
