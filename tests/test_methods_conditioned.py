"""Preference-conditioned policies (mo-odpo, mi-epo; methods/conditioned.py) on a tiny Llama: the prompt
conditioning, the scalarised reward, the log-probs of the weight-consistency term, the step-1 losses against
hand-computed values, the CLI train → sweep at the evaluation preferences → MIP of the conditioned policy."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mva_core.config import ConfigError
from mva_core.methods import available_methods, get_method
from mva_core.conditioning import condition_text, quantise
from mva_core.config import TrainConfig
from mva_core.methods.conditioned import Scalariser, mirrored, train_conditioned_policy, training_rows
from mva_core.models import sequence_logps as completion_logps
from mva_core.models import weights_fingerprint
from mva_core import pareto
from tests.test_cli import run
from tests.tiny import make_tiny_llama

WARM = [{"prompt": "Say hi", "chosen": "Hello friend, lovely to see you!", "rejected": "Go away."},
        {"prompt": "Rate my cake", "chosen": "It looks wonderful, well done!", "rejected": "It is bad."},
        {"prompt": "Any advice?", "chosen": "You can do it, I believe in you!", "rejected": "No."}]
SHORT = [{"prompt": "Say hi", "chosen": "Hi.", "rejected": "Hello there my friend, how are you doing on this fine day?"},
         {"prompt": "Rate my cake", "chosen": "Good.", "rejected": "Well, let me think about the cake in great detail."},
         {"prompt": "Any advice?", "chosen": "Rest.", "rejected": "There are many things you could consider doing."}]
CFG = TrainConfig(lora_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], learning_rate=5e-2, max_steps=2,
                  per_device_batch_size=2, max_length=128)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("conditioned")
    make_tiny_llama(root / "base")
    return root, str(root / "base"), weights_fingerprint(str(root / "base"))


def test_registered_with_their_papers():
    assert {"mo-odpo", "mi-epo"} <= set(available_methods())
    assert get_method("mo-odpo").composition == get_method("mi-epo").composition == "conditioned"
    assert get_method("mo-odpo").beta_w == 0.0 and get_method("mi-epo").beta_w == 0.01  # DESIGN §1
    assert "2503.00295" in get_method("mo-odpo").paper and "2607.01392" in get_method("mi-epo").paper


def test_condition_text_quantises_to_what_the_prompt_shows():
    assert condition_text([0.2, 0.8], ["warmth", "brevity"]) == "Preference weights: warmth=0.20, brevity=0.80."
    assert condition_text([1, 0], ["a", "b"], "Be kind.") == "Be kind.\nPreference weights: a=1.00, b=0.00."
    # largest remainders: 0.335 + 0.335 + 0.33 -> 34 + 33 + 33 hundredths (sum stays exactly 1)
    assert quantise([0.335, 0.335, 0.33]) == [0.34, 0.33, 0.33]
    assert quantise([0.995, 0.005, 0.0]) == [1.0, 0.0, 0.0]  # remainders .5/.5/0: the first takes the leftover unit
    for w in np.random.default_rng(0).dirichlet([1, 1, 1], size=50):
        q = quantise(w)
        assert abs(sum(q) - 1) < 1e-12 and all(abs(a - b) <= 0.01 + 1e-12 for a, b in zip(q, w))
    assert mirrored([0.2, 0.8]) == [0.8, 0.2]
    with pytest.raises(ConfigError, match="one weight per value"):
        condition_text([0.5, 0.5], ["a", "b", "c"])
    with pytest.raises(ConfigError, match="non-negative"):
        quantise([-0.1, 1.1])


def test_training_rows_draw_w_from_the_dirichlet():
    rows = training_rows({"warm": WARM, "short": SHORT}, 2000, alpha=1.0, seed=0)
    assert [r["question"] for r in rows[:4]] == ["Say hi", "Rate my cake", "Any advice?", "Say hi"]  # distinct prompts in turn
    W = np.array([r["preference"] for r in rows])
    assert np.allclose(W.sum(axis=1), 1)
    # Dirichlet(1, 1) = uniform on the simplex: w_1 ~ U(0, 1), mean 1/2, variance 1/12
    assert abs(W[:, 0].mean() - 0.5) < 0.02 and abs(W[:, 0].var() - 1 / 12) < 0.01


def test_scalarised_reward_against_hand_computed_brevity():
    """R_w = Σ w_i (r_i − μ_i)/σ_i; brevity(y) = 1/(1 + words/20), μ/σ over every pair's chosen and rejected."""
    datasets = {"short": SHORT, "warm": WARM}
    scal = Scalariser.fit(datasets, {"short": "brevity", "warm": "brevity"})
    responses = [p["chosen"] for ps in datasets.values() for p in ps] + [p["rejected"] for ps in datasets.values() for p in ps]
    r = np.array([1 / (1 + len(y.split()) / 20) for y in responses])
    assert scal.mean == pytest.approx([r.mean()] * 2) and scal.sd == pytest.approx([r.std()] * 2)
    ys = ["Hi.", "one two three four five six seven eight"]
    z = (np.array([1 / (1 + 1 / 20), 1 / (1 + 8 / 20)]) - r.mean()) / r.std()
    got = scal(["p", "p"], [[{"role": "assistant", "content": y}] for y in ys], question=["q", "q"],
               preference=[[0.3, 0.7], [1.0, 0.0]])
    assert got == pytest.approx([0.3 * z[0] + 0.7 * z[0], z[1]])
    with pytest.raises(ConfigError, match="no scorer for value"):
        Scalariser.fit(datasets, {"short": "brevity"})


