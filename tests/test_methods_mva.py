"""Value Decorrelation Training (MVA Eq.14) and its contrasts on a tiny random Llama, a few steps each:
the logged HSIC is the term in the loss and equals `hsic()` on the adapters' tensors; earlier vectors are
frozen bit for bit; α = 0 is exactly independent DPO; α > 0 lowers the HSIC (and `ortho` its penalty)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mva_core.config import ConfigError
from mva_core.hsic import hsic, vector_hsic
from mva_core.methods import available_methods, get_method
from mva_core.config import TrainConfig
from mva_core.methods.dpo import train_dpo_vector
from mva_core.methods.harness import OutputExistsError
from mva_core.methods.mva import orthogonality, train_sequence
from mva_core.models import weights_fingerprint
from mva_core.vectors import VectorError, load_value_vector
from test_methods_dpo import PAIRS as HELP  # the same toy pairs as the DPO tests
from tiny import make_tiny_llama

HARM = [{"prompt": p["prompt"], "chosen": p["rejected"], "rejected": p["chosen"]} for p in HELP]  # a conflicting value
DATA = {"help": HELP, "harm": HARM}
STEPS, ALPHA = 8, 10.0
# r = 16 so the lora_A samples are 16 rows: with the median heuristic, HSIC of 4 rows has too little room to fall.
# Full batch and a high lr for a tiny model; 8 steps measured enough for α = 10 to lower HSIC on every seed tried.
CFG = TrainConfig(lora_r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], learning_rate=5e-2, max_steps=STEPS,
                  per_device_batch_size=4, max_length=64, seed=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """run(method, alpha, mode) -> (out_root, summaries) of a 2-value sequence, trained once per module."""
    root = tmp_path_factory.mktemp("mva")
    make_tiny_llama(root / "base")
    fp = weights_fingerprint(str(root / "base"))
    cache: dict = {}

    def run(method: str, alpha: float, mode: str = "lora_A"):
        key = (method, alpha, mode)
        if key not in cache:
            out = root / f"{method}-{alpha}-{mode}"
            cache[key] = (out, train_sequence(str(root / "base"), DATA, out, CFG, alpha, mode, fp, method,
                                              progress=False))
        return cache[key]

    run.root, run.fp = root, fp
    return run


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_registry_entries():
    methods = available_methods()
    for name in ("mva", "mva-no-hsic", "ortho"):
        assert name in methods and methods[name]
        assert get_method(name).paper.startswith("https://") and get_method(name).sequential
    assert get_method("mva").default_alpha == 10.0 and get_method("mva-no-hsic").default_alpha == 0.0


def second_vector_init_A(base_dir) -> dict:
    """lora_A of the second vector before its first update: peft's init under the run's seed (trl calls
    set_seed(args.seed) right before get_peft_model), rebuilt here; module name -> (r, d_in)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(CFG.seed + 1)
    init = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(
        r=CFG.lora_r, lora_alpha=CFG.lora_alpha, lora_dropout=0.0, target_modules=CFG.target_modules, bias="none",
        task_type="CAUSAL_LM"))
    return {n.split("base_model.model.")[1].split(".lora_A")[0]: p.detach()
            for n, p in init.named_parameters() if ".lora_A." in n}


def test_unbiased_estimator_is_the_penalty_when_chosen(runs, tmp_path):
    """--hsic-estimator unbiased (issue 16 item 7): step 1's logged term is Song et al.'s unbiased HSIC of the
    second vector's init A against the first vector's A, and the loss is log 2 + α · that term."""
    out = tmp_path / "unbiased"
    first, second = train_sequence(str(runs.root / "base"), DATA, out, replace(CFG, max_steps=1), ALPHA, "lora_A",
                                   runs.fp, "mva", estimator="unbiased", progress=False)
    help_vec = load_value_vector(out / "help")
    a_init = second_vector_init_A(runs.root / "base")
    want = sum(hsic(a_init[m], help_vec.layers[m].A, estimator="unbiased").item() for m in a_init)
    assert second["hsic_terms"][0] == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert second["losses"][0] == pytest.approx(math.log(2) + ALPHA * want, abs=1e-4)
    assert json.loads((out / "harm" / "mva_vector.json").read_text())["hsic_estimator"] == "unbiased"


