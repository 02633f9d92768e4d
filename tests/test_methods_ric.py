"""RiC (Rewards-in-Context; methods/ric.py, conditioning.RewardsInContext) on a tiny Llama: the reward text and
RiC's preference-to-reward mapping against hand-computed values, the response scores against a by-hand
normalisation, step 1's SFT loss against the base model's own NLL of the responses, resume after a cut, and the
CLI train → sweep at MI-EPO's preferences → Compare's MIP and an exported card with RiC's system message."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mva_core import pareto
from mva_core.conditioning import (PreferenceWeights, RewardsInContext, conditioning_from_meta, reward_text,
                                   ric_desired_rewards)
from mva_core.config import ConfigError, TrainConfig
from mva_core.kinds import CONDITIONED
from mva_core.methods import available_methods, get_method
from mva_core.methods.harness import partial_dir
from mva_core.methods.ric import normalised_scores, scored_responses, train_ric_policy
from mva_core.models import weights_fingerprint
from tests.test_cli import run
from tests.test_methods_conditioned import WARM  # the same warm pairs
from tests.test_train_resume import Interrupt, StopAfter  # a crash after optimizer step k
from tests.tiny import make_tiny_llama

# the first rejected response is WARM's first chosen one, for the same prompt: one distinct (prompt, response)
SHORT = [{"prompt": "Say hi", "chosen": "Hi.", "rejected": "Hello friend, lovely to see you!"},
         {"prompt": "Rate my cake", "chosen": "Good.", "rejected": "Well, let me think about the cake in great detail."},
         {"prompt": "Any advice?", "chosen": "Rest.", "rejected": "There are many things you could consider doing."}]
DATA = {"warm": WARM, "short": SHORT}
N_DISTINCT = 11
CFG = TrainConfig(lora_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], learning_rate=5e-2, max_steps=4,
                  per_device_batch_size=N_DISTINCT, max_length=128, checkpoint_every=2)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("ric")
    make_tiny_llama(root / "base")
    return root, str(root / "base"), weights_fingerprint(str(root / "base"))


def brevity(y: str) -> float:
    return 1 / (1 + len(y.split()) / 20)  # the packaged `brevity` scorer, written out


def test_registered_as_a_conditioned_method_with_its_paper():
    assert "ric" in available_methods()
    method = get_method("ric")
    assert method.kind is CONDITIONED and method.composition == "conditioned" and "2402.10207" in method.paper
    assert method.settings == ("scorers", "mapping", "inner")


def test_reward_text_is_rics_one_decimal_format():
    assert reward_text([0.42, -0.1], ["warmth", "brevity"]) == "<warmth> 0.4 <brevity> -0.1"
    assert reward_text([-0.04, 2.0], ["a", "b"]) == "<a> 0.0 <b> 2.0"  # no "-0.0"
    with pytest.raises(ConfigError, match="one score per value"):
        reward_text([0.1], ["a", "b"])
    with pytest.raises(ConfigError, match="finite"):
        reward_text([float("nan"), 0.0], ["a", "b"])


def test_preference_to_reward_mapping_by_hand():
    low, high = [-1.5, -2.0], [2.5, 1.0]
    # linf: f_i = min(N p_i, 1)(high_i − low_i) + low_i
    #   p=(.3,.7): min(.6,1)·4 − 1.5 = 0.9;  min(1.4,1)·3 − 2 = 1.0
    assert ric_desired_rewards([0.3, 0.7], low, high).tolist() == [0.9, 1.0]
    assert ric_desired_rewards([1.0, 0.0], low, high).tolist() == [2.5, -2.0]
    assert ric_desired_rewards([0.5, 0.5], low, high).tolist() == [2.5, 1.0]  # both at their maximum
    assert ric_desired_rewards([3.0, 7.0], low, high).tolist() == [0.9, 1.0]  # p is normalised first
    # l2: f_i = p_i/‖p‖₂ (high_i − low_i) + low_i;  ‖(.3,.7)‖ = √.58 = 0.76158
    #   .3/.76158·4 − 1.5 = 0.0757 → 0.1;  .7/.76158·3 − 2 = 0.7574 → 0.8
    assert ric_desired_rewards([0.3, 0.7], low, high, "l2").tolist() == [0.1, 0.8]
    #   p=(.5,.5): 0.70711·4 − 1.5 = 1.328 → 1.3;  0.70711·3 − 2 = 0.121 → 0.1
    assert ric_desired_rewards([0.5, 0.5], low, high, "l2").tolist() == [1.3, 0.1]
    # three values on [0, 1]: linf (.6, .6, 1);  l2 ‖(.2,.2,.6)‖ = √.44 = .6633 → (.3015, .3015, .9045)
    assert ric_desired_rewards([0.2, 0.2, 0.6], [0] * 3, [1] * 3).tolist() == [0.6, 0.6, 1.0]
    assert ric_desired_rewards([0.2, 0.2, 0.6], [0] * 3, [1] * 3, "l2").tolist() == [0.3, 0.3, 0.9]
    with pytest.raises(ConfigError, match="unknown; choose one of"):
        ric_desired_rewards([0.5, 0.5], low, high, "cosine")
    with pytest.raises(ConfigError, match="quantile mapping needs each value's score quantiles"):
        ric_desired_rewards([0.5, 0.5], low, high, "quantile")
    with pytest.raises(ConfigError, match="non-negative"):
        ric_desired_rewards([-0.5, 1.5], low, high)


def test_quantile_mapping_by_hand():
    """quantile: f_i = Q_i(min(N p_i, 1)), Q_i the quantile function of value i's training scores (linear between
    order statistics, as numpy's default): a's scores 0,1,2,3,10 -> Q(0.6) at position 4·0.6 = 2.4 -> 2.4."""
    Z = np.array([[0.0, 5.0], [1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [10.0, 1.0]])
    ric = RewardsInContext.from_scores(["a", "b"], Z, "quantile")
    assert (ric.low, ric.high) == ((0.0, 1.0), (10.0, 5.0))
    assert ric.rewards([0.3, 0.7], ["a", "b"]).tolist() == [2.4, 5.0]  # b (sorted 1..5) at Q(1) = 5
    assert ric.rewards([0.7, 0.3], ["a", "b"]).tolist() == [10.0, 3.4]  # b at Q(0.6): 1 + 2.4 = 3.4
    assert ric.rewards([0.0, 1.0], ["a", "b"]).tolist() == [0.0, 5.0]
    # linf on the same range asks a for 0.6·10 = 6: a score only the outlier 10 comes near
    assert replace(ric, mapping="linf").rewards([0.3, 0.7], ["a", "b"]).tolist() == [6.0, 5.0]
    assert conditioning_from_meta({"conditioning": ric.to_dict()}) == ric


def test_the_policy_reads_p_by_value_name_in_its_training_order():
    ric = RewardsInContext(("warmth", "brevity"), (-1.5, -2.0), (2.5, 1.0))
    assert ric.text([0.3, 0.7], ["warmth", "brevity"]) == "<warmth> 0.9 <brevity> 1.0"
    assert ric.text([0.7, 0.3], ["brevity", "warmth"]) == "<warmth> 0.9 <brevity> 1.0"  # same p, other order
    assert ric.text([1, 0], ["warmth", "brevity"], "Be kind.") == "Be kind.\n<warmth> 2.5 <brevity> -2.0"
    assert conditioning_from_meta({"conditioning": ric.to_dict()}) == ric
    assert conditioning_from_meta({}) == PreferenceWeights()  # mo-odpo / mi-epo policies stored before the field
    with pytest.raises(ConfigError, match=r"trained on values \['warmth', 'brevity'\]"):
        ric.text([0.5, 0.5], ["warmth", "civility"])
    with pytest.raises(ConfigError, match="must be one of"):
        conditioning_from_meta({"conditioning": {"name": "telepathy"}})
    with pytest.raises(ConfigError, match="low <= high"):
        RewardsInContext(("a",), (1.0,), (0.0,))


def test_responses_are_the_distinct_pairs_scored_and_normalised_by_hand():
    rows, R = scored_responses(DATA, {"warm": "brevity", "short": "brevity"})
    want = list(dict.fromkeys((p["prompt"], y) for ps in (WARM, SHORT) for p in ps
                              for y in (p["chosen"], p["rejected"])))
    assert rows == want and len(rows) == N_DISTINCT  # the shared response is scored once
    r = np.array([brevity(y) for _, y in rows])
    assert np.allclose(R, np.stack([r, r], axis=1))
    Z, mean, sd, keep = normalised_scores(R, ["warm", "short"])
    mu = sum(r) / len(r)
    sigma = math.sqrt(sum((x - mu) ** 2 for x in r) / len(r))  # population sd, as RiC's np.std
    assert mean.tolist() == pytest.approx([mu, mu]) and sd.tolist() == pytest.approx([sigma, sigma])
    assert Z[:, 0].tolist() == [round((x - mu) / sigma, 1) + 0.0 for x in r] and keep.all()
    with pytest.raises(ConfigError, match=r"no scorer for value\(s\) \['short'\]"):
        scored_responses(DATA, {"warm": "brevity"})
    flat = [{"prompt": "a", "chosen": "one two", "rejected": "three four"}]
    with pytest.raises(ConfigError, match=r"value\(s\) \['x'\] gives every response the same score"):
        normalised_scores(scored_responses({"x": flat}, {"x": "brevity"})[1], ["x"])


def base_completion_nll(base_dir: str, prompts: list[str], completions: list[str]) -> float:
    """Mean −log p_base over every completion token (EOS included) of the batch, one forward per row."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    tok = AutoTokenizer.from_pretrained(base_dir)
    total, count = 0.0, 0
    for x, y in zip(prompts, completions):
        p_ids = tok(x)["input_ids"]
        ids = tok(x + y + tok.eos_token)["input_ids"]
        assert ids[:len(p_ids)] == p_ids
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)  # (T−1, V)
        for t in range(len(p_ids), len(ids)):  # token t predicted from position t − 1
            total -= logp[t - 1, ids[t]].item()
            count += 1
    return total / count