def test_completion_logps_equal_a_token_by_token_computation(base):
    from transformers import AutoModelForCausalLM

    _, base_dir, _ = base
    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    prompts, completions = [[5, 6, 7], [8, 9]], [[10, 11], [12, 13, 14]]
    got = completion_logps(model, prompts, completions, pad_id=0)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        want = 0.0
        for t in range(len(c)):  # log π(c_t | p, c_<t), one forward per token
            logits = model(torch.tensor([p + c[:t]])).logits[0, -1]
            want += torch.log_softmax(logits, -1)[c[t]].item()
        assert got[b].item() == pytest.approx(want, abs=1e-4)


def test_step_one_losses_are_log2_and_log2_plus_beta_w_log2(base, tmp_path):
    """At step 1 LoRA's B = 0, so π = π_ref: L_DPO = log 2 and L_wc = log 2, so mo-odpo logs log 2 and mi-epo
    logs (1 + β_w)·log 2. Both see the same on-policy samples (same seed), so their reward margins agree."""
    _, base_dir, fp = base
    datasets = {"warm": WARM, "short": SHORT}
    scorers = {"warm": "warmth", "short": "brevity"}
    mo = train_conditioned_policy(base_dir, datasets, tmp_path / "mo", CFG, fp, scorers, method="mo-odpo",
                                  beta_w=0.0, max_new_tokens=6, progress=False)
    mi = train_conditioned_policy(base_dir, datasets, tmp_path / "mi", CFG, fp, scorers, method="mi-epo",
                                  beta_w=0.5, max_new_tokens=6, progress=False)
    assert mo["losses"][0] == pytest.approx(math.log(2), abs=1e-4) and mo["weight_consistency_terms"] == []
    assert mi["weight_consistency_terms"][0] == pytest.approx(math.log(2), abs=1e-5)
    assert mi["losses"][0] == pytest.approx(1.5 * math.log(2), abs=1e-4)
    assert mi["scalarised_reward_margins"][0] == pytest.approx(mo["scalarised_reward_margins"][0])
    meta = json.loads((tmp_path / "mi" / "mva_vector.json").read_text())
    assert meta["conditioned"] is True and meta["values"] == ["warm", "short"] and meta["beta_w"] == 0.5
    assert meta["scorers"] == scorers and len(meta["losses"]) == CFG.max_steps
    assert meta["conditioning"] == {"name": "preference-weights"}  # reads p as its weights (conditioning.py)
    # the policy moved: its LoRA B is no longer zero
    from safetensors.torch import load_file
    assert any(t.abs().sum() > 0 for k, t in load_file(str(tmp_path / "mi" / "adapter_model.safetensors")).items()
               if "lora_B" in k)


