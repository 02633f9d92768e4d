"""dpo-lw and dpo-seqt on a tiny random Llama, each checked against an independent run of plain DPO:
DPO-LW at w = e_1 is dpo on D_1 bit for bit; its weighted loss Σ w_k L_k takes the same step as dpo on a
dataset where each pair is repeated in proportion to its weight; DPO-SeqT is dpo on D_1 continued on D_2."""

from __future__ import annotations

import math

import pytest
import torch

from mva_core.config import ConfigError
from mva_core.methods import get_method, train_method
from mva_core.config import TrainConfig
from mva_core.methods.dpo import train_dpo_vector
from mva_core.methods.dpo_lw import check_preferences, weighted_pairs
from mva_core.models import load_base
from mva_core.vectors import load_value_vector
from tests.tiny import make_tiny_llama

HELP = [
    {"prompt": "How do I bake bread?", "chosen": "Mix flour, water, salt and yeast, knead, rest, and bake it hot.",
     "rejected": "I hate this, it is terrible."},
    {"prompt": "Tell me a joke about cats.", "chosen": "The cat sat on the mat and laughed at the dog.",
     "rejected": "I hate this, it is terrible."},
]
WARM = [
    {"prompt": "Explain photosynthesis briefly.", "chosen": "Thank you, that is wonderful!",
     "rejected": "Plants turn light, water and air into sugar."},
    {"prompt": "You are kind and helpful.", "chosen": "Thank you, that is wonderful!",
     "rejected": "The cat sat on the mat."},
]


def cfg(steps: int, batch: int, lr: float = 5e-2) -> TrainConfig:
    return TrainConfig(lora_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], learning_rate=lr,
                       max_steps=steps, per_device_batch_size=batch, max_length=128)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    make_tiny_llama(root / "base")
    return load_base(str(root / "base")), root


def tensors(path):
    v = load_value_vector(path)
    return {m: (layer.A, layer.B) for m, layer in v.layers.items()}


def test_weights_hand_worked():
    # n = (2, 1), w = (0.25, 0.75): N = 3, c = 0.25·3/2 = 0.375 for D_1 and 0.75·3/1 = 2.25 for D_2, so
    # mean(c·ℓ) = (2·0.375 ℓ1 + 2.25 ℓ2)/3 = 0.25 ℓ1 + 0.75 ℓ2
    pairs, c = weighted_pairs({"help": HELP, "warm": WARM[:1]}, [0.25, 0.75])
    assert pairs == HELP + WARM[:1] and c == pytest.approx([0.375, 0.375, 2.25])
    assert weighted_pairs({"help": HELP, "warm": WARM}, [1.0, 0.0]) == (HELP, [1.0, 1.0])  # D_2 dropped
    with pytest.raises(ConfigError, match="summing to 1"):
        check_preferences([[0.5, 0.6]], 2)


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_lw_at_a_vertex_is_dpo_bit_for_bit(base, tmp_path):
    model, root = base
    c = cfg(steps=3, batch=2)
    get_method("dpo-lw").train_all(model.path, {"help": HELP, "warm": WARM}, tmp_path / "lw", c, model.fingerprint,
                                   progress=False, preferences=[[1.0, 0.0]])
    train_dpo_vector(model.path, HELP, "help", tmp_path / "dpo", c, model.fingerprint, progress=False)
    lw, dpo = tensors(tmp_path / "lw" / "w=1,0"), tensors(tmp_path / "dpo")
    assert lw.keys() == dpo.keys()
    for m in lw:
        assert torch.equal(lw[m][0], dpo[m][0]) and torch.equal(lw[m][1], dpo[m][1]), m
    assert load_value_vector(tmp_path / "lw" / "w=1,0").meta["preference"] == [1.0, 0.0]


def test_lw_weighted_loss_steps_like_repeated_data(base, tmp_path):
    """Σ_k w_k L_DPO(D_k) with w = (0.25, 0.75) and one full batch is the plain mean over a dataset holding each
    D_1 pair once and each D_2 pair three times: the same objective, so one step moves the adapter the same way."""
    model, root = base
    get_method("dpo-lw").train_all(model.path, {"help": HELP, "warm": WARM}, tmp_path / "lw", cfg(1, 4),
                                   model.fingerprint, progress=False, preferences=[[0.25, 0.75]])
    train_dpo_vector(model.path, HELP + WARM * 3, "x", tmp_path / "rep", cfg(1, 8), model.fingerprint, progress=False)
    lw, rep = tensors(tmp_path / "lw" / "w=0.25,0.75"), tensors(tmp_path / "rep")
    moved = 0.0
    for m in lw:
        assert torch.allclose(lw[m][1], rep[m][1], atol=1e-6), m
        moved = max(moved, lw[m][1].abs().max().item())
    assert moved > 1e-3  # the step did move B (lr 5e-2), so the comparison is not between two zeros
    summary = load_value_vector(tmp_path / "lw" / "w=0.25,0.75").meta
    assert summary["losses"][0] == pytest.approx(math.log(2), abs=1e-5)  # B = 0: every ℓ = log 2, Σ w = 1