@pytest.mark.slow
def test_logged_hsic_is_the_loss_term_and_equals_hsic_on_the_adapters(runs):
    """Checked exactly at step 1, the one step whose parameters are known outside the trainer.

    The logged term of step k is computed from the parameters before update k, so after the last update no
    logged value matches the saved adapter. Before update 1, θ_1 is its saved dir (frozen) and θ_2 is peft's
    init under the run's seed (trl calls set_seed(args.seed) right before get_peft_model), which we rebuild
    here; and B_2 = 0, so the DPO part of loss[0] is exactly log 2 and the rest is α · HSIC.
    """
    out, summaries = runs("mva", ALPHA)
    first, second = summaries
    assert first["hsic_terms"] == [] and len(second["hsic_terms"]) == STEPS  # the first vector is plain DPO
    meta = json.loads((out / "harm" / "mva_vector.json").read_text())
    assert meta["hsic_terms"] == second["hsic_terms"] and meta["alpha"] == ALPHA and meta["hsic_mode"] == "lora_A"
    assert [e["value"] for e in meta["earlier"]] == ["help"] and meta["train_config"]["seed"] == CFG.seed + 1

    a_init = second_vector_init_A(runs.root / "base")
    help_vec = load_value_vector(out / "help")
    assert sorted(a_init) == sorted(help_vec.layers) and len(a_init) == 4
    want = sum(hsic(a_init[m], help_vec.layers[m].A).item() for m in a_init)
    assert second["hsic_terms"][0] == pytest.approx(want, rel=1e-5)
    assert second["losses"][0] == pytest.approx(math.log(2) + ALPHA * want, abs=1e-4)
    # Later steps: the term moves with θ_2, and the saved θ_2's HSIC is near the last logged one.
    final = vector_hsic(load_value_vector(out / "harm").layers, help_vec.layers, "lora_A").item()
    assert final == pytest.approx(second["hsic_terms"][-1], rel=0.2)


@pytest.mark.slow
def test_earlier_vectors_frozen_bit_for_bit_and_resume(runs, tmp_path):
    out = tmp_path / "seq"
    base, fp = str(runs.root / "base"), runs.fp
    [help_only] = train_sequence(base, {"help": HELP}, out, CFG, ALPHA, "lora_A", fp, "mva", progress=False)
    before = {f.name: sha(f) for f in (out / "help").iterdir()}
    summaries = train_sequence(base, DATA, out, CFG, ALPHA, "lora_A", fp, "mva", progress=False)
    assert summaries[0]["skipped"] and not summaries[1].get("skipped")  # resumed: help kept, harm trained
    assert {f.name: sha(f) for f in (out / "help").iterdir()} == before
    # Same run again: nothing retrained; the harm vector equals the one of the uninterrupted run.
    again = train_sequence(base, DATA, out, CFG, ALPHA, "lora_A", fp, "mva", progress=False)
    assert all(s["skipped"] for s in again)
    reference, _ = runs("mva", ALPHA)
    for value in DATA:
        assert sha(out / value / "adapter_model.safetensors") == sha(reference / value / "adapter_model.safetensors")
    # A dir from another run (different α) is refused, not overwritten.
    with pytest.raises(OutputExistsError, match="alpha"):
        train_sequence(base, DATA, out, CFG, 1.0, "lora_A", fp, "mva", progress=False)