def test_bad_settings_are_refused(base, tmp_path):
    _, base_dir, fp = base
    kw = dict(method="mi-epo", progress=False)
    with pytest.raises(ConfigError, match="beta_w"):
        train_conditioned_policy(base_dir, {"warm": WARM}, tmp_path / "x", CFG, fp, {"warm": "warmth"}, beta_w=-1, **kw)
    with pytest.raises(ConfigError, match="max_steps"):
        train_conditioned_policy(base_dir, {"warm": WARM}, tmp_path / "x", replace(CFG, max_steps=-1), fp,
                                 {"warm": "warmth"}, beta_w=0.01, **kw)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_cli_train_then_sweep_at_the_evaluation_preferences(tmp_path, base):
    """train --method mi-epo writes one policy; sweep evaluates it with each of MI-EPO's 11 preferences in its
    prompt (distinct stored candidates, their p in w_<value>); Compare's MIP is mean_p p·z(s(p))."""
    from mva_core.config import DecodingConfig
    from mva_core.data import write_jsonl
    from mva_core.metrics import compare_table
    from mva_core.results import candidate_table
    from mva_core.workspace import Manifest, ValueSpec, Workspace

    _, base_dir, _ = base
    for name, pairs in (("warm", WARM), ("short", SHORT)):
        write_jsonl(tmp_path / f"{name}.jsonl", pairs)
    ws = tmp_path / "ws"
    write_jsonl(ws / "prompts" / "validation.jsonl", [{"prompt": p} for p in ("Say hi", "Any advice?")])
    Workspace.create(ws, Manifest(base=base_dir, values=[ValueSpec("warm", "warmth"), ValueSpec("short", "brevity")],
                                  decoding=DecodingConfig(max_new_tokens=4, batch_size=8)))
    run("train", "--method", "mi-epo", "--values", "warm,short", "--data", f"warm={tmp_path / 'warm.jsonl'}",
        "--data", f"short={tmp_path / 'short.jsonl'}", "--base", base_dir, "--steps", "2", "--lr", "5e-2",
        "--workspace", ws)
    assert (ws / "vectors" / "mi-epo" / "policy" / "adapter_config.json").is_file()
    run("sweep", "--method", "mi-epo", "--workspace", ws)
    table = candidate_table(Workspace(ws))
    rows = table[table["method"] == "mi-epo"].sort_values("w_warm")
    P = pareto.preference_vectors(2)
    assert len(rows) == len(P) == 11
    assert np.allclose(rows[["w_warm", "w_short"]].to_numpy(), P[np.argsort(P[:, 0])])
    assert all(w == [1.0] for w in rows["weights"])  # the policy itself at weight 1, p lives in its prompt
    store = Workspace(ws).store
    responses = store.responses(rows["id"].tolist())
    assert set(responses["candidate_id"]) == set(rows["id"])
    compare, _ = compare_table(table, ["warm", "short"])
    z = rows[["z_warm", "z_short"]].to_numpy()
    W = rows[["w_warm", "w_short"]].to_numpy()
    want = float(np.mean([w @ s for w, s in zip(W, z)]))  # by hand: each p with its own run
    assert compare.set_index("method").loc["mi-epo", "MIP"] == pytest.approx(want)
    again = run("sweep", "--method", "mi-epo", "--workspace", ws)  # resumable: nothing new
    assert len(candidate_table(Workspace(ws)).query("method == 'mi-epo'")) == 11, again.stdout


def test_mip_conditioned_by_hand():
    P = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    conditioned_on = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # rows in another order than P
    F = np.array([[3.0, -1.0], [0.0, 2.0], [1.0, 1.0]])
    # p=(0,1) -> row 1: 2;  p=(.5,.5) -> row 2: 1;  p=(1,0) -> row 0: 3;  mean = 2
    assert pareto.mip_conditioned(P, conditioned_on, F) == pytest.approx(2.0)
    assert math.isnan(pareto.mip_conditioned(P, conditioned_on[:2], F[:2]))  # p=(.5,.5) never evaluated
    with pytest.raises(pareto.ParetoError, match="one p per candidate"):
        pareto.mip_conditioned(P, conditioned_on[:2], F)