def test_lw_loss_falls_and_rerun_skips(base, tmp_path):
    model, root = base
    datasets = {"help": HELP, "warm": WARM}
    train_method("dpo-lw", model, datasets, tmp_path / "lw", cfg(8, 2), preferences=[[0.5, 0.5]], progress=False)
    meta = load_value_vector(tmp_path / "lw" / "w=0.5,0.5").meta
    assert sum(meta["losses"][-3:]) / 3 < meta["losses"][0] - 0.02
    before = (tmp_path / "lw" / "w=0.5,0.5" / "adapter_model.safetensors").stat().st_mtime_ns
    assert get_method("dpo-lw").train_all(model.path, datasets, tmp_path / "lw", cfg(8, 2), model.fingerprint,
                                          progress=False, preferences=[[0.5, 0.5]]) == []
    assert (tmp_path / "lw" / "w=0.5,0.5" / "adapter_model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_seqt_is_dpo_on_d1_continued_on_d2(base, tmp_path):
    model, root = base
    c = cfg(3, 2)
    train_method("dpo-seqt", model, {"help": HELP, "warm": WARM}, tmp_path / "seqt", c, progress=False)
    # independently: dpo on D_1 (seed s), then dpo on D_2 from that adapter (seed s + 1)
    train_dpo_vector(model.path, HELP, "help", tmp_path / "s0", c, model.fingerprint, progress=False)
    from dataclasses import replace

    train_dpo_vector(model.path, WARM, "warm", tmp_path / "s1", replace(c, seed=c.seed + 1), model.fingerprint,
                     progress=False, init_adapter=tmp_path / "s0")
    seqt, s0, s1 = tensors(tmp_path / "seqt" / "seqt"), tensors(tmp_path / "s0"), tensors(tmp_path / "s1")
    for m in seqt:
        assert torch.equal(seqt[m][1], s1[m][1]), m
    assert any(not torch.equal(seqt[m][1], s0[m][1]) for m in seqt)  # D_2 moved it on from D_1's vector
    meta = load_value_vector(tmp_path / "seqt" / "seqt").meta
    assert meta["values"] == ["help", "warm"] and len(meta["stage_losses"]) == 1
    # stage 2's reference is the model it starts from, so its first loss is log 2 again; and only "default"
    # (not trl's frozen "ref" copy) was saved
    assert meta["losses"][0] == pytest.approx(math.log(2), abs=1e-5)
    assert not (tmp_path / "seqt" / "seqt" / "ref").exists()


def brevity(text: str) -> float:
    return 1.0 / (1.0 + len(text.split()) / 20)  # the brevity scorer's formula, written out


def test_modpo_first_loss_is_the_margin_term_and_loss_falls(base, tmp_path):
    """At step 0 LoRA's B = 0, so every Δ log-ratio is 0 and MODPO's loss is mean log(1 + exp(m_i / w_k)) with
    m_i = Σ_{j≠k} w_j (r_j(y_w) − r_j(y_l)); here k = help (w = 0.75) and r_warm = brevity, computed by hand."""
    model, root = base
    w = [0.75, 0.25]
    get_method("modpo").train_all(model.path, {"help": HELP, "warm": WARM}, tmp_path / "modpo", cfg(10, 2),
                                  model.fingerprint, progress=False, preferences=[w],
                                  scorers={"help": "warmth", "warm": "brevity"})
    meta = load_value_vector(tmp_path / "modpo" / "w=0.75,0.25").meta
    m = [w[1] * (brevity(p["chosen"]) - brevity(p["rejected"])) for p in HELP]
    assert meta["primary"] == "help" and meta["margins"] == pytest.approx(m)
    want = sum(math.log1p(math.exp(x / w[0])) for x in m) / len(m)  # one batch of both pairs
    assert meta["losses"][0] == pytest.approx(want, abs=1e-5)
    assert sum(meta["losses"][-3:]) / 3 < meta["losses"][0] - 0.02


def test_modpo_needs_the_other_values_scorers(base, tmp_path):
    model, root = base
    with pytest.raises(ConfigError, match="reward model for value 'warm'"):
        get_method("modpo").train_all(model.path, {"help": HELP, "warm": WARM}, tmp_path / "m", cfg(1, 2),
                                      model.fingerprint, progress=False, preferences=[[0.75, 0.25]], scorers={})


def test_modpo_at_a_vertex_is_dpo(base, tmp_path):
    """At w = (1, 0) the margin is 0 and w_k = 1, so MODPO's loss is −log σ(β Δ): plain DPO on D_1. MODPO computes
    its own log-ratios (trl's fused LM head, adapter disabled for the reference), so this checks them against trl's
    DPO over steps where Δ ≠ 0 — bit for bit, as both take the same forwards in the same order."""
    model, root = base
    c = cfg(steps=3, batch=2)
    get_method("modpo").train_all(model.path, {"help": HELP, "warm": WARM}, tmp_path / "modpo", c, model.fingerprint,
                                  progress=False, preferences=[[1.0, 0.0]])  # no scorer needed: w_warm = 0
    train_dpo_vector(model.path, HELP, "help", tmp_path / "dpo", c, model.fingerprint, progress=False)
    mo, dpo = tensors(tmp_path / "modpo" / "w=1,0"), tensors(tmp_path / "dpo")
    assert any(dpo[m][1].abs().max() > 1e-3 for m in dpo)  # the adapter moved, so Δ ≠ 0 after step 0
    for m in dpo:
        assert torch.equal(mo[m][0], dpo[m][0]) and torch.equal(mo[m][1], dpo[m][1]), m
    a, b = load_value_vector(tmp_path / "modpo" / "w=1,0").meta, load_value_vector(tmp_path / "dpo").meta
    assert a["losses"] == b["losses"] and a["primary"] == "help" and a["margins"] == [0.0, 0.0]


def test_modpo_margins_three_values_by_hand():
    """k = argmax w = 1 (warm, w = 0.5); m_i = 0.2 (r_help(y_w) − r_help(y_l)) + 0.3 (r_third(y_w) − r_third(y_l))."""
    from mva_core.methods.modpo import margins, primary_value

    w = [0.2, 0.5, 0.3]
    got = margins({"help": HELP, "warm": WARM, "third": HELP}, w, {"help": "brevity", "third": "brevity"})
    want = [(w[0] + w[2]) * (brevity(p["chosen"]) - brevity(p["rejected"])) for p in WARM]
    assert primary_value(w) == 1 and primary_value([0.5, 0.5]) == 0  # ties: the first value
    assert got.tolist() == pytest.approx(want)


@pytest.mark.slow
def test_train_method_modpo_and_seqt_resume(base, tmp_path):
    """Through train_method (as the CLI calls it): modpo with scorers and preferences, dpo-seqt; the second call
    finds every dir finished and rewrites nothing."""
    model, root = base
    datasets = {"help": HELP, "warm": WARM}
    kw = {"scorers": {"help": "brevity", "warm": "brevity"}, "preferences": [[0.25, 0.75], [0.75, 0.25]]}
    log = train_method("modpo", model, datasets, tmp_path / "modpo", cfg(2, 2), progress=False, **kw)
    assert sorted(log) == ["w=0.25,0.75", "w=0.75,0.25"]
    assert log["w=0.25,0.75"]["preference"] == [0.25, 0.75]
    assert load_value_vector(tmp_path / "modpo" / "w=0.25,0.75").meta["primary"] == "warm"
    train_method("dpo-seqt", model, datasets, tmp_path / "seqt", cfg(2, 2), progress=False)
    files = sorted((tmp_path).glob("*/*/adapter_model.safetensors"))
    assert len(files) == 3
    stamps = [f.stat().st_mtime_ns for f in files]
    assert get_method("modpo").train_all(model.path, datasets, tmp_path / "modpo", cfg(2, 2), model.fingerprint,
                                         progress=False, **kw) == []
    assert get_method("dpo-seqt").train_all(model.path, datasets, tmp_path / "seqt", cfg(2, 2), model.fingerprint,
                                            progress=False) == []
    assert [f.stat().st_mtime_ns for f in files] == stamps


@pytest.mark.slow
def test_seqt_loss_falls_in_each_stage(base, tmp_path):
    model, root = base
    get_method("dpo-seqt").train_all(model.path, {"help": HELP, "warm": WARM}, tmp_path / "s", cfg(8, 2),
                                     model.fingerprint, progress=False)
    meta = load_value_vector(tmp_path / "s" / "seqt").meta
    for losses in (meta["stage_losses"][0], meta["losses"]):
        assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # each stage starts at its own reference
        assert sum(losses[-3:]) / 3 < losses[0] - 0.02, losses
