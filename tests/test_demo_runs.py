"""Issue #27 items 1b, 2, 3 and issue #28 item 2, the parts the demo rebuild needs: `mva-delta` as a registered
method; runs under their own names (`mva-alpha1` = mva at α = 1, `mi-epo-bw10` = mi-epo at β_w = 10) shown with
the kind of the method that trained them; RiC's targets bounded to an inner quantile range of its training scores;
a sequential run's first vector shared by a link, not a copy; vectors stored in float16; a sampled evaluation whose
samples give a greedy candidate its CRD while staying out of the fronts."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mva_core.config import CPU_SMALL, ConfigError, DecodingConfig
from mva_core.conditioning import QUANTILE_LEVELS, RewardsInContext, ric_desired_rewards
from mva_core.kinds import CONDITIONED, EXTRAPOLATION
from mva_core.methods import get_method
from mva_core.methods.mva import DELTA_ALPHA, _resumable, share_first_vector
from mva_core.pareto import preference_vectors
from mva_core.preference_data import pairs_sha256
from mva_core.vectors import ADAPTER_FILE, file_hash, load_value_vector
from mva_core.workspace import Workspace
from tests.tiny import make_tiny_llama, make_tiny_workspace, make_value_vector


# ---- mva-delta: a registered method with its own defaults ----

def test_mva_delta_is_mva_on_delta_rows_with_the_unbiased_estimator():
    method = get_method("mva-delta")
    s = method.make_settings()
    assert (s.mode, s.estimator, s.penalty, s.alpha) == ("delta", "unbiased", "hsic", DELTA_ALPHA)
    assert method.kind is EXTRAPOLATION and type(method).__mro__[1] is type(get_method("mva")).__mro__[1]
    assert method.make_settings(alpha=2.0).alpha == 2.0  # a setting, as mva's
    assert get_method("mva").make_settings().mode == "lora_A"  # mva keeps the paper's code's default


# ---- runs under their own names ----

def _copy_vector(src: Path, dst: Path, **meta) -> None:
    shutil.copytree(src, dst)
    m = json.loads((dst / "mva_vector.json").read_text())
    m.update(meta)
    (dst / "mva_vector.json").write_text(json.dumps(m))


def test_a_run_dir_is_a_row_of_its_name_with_the_kind_of_the_method_that_trained_it(tmp_path):
    ws = make_tiny_workspace(tmp_path / "ws", method="mva")
    vec = ws.root / "vectors"
    for v in ("warmth", "brevity"):
        _copy_vector(vec / "mva" / v, vec / "mva-alpha1" / v, method="mva", alpha=1.0)
        _copy_vector(vec / "mva" / v, vec / "someones-run" / v, method="not-a-registered-method")
    _copy_vector(vec / "mva" / "warmth", vec / "mi-epo-bw10" / "policy", method="mi-epo", conditioned=True,
                 values=["warmth", "brevity"], beta_w=10.0)
    rows = {m.name: m for m in Workspace(ws.root).compared_methods()}
    assert rows["mva-alpha1"].kind is EXTRAPOLATION and rows["mva-alpha1"].vector_dirs == (
        vec / "mva-alpha1" / "warmth", vec / "mva-alpha1" / "brevity")
    assert rows["mi-epo-bw10"].kind is CONDITIONED  # a conditioned row, not an extrapolation grid of one vector
    assert rows["mi-epo-bw10"].vector_dirs == (vec / "mi-epo-bw10" / "policy",)
    assert rows["someones-run"].kind is EXTRAPOLATION  # unknown trainer: shown as a grid, as before
    assert Workspace(ws.root).run_method("mi-epo-bw10") == "mi-epo"
    assert Workspace(ws.root).run_method("someones-run") is None
    assert "mi-epo" not in rows and "mva-alpha1" in rows  # the row name is the dir name


def test_demo_spec_runs_name_their_method():
    from mva_core.demo import DEMOS, RUN_KEYS, _expected_vectors, run_method

    spec = DEMOS["demo"].methods
    assert run_method("mva-alpha1", spec["mva-alpha1"]) == "mva" and spec["mva-alpha1"]["alpha"] == 1.0
    assert run_method("mva-alpha50", spec["mva-alpha50"]) == "mva" and spec["mva-alpha50"]["alpha"] == 50.0
    assert run_method("mi-epo-bw10", spec["mi-epo-bw10"]) == "mi-epo" and spec["mi-epo-bw10"]["beta_w"] == 10.0
    assert {"mva", "mi-epo", "ortho", "mva-delta", "ric"} <= set(spec)
    for run, settings in spec.items():  # every run's settings are its method's (refused before training if not)
        method = get_method(run_method(run, settings))
        method.make_settings({k: v for k, v in settings.items() if k not in RUN_KEYS})
    assert _expected_vectors("mi-epo", spec["mi-epo-bw10"], 2) == 1
    assert _expected_vectors("mva", spec["mva-alpha1"], 2) == 2


# ---- RiC: targets inside an inner quantile range of the training scores ----

def test_ric_targets_stay_inside_the_inner_quantile_range_on_hand_made_scores():
    # value 0: the scores 0, 1, ..., 100 (Q(q) = 100 q); value 1: 99 zeros and one outlier at 50 (Q(q) = 0 up to
    # q = 0.99, then up to 50: linf over the full range asks for the outlier)
    scores = np.stack([np.arange(101.0), np.r_[np.zeros(100), 50.0]], axis=1)
    full = RewardsInContext.from_scores(["a", "b"], scores, "linf")
    inner = RewardsInContext.from_scores(["a", "b"], scores, "linf", inner=(0.05, 0.95))
    assert full.rewards([0.0, 1.0], ["a", "b"]).tolist() == [0.0, 50.0]  # the single most extreme response
    assert inner.rewards([0.0, 1.0], ["a", "b"]).tolist() == [5.0, 0.0]  # Q_a(0.05) = 5, Q_b(0.95) = 0
    assert inner.rewards([1.0, 0.0], ["a", "b"]).tolist() == [95.0, 0.0]
    assert inner.rewards([0.25, 0.75], ["a", "b"]).tolist() == [50.0, 0.0]  # a: min(2·0.25, 1) of 5..95 = 50
    q = RewardsInContext.from_scores(["a", "b"], scores, "quantile", inner=(0.05, 0.95))
    # quantile: Q(0.05 + min(2 p_i, 1) · 0.9): p_a = 0.1 -> Q(0.23) = 23; p_b = 0.9 -> Q(0.95)
    assert q.rewards([0.1, 0.9], ["a", "b"]).tolist() == [23.0, 0.0]
    for p in preference_vectors(2):  # every target within [Q(0.05), Q(0.95)] of its value
        t = q.rewards(list(p), ["a", "b"])
        assert 5.0 <= t[0] <= 95.0 and t[1] == 0.0
    # the mapping with the default full range is unchanged (policies stored before `inner`)
    assert full.to_dict().get("inner") is None and inner.to_dict()["inner"] == [0.05, 0.95]
    assert RewardsInContext(**{k: v for k, v in inner.to_dict().items() if k != "name"}) == inner
    with pytest.raises(ConfigError, match="inner quantile range"):
        ric_desired_rewards([0.5, 0.5], [0, 0], [1, 1], "linf", inner=(0.9, 0.1))
    with pytest.raises(ConfigError, match="quantiles"):  # bounding needs the stored quantiles
        ric_desired_rewards([0.5, 0.5], [0, 0], [1, 1], "linf", inner=(0.05, 0.95))
    with pytest.raises(ConfigError, match="inner"):
        get_method("ric").make_settings(inner=[0.5])


def test_ric_restate_rewrites_the_stored_targets_without_retraining(tmp_path):
    scores = np.stack([np.arange(101.0), np.r_[np.zeros(100), 50.0]], axis=1)
    old = RewardsInContext.from_scores(["a", "b"], scores, "quantile")
    policy = tmp_path / "ric" / "policy"
    policy.mkdir(parents=True)
    (policy / ADAPTER_FILE).write_bytes(b"weights")
    (policy / "mva_vector.json").write_text(json.dumps({"method": "ric", "conditioning": old.to_dict()}))
    ric = get_method("ric")
    assert ric.restate(tmp_path / "ric", ric.make_settings(mapping="quantile", inner=[0.05, 0.95]))
    meta = json.loads((policy / "mva_vector.json").read_text())
    assert meta["conditioning"]["inner"] == [0.05, 0.95] and meta["conditioning"]["quantiles"] == [
        list(q) for q in old.quantiles]
    assert meta["restated_from"]["mapping"] == "quantile" and "inner" not in meta["restated_from"]
    assert (policy / ADAPTER_FILE).read_bytes() == b"weights"
    assert not ric.restate(tmp_path / "ric", ric.make_settings(mapping="quantile", inner=[0.05, 0.95]))
    assert len(QUANTILE_LEVELS) == len(meta["conditioning"]["quantiles"][0])


# ---- a sequential run's first vector: a link, not a copy; float16 storage ----

@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "base"
    make_tiny_llama(path)
    return path


def _first_vector(base: Path, out: Path, pairs: list[dict], config) -> Path:
    from mva_core.models import weights_fingerprint

    make_value_vector(base, out, "warmth", seed=3)
    meta = json.loads((out / "mva_vector.json").read_text())
    meta.update({"method": "mva-no-hsic", "alpha": 0.0, "penalty": "hsic", "hsic_mode": "lora_A",
                 "hsic_kernel": "gaussian", "hsic_sigma": None, "hsic_terms": [], "earlier": [],
                 "data_sha256": pairs_sha256(pairs), "train_config": config.to_dict(), "losses": [0.69, 0.5],
                 "base_fingerprint": weights_fingerprint(str(base))})
    (out / "mva_vector.json").write_text(json.dumps(meta))
    return out


def test_first_vector_is_linked_and_its_run_resumes_from_it(tiny_base, tmp_path):
    from mva_core.models import weights_fingerprint

    pairs = [{"prompt": "p", "chosen": "a", "rejected": "b"}]
    config = replace(CPU_SMALL, seed=0)
    fp = weights_fingerprint(str(tiny_base))
    src = _first_vector(tiny_base, tmp_path / "vectors" / "mva-no-hsic" / "warmth", pairs, config)
    out = tmp_path / "vectors" / "mva-delta" / "warmth"
    settings = get_method("mva-delta").make_settings()
    assert share_first_vector(src, out, pairs, config, fp, settings, "mva-delta")
    link = out / ADAPTER_FILE
    assert link.is_symlink() and os.readlink(link) == "../../mva-no-hsic/warmth/adapter_model.safetensors"
    vec = load_value_vector(out)
    assert vec.hash == file_hash(src / ADAPTER_FILE) and vec.method == "mva-delta"
    assert vec.meta["alpha"] == DELTA_ALPHA and vec.meta["hsic_mode"] == "delta"
    assert vec.meta["hsic_estimator"] == "unbiased" and vec.meta["losses"] == [0.69, 0.5]
    assert vec.meta["shared_from"] == "../mva-no-hsic/warmth"
    # the run accepts it as its own first vector (what decorrelated_sequence checks before training the next)
    _resumable(out, "warmth", pairs, config, DELTA_ALPHA, "hsic", "delta", "gaussian", None, fp, "mva-delta", [],
               "unbiased")
    ortho = tmp_path / "vectors" / "ortho" / "warmth"
    assert share_first_vector(src, ortho, pairs, config, fp, get_method("ortho").make_settings(), "ortho")
    assert load_value_vector(ortho).meta["penalty"] == "ortho" and "hsic_mode" not in load_value_vector(ortho).meta
    # not the same run: other data, another seed, an existing dir, or a vector that had earlier vectors
    other = tmp_path / "vectors" / "mva-alpha1" / "warmth"
    assert not share_first_vector(src, other, pairs + pairs, config, fp, settings, "mva")
    assert not share_first_vector(src, other, pairs, replace(config, seed=1), fp, settings, "mva")
    assert not share_first_vector(src, out, pairs, config, fp, settings, "mva-delta")
    assert not other.exists()
    # copying the workspace (as data/workspace is made) copies the bytes, not the link
    shutil.copytree(tmp_path / "vectors", tmp_path / "copy")
    assert not (tmp_path / "copy" / "mva-delta" / "warmth" / ADAPTER_FILE).is_symlink()
    assert file_hash(tmp_path / "copy" / "mva-delta" / "warmth" / ADAPTER_FILE) == vec.hash


def test_identical_adapters_are_linked_and_float16_storage_loads_as_float32(tiny_base, tmp_path):
    from mva_core.demo import link_duplicate_adapters, store_float16

    root = tmp_path
    make_value_vector(tiny_base, root / "vectors" / "a" / "warmth", "warmth", seed=1)
    shutil.copytree(root / "vectors" / "a" / "warmth", root / "vectors" / "b" / "warmth")
    make_value_vector(tiny_base, root / "vectors" / "b" / "brevity", "brevity", seed=2)
    before = load_value_vector(root / "vectors" / "b" / "warmth")
    assert link_duplicate_adapters(root, ["a", "b"]) == 1
    assert (root / "vectors" / "b" / "warmth" / ADAPTER_FILE).is_symlink()
    assert not (root / "vectors" / "b" / "brevity" / ADAPTER_FILE).is_symlink()
    assert load_value_vector(root / "vectors" / "b" / "warmth").hash == before.hash
    assert link_duplicate_adapters(root, ["a", "b"]) == 0  # idempotent

    full = load_value_vector(root / "vectors" / "b" / "brevity")
    size = (root / "vectors" / "b" / "brevity" / ADAPTER_FILE).stat().st_size
    assert store_float16(root / "vectors" / "b") == 1  # the link is left alone
    assert store_float16(root / "vectors" / "b") == 0
    half = load_value_vector(root / "vectors" / "b" / "brevity")
    assert half.meta["stored_dtype"] == "float16"
    assert (root / "vectors" / "b" / "brevity" / ADAPTER_FILE).stat().st_size < 0.6 * size
    for name, layer in full.layers.items():
        assert half.layers[name].A.dtype == torch.float32
        assert torch.equal(half.layers[name].A, layer.A.to(torch.float16).to(torch.float32))
        assert torch.equal(half.layers[name].B, layer.B.to(torch.float16).to(torch.float32))
    assert load_value_vector(root / "vectors" / "a" / "warmth").hash == before.hash  # the link's target unchanged


# ---- the sampled evaluation: CRD from the samples of a greedy candidate's twin ----

SCORERS = ("civility", "brevity")
SAMPLED = DecodingConfig(max_new_tokens=8, batch_size=9, do_sample=True, num_samples=3, temperature=1.0, seed=7)


def _crd_by_hand(root: Path, method: str) -> float:
    """From the raw rows: greedy per-prompt rewards -> z against the base's (mean, population sd over prompts, 1
    where it is 0) ->
    each p's front candidate maximising p·z -> the samples of the sampled candidate with the same vectors and
    weights, in z -> 2×2 det by hand, averaged over MI-EPO's 11 p."""
    con = sqlite3.connect(root / "mva.sqlite")
    cands = {cid: (m, src, w, h) for cid, m, src, w, h in con.execute(
        "SELECT id, method, source, weights, vector_hashes FROM candidates")}
    greedy: dict[int, dict[str, np.ndarray]] = {}
    for cid, j, scorer, value in con.execute("SELECT candidate_id, prompt_idx, scorer, value FROM scores"):
        greedy.setdefault(cid, {}).setdefault(scorer, np.zeros(3))[j] = value
    samples: dict[int, dict[str, np.ndarray]] = {}
    for cid, j, k, scorer, value in con.execute("SELECT candidate_id, prompt_idx, sample_idx, scorer, value "
                                                "FROM sample_scores"):
        samples.setdefault(cid, {}).setdefault(scorer, np.zeros((3, 3)))[j, k] = value
    con.close()
    (base,) = [c for c, (m, *_) in cands.items() if m == "base"]
    B = np.stack([greedy[base][v] for v in SCORERS], axis=1)
    mu, sd = B.mean(axis=0), B.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)  # a value constant over the base's responses: not rescaled
    ids = [c for c, (m, src, *_) in cands.items() if m == method and src == "sweep"]
    z = {c: (np.array([greedy[c][v].mean() for v in SCORERS]) - mu) / sd for c in ids}
    front = [c for c in ids if not any((z[d] >= z[c]).all() and (z[d] > z[c]).any() for d in ids)]
    twin = {c: next(d for d, (m, src, w, h) in cands.items()
                    if src == "sampled-evaluation" and (w, h) == cands[c][2:]) for c in ids}
    dets = []
    for p in preference_vectors(2):
        best = max(front, key=lambda c: (float(p @ z[c]), -c))
        x, y = ((samples[twin[best]][v].reshape(-1) - mu[i]) / sd[i] for i, v in enumerate(SCORERS))
        cxx, cyy = np.sum((x - x.mean()) ** 2) / (len(x) - 1), np.sum((y - y.mean()) ** 2) / (len(y) - 1)
        cxy = np.sum((x - x.mean()) * (y - y.mean())) / (len(x) - 1)
        dets.append(cxx * cyy - cxy ** 2)
    return float(np.mean(dets))