def test_a_store_written_before_preferences_opens_and_gains_the_column(tmp_path):
    import sqlite3

    from mva_core.store import SCHEMA, Store

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:  # the schema as stores were written before this column
        con.executescript(SCHEMA)
        con.execute("INSERT INTO candidates(key, method, source, value_names, weights, vector_hashes, base_fingerprint,"
                    " prompts_hash, decoding, created) VALUES ('k','mva','sweep','[\"a\"]','[1.0]','[\"h\"]','b','p','d',0)")
    cand = Store(path).candidates()
    assert cand["preference"].tolist() == [None] and cand["weights"].tolist() == [[1.0]]
    Store(path)  # opening again (the column exists now) is fine


def test_explore_evaluates_a_conditioned_policy_at_the_slider_preference(tmp_path, monkeypatch):
    """Explore: a conditioned method's sliders set p (normalised), Evaluate stores the policy at weight 1 with p
    in its prompt, and the generated responses equal the policy's own generation with that system message."""
    from streamlit.testing.v1 import AppTest

    from mva_core.generate import generate_responses
    from mva_core.models import load_base
    from mva_core.vectors import load_value_vector
    from mva_core.compose import WeightBatchedModel
    from tests.apptest import APP
    from tests.tiny import make_tiny_workspace, make_value_vector

    ws = make_tiny_workspace(tmp_path)
    policy = make_value_vector(tmp_path / "base", tmp_path / "vectors" / "mo-odpo" / "policy", "mo-odpo", seed=7,
                               method="mo-odpo")
    meta = json.loads((policy / "mva_vector.json").read_text())
    (policy / "mva_vector.json").write_text(json.dumps({**meta, "conditioned": True, "values": ["warmth", "brevity"]}))
    monkeypatch.setenv("MVA_WORKSPACE", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    at.selectbox(key="explore_method").set_value("mo-odpo").run()
    at.slider(key="cp_warmth").set_value(0.3)
    at.slider(key="cp_brevity").set_value(0.9)
    at.button(key="explore_evaluate").click().run()
    assert not at.exception, at.exception
    cid = at.session_state["explore_candidate"]
    row = ws.store.candidates().set_index("id").loc[cid]
    assert row["weights"] == [1.0] and row["preference"] == pytest.approx([0.25, 0.75])  # 0.3/1.2, 0.9/1.2
    # independently: the policy alone (weight 1) with the condition as its system message
    base = load_base(str(tmp_path / "base"))
    decoding = replace(ws.manifest.decoding, system_prompt=condition_text([0.25, 0.75], ["warmth", "brevity"]))
    want = generate_responses(WeightBatchedModel(base.model, [load_value_vector(policy)]), base.tokenizer,
                              ws.prompts(), np.ones((1, 1)), decoding)[0]
    assert ws.store.responses([int(cid)])["response"].tolist() == want
    assert any("your point" == t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"])


def test_export_of_a_conditioned_candidate_says_its_system_prompt(tmp_path):
    """The exported card of a conditioned policy's candidate carries p and the exact system message; the merged
    model is the policy at weight 1 (export's own reload check compares the logits)."""
    import yaml

    from mva_core.export import export_candidate
    from mva_core.sweep import Evaluator
    from tests.tiny import make_tiny_workspace, make_value_vector

    ws = make_tiny_workspace(tmp_path)
    policy = make_value_vector(tmp_path / "base", tmp_path / "vectors" / "mi-epo" / "policy", "mi-epo", seed=3,
                               method="mi-epo")
    meta = json.loads((policy / "mva_vector.json").read_text())
    (policy / "mva_vector.json").write_text(json.dumps({**meta, "conditioned": True, "values": ["warmth", "brevity"]}))
    cid = Evaluator(ws, "mi-epo").evaluate([[0.3, 0.7]]).candidate_ids[0]
    out = export_candidate(ws, cid, "merged", tmp_path / "out")
    text = (out / "README.md").read_text()
    card = yaml.safe_load(text.split("---")[1])["mva"]
    assert card["weights"] == {"mi-epo": 1.0}
    assert card["conditioning"] == {"preference": {"warmth": 0.3, "brevity": 0.7},
                                    "system_prompt": "Preference weights: warmth=0.30, brevity=0.70."}
    assert "Preference weights: warmth=0.30, brevity=0.70." in text.split("---", 2)[2]


def test_training_curves_show_the_weight_consistency_term():
    from mva_core.diagnostics import training_curves
    import pandas as pd

    log = {"policy": {"losses": [0.70, 0.69], "reward_accuracies": [0.0, 0.5],
                      "weight_consistency_terms": [0.693, 0.690]}}
    runs = pd.DataFrame([{"id": 1, "kind": "train", "method": "mi-epo", "status": "done", "config": "{}",
                          "log": json.dumps(log)}])
    curves = training_curves(runs)
    assert curves["penalty"].tolist() == ["weight_consistency"] * 2
    assert curves["penalty_term"].tolist() == [0.693, 0.690] and curves["loss"].tolist() == [0.70, 0.69]


def mo_odpo_workspace(tmp_path):
    """A tiny workspace with a (random) MO-ODPO policy marked conditioned on both values, and its base evaluated."""
    from mva_core.sweep import evaluate_base
    from tests.tiny import make_tiny_workspace, make_value_vector

    ws = make_tiny_workspace(tmp_path)
    policy = make_value_vector(tmp_path / "base", tmp_path / "vectors" / "mo-odpo" / "policy", "mo-odpo", seed=5,
                               method="mo-odpo")
    meta = json.loads((policy / "mva_vector.json").read_text())
    (policy / "mva_vector.json").write_text(json.dumps({**meta, "conditioned": True, "values": ["warmth", "brevity"]}))
    evaluate_base(ws)
    return ws


@pytest.mark.slow
def test_compare_draws_a_conditioned_policy_in_order_of_p_with_its_mip(tmp_path, monkeypatch):
    from mva_core.results import candidate_table
    from mva_core.sweep import Evaluator
    from tests.apptest import open_page, plotly_array

    ws = mo_odpo_workspace(tmp_path)
    P = pareto.preference_vectors(2)
    Evaluator(ws, "mo-odpo").evaluate(P[::-1])  # stored in another order than p's
    at = open_page(monkeypatch, tmp_path, "pages/compare.py")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    # the policy's own line (Compare also draws its attainment band, "mo-odpo: 10% attainment", under it)
    trace = next(t for t in spec["data"] if str(t.get("name", "")).startswith("mo-odpo (p"))
    assert trace["line"]["dash"] == "dash" and "p = 0→1 on warmth" in trace["name"]
    table = candidate_table(ws)
    rows = table[table["method"] == "mo-odpo"].sort_values("w_warmth")
    assert np.allclose(plotly_array(trace["x"]), rows["z_warmth"]) and len(rows) == 11
    shown = at.dataframe[0].value.set_index("method")
    want = np.mean([w @ z for w, z in zip(rows[["w_warmth", "w_brevity"]].to_numpy(), rows[["z_warmth", "z_brevity"]].to_numpy())])
    assert shown.loc["mo-odpo", "MIP"] == pytest.approx(want, abs=1e-3)


@pytest.mark.slow
def test_a_conditioned_sweep_stores_each_preference_as_it_is_done(tmp_path):
    """One generate call per p either way; so each p is stored (and counted) before the next starts: a sweep of
    11 preferences reports 1, 2, … 11 candidates, not 0 until the first chunk of 8 is done."""
    from mva_core.sweep import method_groups, sweep_groups

    ws = mo_odpo_workspace(tmp_path)
    counts = []
    sweep_groups("mo-odpo", method_groups(ws, "mo-odpo", 0.1), chunk=8,
                 progress=lambda stage, done, total: counts.append(done) if stage == "candidates" else None)
    assert counts == list(range(1, 12))
    assert len(ws.store.candidates("mo-odpo")) == 11