@pytest.mark.slow
def test_alpha_zero_is_independent_dpo(runs, tmp_path):
    """α = 0 `mva` == `mva-no-hsic` == plain `dpo` with the same seed, bit for bit."""
    mva0, s0 = runs("mva", 0.0)
    with pytest.warns(UserWarning, match="ignored"):
        no_hsic = train_sequence(str(runs.root / "base"), DATA, tmp_path / "nohsic", CFG, ALPHA, "lora_A", runs.fp,
                                 "mva-no-hsic", progress=False)
    assert len(s0[1]["hsic_terms"]) == STEPS and s0[1]["hsic_terms"] == no_hsic[1]["hsic_terms"]  # logged only
    train_dpo_vector(str(runs.root / "base"), HARM, "harm", tmp_path / "dpo", replace(CFG, seed=CFG.seed + 1),
                     runs.fp, progress=False)
    got = load_value_vector(mva0 / "harm")
    for other in (load_value_vector(tmp_path / "nohsic" / "harm"), load_value_vector(tmp_path / "dpo")):
        for m, layer in got.layers.items():
            assert torch.equal(layer.A, other.layers[m].A) and torch.equal(layer.B, other.layers[m].B), m
    assert any(layer.B.abs().max() > 0 for layer in got.layers.values())


@pytest.mark.parametrize("mode, ratio", [("lora_A", 0.85), ("delta", 0.4)])
@pytest.mark.slow
def test_alpha_lowers_hsic(runs, mode, ratio):
    """HSIC(θ_2, θ_1) on the saved vectors, α = 10 vs α = 0 (measured: lora_A 0.68–0.74x, delta 0.14–0.24x)."""
    def final_hsic(alpha):
        out, summaries = runs("mva", alpha, mode)
        h = vector_hsic(load_value_vector(out / "harm").layers, load_value_vector(out / "help").layers, mode).item()
        return h, summaries[1]

    h0, s0 = final_hsic(0.0)
    h, s = final_hsic(ALPHA)
    assert h < ratio * h0, (h, h0)
    assert s["losses"][-1] > s["losses"][0] - 10  # sanity: training stayed finite (checked by train_dpo_vector)
    assert s0["losses"][-1] < s0["losses"][0]  # α = 0: the DPO loss falls


@pytest.mark.slow
def test_ortho_lowers_its_penalty(runs):
    out0, _ = runs("ortho", 0.0)
    out, (_, s) = runs("ortho", 1000.0)

    def penalty(out):
        v2, v1 = load_value_vector(out / "harm"), load_value_vector(out / "help")
        # Independent of the factor form in `orthogonality`: ‖ΔW_2ᵀ ΔW_1‖²_F from the dense ΔW, in numpy.
        dense = sum(float(np.sum(((l2.scaling * l2.B.double().numpy() @ l2.A.double().numpy()).T
                                  @ (v1.layers[m].scaling * v1.layers[m].B.double().numpy()
                                     @ v1.layers[m].A.double().numpy())) ** 2))
                    for m, l2 in v2.layers.items())
        assert orthogonality(v2.layers, v1.layers).item() == pytest.approx(dense, rel=1e-4)
        return dense

    assert len(s["ortho_terms"]) == STEPS and s["ortho_terms"][0] == 0.0  # B_2 = 0 before the first update
    p0, p = penalty(out0), penalty(out)
    assert p < 0.1 * p0, (p, p0)
    meta = load_value_vector(out / "harm").meta
    assert meta["penalty"] == "ortho" and meta["ortho_terms"] == s["ortho_terms"] and "hsic_mode" not in meta


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_bad_settings_refused_before_training(runs, tmp_path):
    base, fp = str(runs.root / "base"), runs.fp
    with pytest.raises(ConfigError, match="alpha"):
        train_sequence(base, DATA, tmp_path / "a", CFG, -1.0, "lora_A", fp, "mva", progress=False)
    with pytest.raises(ConfigError, match="mode"):
        train_sequence(base, DATA, tmp_path / "b", CFG, 1.0, "rows", fp, "mva", progress=False)
    with pytest.raises(ConfigError, match="train_sequence trains"):
        train_sequence(base, DATA, tmp_path / "c", CFG, 1.0, "lora_A", fp, "dpo", progress=False)
    out, _ = runs("mva", ALPHA)
    with pytest.raises(VectorError, match="same lora_r or mode='delta'"):
        get_method("mva").train(base, HARM, "harm", tmp_path / "d", replace(CFG, lora_r=4), fp, progress=False,
                                earlier=[out / "help"])
    assert not (tmp_path / "d").exists()