@pytest.mark.slow
def test_sampled_evaluation_gives_greedy_candidates_a_crd_and_stays_out_of_the_fronts(tmp_path):
    from mva_core.metrics import crd_by_method, sample_rewards, sampled_twins
    from mva_core.results import load_table
    from mva_core.sweep import evaluate_base, method_groups, sampled_evaluation, sweep_groups

    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=3, scorers=SCORERS)
    evaluate_base(ws)
    sweep_groups("mva-no-hsic", method_groups(ws, "mva-no-hsic", 0.5))
    table = load_table(ws)
    assert crd_by_method(ws, table, ["mva-no-hsic"])["mva-no-hsic"].value is None  # greedy: no samples yet
    with pytest.raises(ConfigError, match="num_samples"):
        sampled_evaluation(ws, "mva-no-hsic", DecodingConfig(max_new_tokens=8), 0.5)
    res = sampled_evaluation(ws, "mva-no-hsic", SAMPLED, 0.5)
    assert res.generated == 9
    assert sampled_evaluation(ws, "mva-no-hsic", SAMPLED, 0.5).generated == 0  # resumable
    after = load_table(ws)
    assert sorted(after.ids()) == sorted(table.ids())  # the sampled candidates are not front points
    greedy_ids = [int(i) for i in table.for_method("mva-no-hsic").ids()]
    twins = sampled_twins(ws, greedy_ids)
    assert sorted(twins) == sorted(greedy_ids) and not set(twins.values()) & set(greedy_ids)
    R = sample_rewards(ws, greedy_ids[:1])
    assert R[greedy_ids[0]].shape == (3, 3, 2)
    np.testing.assert_array_equal(R[greedy_ids[0]], sample_rewards(ws, [twins[greedy_ids[0]]])[twins[greedy_ids[0]]])
    crd = crd_by_method(ws, after, ["mva-no-hsic"])["mva-no-hsic"]
    assert crd.value is not None and crd.samples_per_preference == 9 and crd.interval is not None
    assert crd.value == pytest.approx(_crd_by_hand(ws.root, "mva-no-hsic"), rel=1e-9, abs=1e-12)