@pytest.mark.slow
def test_train_writes_a_policy_whose_step_one_loss_is_the_base_nll_and_resumes(base):
    """All 11 responses in one batch: at step 1 LoRA's B = 0, so the loss is the base model's mean NLL of the
    responses given their scored prompts. A run cut after step 3 resumes from checkpoint 2 and ends equal."""
    from mva_core.models import render_prompts, load_base
    from mva_core.vectors import load_value_vector

    root, base_dir, fp = base
    scorers = {"warm": "warmth", "short": "brevity"}
    full = root / "full"
    summary = train_ric_policy(base_dir, DATA, full, CFG, fp, scorers, progress=False)
    assert summary["n_responses"] == N_DISTINCT and len(summary["losses"]) == CFG.max_steps
    # the prompts by hand: each response's own normalised scores, as the system message
    rows, R = scored_responses(DATA, scorers)
    Z = np.round((R - R.mean(axis=0)) / R.std(axis=0), 1)
    tok = load_base(base_dir).tokenizer
    prompts = [render_prompts(tok, [x], f"<warm> {z[0] + 0.0:.1f} <short> {z[1] + 0.0:.1f}")[0]
               for (x, _), z in zip(rows, Z)]
    assert summary["losses"][0] == pytest.approx(base_completion_nll(base_dir, prompts, [y for _, y in rows]), abs=1e-4)
    assert summary["losses"][-1] < summary["losses"][0]

    vector = load_value_vector(full)  # a loadable adapter with its metadata
    meta = vector.meta
    assert CONDITIONED.is_policy([vector]) and meta["method"] == "ric" and meta["values"] == ["warm", "short"]
    assert meta["scorers"] == scorers and meta["n_responses"] == N_DISTINCT and "2402.10207" in meta["paper"]
    ric = CONDITIONED.conditioning([vector])
    assert (ric.values, ric.low, ric.high, ric.mapping) == (("warm", "short"), tuple(Z.min(axis=0)),
                                                            tuple(Z.max(axis=0)), "linf")
    assert np.allclose(ric.quantiles, np.quantile(Z, np.linspace(0, 1, 101), axis=0).T)
    assert meta["condition_example"] == ric.text([0.5, 0.5], ["warm", "short"])
    lora = load_file(str(full / "adapter_model.safetensors"))
    assert any(t.abs().sum() > 0 for k, t in lora.items() if "lora_B" in k)  # the policy moved

    cut = root / "cut"
    with pytest.raises(Interrupt):
        train_ric_policy(base_dir, DATA, cut, CFG, fp, scorers, progress=False, callbacks=[StopAfter(3)])
    assert sorted(p.name for p in partial_dir(cut).glob("checkpoint-*")) == ["checkpoint-2"] and not cut.exists()
    resumed = train_ric_policy(base_dir, DATA, cut, CFG, fp, scorers, progress=False)
    assert load_value_vector(cut).meta["resumed_from_step"] == 2 and not partial_dir(cut).exists()
    assert resumed["losses"] == pytest.approx(summary["losses"], abs=1e-6)
    a, b = load_file(str(full / "adapter_model.safetensors")), load_file(str(cut / "adapter_model.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_settings_are_refused(base, tmp_path):
    _, base_dir, fp = base
    with pytest.raises(ConfigError, match="mapping='cosine'"):
        train_ric_policy(base_dir, DATA, tmp_path / "x", CFG, fp, {"warm": "warmth", "short": "brevity"},
                         mapping="cosine", progress=False)
    with pytest.raises(ConfigError, match="no scorer for value"):
        train_ric_policy(base_dir, DATA, tmp_path / "x", CFG, fp, {"warm": "warmth"}, progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_cli_train_then_sweep_at_the_evaluation_preferences(tmp_path, base):
    """train --method ric writes one policy; sweep evaluates it with each of MI-EPO's 11 preferences, each as RiC's
    desired scores in its prompt (checked by regenerating one p with the text built by hand); Compare's MIP is
    mean_p p·z(s(p)); the exported card carries that system message."""
    import yaml

    from mva_core.compose import WeightBatchedModel
    from mva_core.config import DecodingConfig
    from mva_core.data import write_jsonl
    from mva_core.generate import generate_responses
    from mva_core.models import load_base
    from mva_core.export import export_candidate
    from mva_core.metrics import compare_table
    from mva_core.results import candidate_table
    from mva_core.vectors import load_value_vector
    from mva_core.workspace import Manifest, ValueSpec, Workspace

    _, base_dir, _ = base
    for name, pairs in DATA.items():
        write_jsonl(tmp_path / f"{name}.jsonl", pairs)
    ws_dir = tmp_path / "ws"
    write_jsonl(ws_dir / "prompts" / "validation.jsonl", [{"prompt": p} for p in ("Say hi", "Any advice?")])
    values = [ValueSpec("warm", "brevity"), ValueSpec("short", "brevity")]
    Workspace.create(ws_dir, Manifest(base=base_dir, values=values,
                                      decoding=DecodingConfig(max_new_tokens=4, batch_size=8)))
    run("train", "--method", "ric", "--values", "warm,short", "--data", f"warm={tmp_path / 'warm.jsonl'}",
        "--data", f"short={tmp_path / 'short.jsonl'}", "--base", base_dir, "--steps", "2", "--lr", "5e-2",
        "--workspace", ws_dir)
    policy = ws_dir / "vectors" / "ric" / "policy"
    assert (policy / "adapter_config.json").is_file()
    ws = Workspace(ws_dir)
    assert ws.compared_method("ric").kind is CONDITIONED
    run("sweep", "--method", "ric", "--workspace", ws_dir)
    table = candidate_table(ws)
    rows = table[table["method"] == "ric"].sort_values("w_warm")
    P = pareto.preference_vectors(2)
    assert len(rows) == len(P) == 11 and all(w == [1.0] for w in rows["weights"])
    assert np.allclose(rows[["w_warm", "w_short"]].to_numpy(), P[np.argsort(P[:, 0])])

    # both values are scored by brevity here, so both columns of the training scores are the same z
    distinct = dict.fromkeys((p["prompt"], y) for ps in DATA.values() for p in ps for y in (p["chosen"], p["rejected"]))
    r = np.array([brevity(y) for _, y in distinct])
    z = np.round((r - r.mean()) / r.std(), 1)
    lo, hi = z.min() + 0.0, z.max() + 0.0
    # p = (0.3, 0.7), linf: warm min(0.6, 1) of the way from lo to hi, short at hi
    text = f"<warm> {round(0.6 * (hi - lo) + lo, 1) + 0.0:.1f} <short> {hi:.1f}"
    cid = int(rows[np.isclose(rows["w_warm"], 0.3)]["id"].iloc[0])
    base_model = load_base(base_dir)
    want = generate_responses(WeightBatchedModel(base_model.model, [load_value_vector(policy)]), base_model.tokenizer,
                              ws.prompts(), np.ones((1, 1)), replace(ws.manifest.decoding, system_prompt=text))[0]
    assert ws.store.responses([cid]).sort_values("prompt_idx")["response"].tolist() == want

    compare, _ = compare_table(table, ["warm", "short"])
    Zs, W = rows[["z_warm", "z_short"]].to_numpy(), rows[["w_warm", "w_short"]].to_numpy()
    want_mip = float(np.mean([w @ s for w, s in zip(W, Zs)]))  # by hand: each p with its own run
    assert compare.set_index("method").loc["ric", "MIP"] == pytest.approx(want_mip)

    out = export_candidate(ws, cid, "card", tmp_path / "card")
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])["mva"]
    assert card["conditioning"] == {"preference": {"warm": 0.3, "short": 0.7}, "system_prompt": text}
    again = run("sweep", "--method", "ric", "--workspace", ws_dir)  # resumable: nothing new
    assert len(candidate_table(Workspace(ws_dir)).query("method == 'ric'")) == 11, again.stdout
    # --mapping reaches the stored policy (the default above is linf)
    assert load_value_vector(policy).meta["conditioning"]["mapping"] == "linf"
    run("train", "--method", "ric", "--values", "warm,short", "--data", f"warm={tmp_path / 'warm.jsonl'}",
        "--data", f"short={tmp_path / 'short.jsonl'}", "--base", base_dir, "--steps", "1", "--mapping", "quantile",
        "--out", tmp_path / "q", "--workspace", ws_dir)
    assert CONDITIONED.conditioning([load_value_vector(tmp_path / "q" / "policy")]).mapping == "quantile"