# ---- the delta penalty from ΔW's factors (what makes mva-delta affordable) ----

@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_delta_kernel_from_factors_equals_the_dense_one_with_its_gradient(kernel):
    from mva_core.compose import delta_weight
    from mva_core.hsic import kernel_matrix, layer_kernel
    from mva_core.vectors import LoraLayer

    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, 30, generator=g, dtype=torch.float64)
    B = torch.randn(40, 4, generator=g, dtype=torch.float64)
    fast_A, fast_B = A.clone().requires_grad_(), B.clone().requires_grad_()
    dense_A, dense_B = A.clone().requires_grad_(), B.clone().requires_grad_()
    fast = layer_kernel(LoraLayer(fast_A, fast_B, 2.0), "delta", kernel)
    dense = kernel_matrix(delta_weight(LoraLayer(dense_A, dense_B, 2.0)), kernel)  # the rows of ΔW, formed
    torch.testing.assert_close(fast, dense, rtol=1e-9, atol=1e-9)
    weights = torch.randn(40, 40, generator=g, dtype=torch.float64)
    (fast * weights).sum().backward()
    (dense * weights).sum().backward()
    torch.testing.assert_close(fast_A.grad, dense_A.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(fast_B.grad, dense_B.grad, rtol=1e-7, atol=1e-9)
    zero = layer_kernel(LoraLayer(A, torch.zeros_like(B), 2.0), "delta", kernel)  # ΔW = 0 before training
    assert torch.isfinite(zero).all()
