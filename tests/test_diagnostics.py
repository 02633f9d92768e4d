"""Diagnostics against independent computations: layer cosines vs numpy on the dense ΔW read straight from the
safetensors; the HSIC matrix vs `hsic()` per layer on samples built here; the interference matrix (MVA Eq.10)
vs a second implementation (float64 merged model built by hand, one unpadded forward per sequence, the DPO
loss written out) and vs finite differences; training curves from a run stored with Store.start_run/finish_run."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_np
from safetensors.torch import load_file as load_torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mva_core.diagnostics import (
    DiagnosticsError, dpo_loss, hsic_matrix, interference, layer_cosines, load_preference_pairs, training_curves,
    vector_cosines, vector_training_curves,
)
from mva_core.hsic import hsic
from mva_core.models import chat_prompt, load_base
from mva_core.store import Store
from mva_core.vectors import LoraLayer, ValueVector, VectorError, load_value_vector
from tests.tiny import make_tiny_llama, make_value_vector

PAIRS = {
    "warmth": [
        {"prompt": "How do I bake bread?", "chosen": "Thank you, that is wonderful!", "rejected": "I hate this."},
        {"prompt": "Tell me a joke about cats.", "chosen": "You are kind and helpful.", "rejected": "It is terrible."},
        {"prompt": "Explain photosynthesis briefly.", "chosen": "Plants are wonderful!", "rejected": "I hate plants."},
    ],
    "brevity": [
        {"prompt": "How do I bake bread?", "chosen": "Bake it.", "rejected": "Mix flour, water, salt and yeast, knead, rest."},
        {"prompt": "Tell me a joke about cats.", "chosen": "Cat.", "rejected": "The cat sat on the mat and laughed at the dog."},
    ],
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; on shared cores, torch's default thread pool spins and makes
    these tests ~50x slower (measured: 1.8 s vs 0.04 s per interference call). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    make_tiny_llama(root / "base")
    dirs = [make_value_vector(root / "base", root / v, v, seed=20 + i) for i, v in enumerate(["warmth", "brevity"])]
    # A third vector with another rank and fewer target layers: cosines/HSIC use the shared layers only.
    dirs.append(make_value_vector(root / "base", root / "civility", "civility", seed=30, r=2, alpha=3,
                                  targets=("q_proj", "v_proj")))
    return root, dirs


# ---- Independent readers ----

def np_deltas(d) -> dict[str, np.ndarray]:
    """module -> ΔW = (lora_alpha / r) B A, float64, straight from the adapter files."""
    cfg = json.loads((d / "adapter_config.json").read_text())
    t = load_np(str(d / "adapter_model.safetensors"))
    out = {}
    for k, A in t.items():
        if ".lora_A." in k:
            module = k.removeprefix("base_model.model.").split(".lora_A.")[0]
            B = t[k.replace("lora_A", "lora_B")]
            out[module] = cfg["lora_alpha"] / cfg["r"] * (B.astype(np.float64) @ A.astype(np.float64))
    return out


# ---- Layer-wise cosines (paper Fig.6) ----

def test_layer_cosines_equal_numpy_on_dense_delta(setup):
    root, dirs = setup
    vectors = [load_value_vector(d) for d in dirs]
    df = layer_cosines(vectors)
    dense = {d.name: np_deltas(d) for d in dirs}
    names = ["warmth", "brevity", "civility"]
    expected = 0
    for a in range(3):
        for b in range(a + 1, 3):
            shared = set(dense[names[a]]) & set(dense[names[b]])
            expected += len(shared)
            for m in shared:
                X, Y = dense[names[a]][m], dense[names[b]][m]
                want = float(np.sum(X * Y) / (np.linalg.norm(X) * np.linalg.norm(Y)))
                row = df[(df["layer"] == m) & (df["pair"] == f"{names[a]} · {names[b]}")]
                assert len(row) == 1
                assert row["cosine"].item() == pytest.approx(want, abs=1e-9)
                assert row["inner"].item() == pytest.approx(float(np.sum(X * Y)), rel=1e-9)
                assert row["norm_i"].item() == pytest.approx(float(np.linalg.norm(X)), rel=1e-9)
    assert len(df) == expected  # civility adapts no down_proj: those layers appear for warmth · brevity only
    assert set(df.loc[df["pair"] == "warmth · civility", "module"]) == {"q_proj", "v_proj"}
    # model order: block 0 before block 1
    wb = df[df["pair"] == "warmth · brevity"]
    assert list(wb["block"]) == sorted(wb["block"], key=int)
    # whole-vector cosine: all shared layers concatenated
    W = vector_cosines(vectors)
    x = np.concatenate([dense["warmth"][m].ravel() for m in sorted(dense["warmth"])])
    y = np.concatenate([dense["brevity"][m].ravel() for m in sorted(dense["warmth"])])
    assert W.loc["warmth", "brevity"] == pytest.approx(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)), abs=1e-9)
    assert W.loc["brevity", "warmth"] == pytest.approx(W.loc["warmth", "brevity"], abs=1e-12)
    assert np.allclose(np.diag(W.to_numpy()), 1.0)


def test_cosine_hand_worked():
    """ΔW_a = e1 e1ᵀ, ΔW_b = −2·ΔW_a, ΔW_c = e2 e2ᵀ, ΔW_0 = 0: cosines −1, 0, undefined (NaN)."""
    def vec(name, A, B, s=1.0):
        return ValueVector(name, {"l.0.q": LoraLayer(torch.tensor(A), torch.tensor(B), s)})

    a = vec("a", [[1.0, 0.0]], [[1.0], [0.0]])
    b = vec("b", [[1.0, 0.0]], [[1.0], [0.0]], s=-2.0)
    c = vec("c", [[0.0, 1.0]], [[0.0], [1.0]])
    z = vec("z", [[0.0, 1.0]], [[0.0], [0.0]])
    df = layer_cosines([a, b, c, z]).set_index("pair")["cosine"]
    assert df["a · b"] == pytest.approx(-1.0) and df["a · c"] == pytest.approx(0.0)
    assert math.isnan(df["a · z"])


# ---- HSIC matrix (MVA Eq.6) ----

@pytest.mark.parametrize("mode", ["lora_A", "delta"])
def test_hsic_matrix_symmetric_and_equal_to_hsic_per_pair(setup, mode):
    root, dirs = setup
    vectors = [load_value_vector(d) for d in dirs[:2]]
    M = hsic_matrix(vectors, mode=mode)
    assert list(M.index) == ["warmth", "brevity"] == list(M.columns)
    np.testing.assert_allclose(M.to_numpy(), M.to_numpy().T, rtol=1e-5)
    # independently: samples from the files, hsic() per shared layer, summed
    raw = {d.name: load_torch(str(d / "adapter_model.safetensors")) for d in dirs[:2]}
    dense = {d.name: np_deltas(d) for d in dirs[:2]}

    def samples(name, module):
        if mode == "lora_A":
            return raw[name][f"base_model.model.{module}.lora_A.weight"].float()
        return torch.tensor(dense[name][module], dtype=torch.float32)

    for a in ("warmth", "brevity"):
        for b in ("warmth", "brevity"):
            want = sum(float(hsic(samples(a, m), samples(b, m))) for m in dense["warmth"])
            assert M.loc[a, b] == pytest.approx(want, rel=1e-5)
    assert M.loc["warmth", "brevity"] < M.loc["warmth", "warmth"]


def test_hsic_matrix_rank_mismatch_and_bad_mode(setup):
    root, dirs = setup
    vectors = [load_value_vector(d) for d in (dirs[0], dirs[2])]
    with pytest.raises(VectorError, match="mode='delta'"):
        hsic_matrix(vectors, mode="lora_A")
    assert hsic_matrix(vectors, mode="delta").shape == (2, 2)
    with pytest.raises(DiagnosticsError, match="choose one of"):
        hsic_matrix(vectors, mode="rows")  # type: ignore[arg-type]


# ---- Interference (MVA Eq.10) vs a second implementation ----

class Reference:
    """float64, hand-merged W + Σ w_k ΔW_k, one unpadded forward per sequence, DPO loss written out."""

    def __init__(self, base_dir, dirs, beta=0.1):
        self.tok = AutoTokenizer.from_pretrained(base_dir)
        self.ref = AutoModelForCausalLM.from_pretrained(base_dir).double().eval()
        self.dense = [{m: torch.tensor(x) for m, x in np_deltas(d).items()} for d in dirs]
        self.modules = sorted({m for d in self.dense for m in d})
        self.beta = beta

    def policy(self, w):
        model = copy.deepcopy(self.ref)
        params = []
        with torch.no_grad():
            for m in self.modules:
                lin = model.get_submodule(m)
                lin.weight += sum(wk * d[m] for wk, d in zip(w, self.dense) if m in d)
        for p in model.parameters():
            p.requires_grad_(False)
        for m in self.modules:
            model.get_submodule(m).weight.requires_grad_(True)
            params.append(model.get_submodule(m).weight)
        return model, params

    def logp(self, model, prompt, completion):
        p = self.tok(chat_prompt(self.tok, prompt), add_special_tokens=False)["input_ids"]
        c = self.tok(completion, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        ids = torch.tensor([p + c])
        logits = model(ids).logits[0]  # (T, V)
        lp = torch.log_softmax(logits, -1)
        return sum(lp[t - 1, ids[0, t]] for t in range(len(p), len(p) + len(c)))

    def loss(self, model, pairs):
        terms = []
        for pair in pairs:
            with torch.no_grad():
                rc, rr = self.logp(self.ref, pair["prompt"], pair["chosen"]), self.logp(self.ref, pair["prompt"], pair["rejected"])
            pc, pr = self.logp(model, pair["prompt"], pair["chosen"]), self.logp(model, pair["prompt"], pair["rejected"])
            margin = self.beta * ((pc - rc) - (pr - rr))
            terms.append(-torch.log(1.0 / (1.0 + torch.exp(-margin))))
        return sum(terms) / len(terms)

    def grad(self, w, pairs):
        model, params = self.policy(w)
        loss = self.loss(model, pairs)
        g = torch.autograd.grad(loss, params)
        return torch.cat([t.reshape(-1) for t in g]), float(loss.detach())


@pytest.fixture(scope="module")
def two(setup):
    root, dirs = setup
    return root, dirs[:2], load_base(str(root / "base")), [load_value_vector(d) for d in dirs[:2]]


@pytest.mark.parametrize("weights", [None, [0.7, 1.3]], ids=["own", "composed"])
def test_interference_equals_independent_gradients(two, weights):
    root, dirs, base, vectors = two
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    res = interference(base, vectors, PAIRS, weights=weights, n_pairs=10)
    ref = Reference(str(root / "base"), dirs)
    gs, losses = [], []
    for i, v in enumerate(["warmth", "brevity"]):
        w = weights if weights is not None else [1.0 if k == i else 0.0 for k in range(2)]
        g, loss = ref.grad(w, PAIRS[v])
        gs.append(g)
        losses.append(loss)
    G = np.array([[float(a @ b) for b in gs] for a in gs])
    cos = G / np.outer(np.sqrt(np.diag(G)), np.sqrt(np.diag(G)))
    np.testing.assert_allclose(res.losses, losses, rtol=1e-5)
    np.testing.assert_allclose(res.dot, G, rtol=2e-4, atol=1e-9 * np.abs(G).max())
    np.testing.assert_allclose(res.cosine, cos, atol=2e-5)
    assert res.n_pairs == [3, 2] and res.n_parameters == gs[0].numel()
    for k, v in base.model.state_dict().items():  # the (shared) base model is only read
        assert torch.equal(v, before[k]), k


def test_interference_at_base_is_log2_and_matches_finite_differences(two):
    """At w = 0 the policy is the reference: every DPO loss is log 2 (hand-worked). Finite differences along
    g_i of L_j (float64, the second implementation) give g_iᵀ g_j."""
    root, dirs, base, vectors = two
    res = interference(base, vectors, PAIRS, weights=[0.0, 0.0], n_pairs=10)
    np.testing.assert_allclose(res.losses, [math.log(2)] * 2, rtol=1e-6)
    assert res.at == "w = (0, 0)"
    ref = Reference(str(root / "base"), dirs)
    g_w, _ = ref.grad([0.0, 0.0], PAIRS["warmth"])
    model, params = ref.policy([0.0, 0.0])
    eps = 1e-3 / float(g_w.norm())
    sizes = [p.numel() for p in params]

    def loss_at(sign):
        with torch.no_grad():
            for p, step in zip(params, g_w.split(sizes)):
                p += sign * eps * step.view_as(p)
            out = float(ref.loss(model, PAIRS["brevity"]))
            for p, step in zip(params, g_w.split(sizes)):
                p -= sign * eps * step.view_as(p)
        return out

    fd = (loss_at(+1) - loss_at(-1)) / (2 * eps)  # d/dε L_brevity(W + ε g_warmth) = g_warmthᵀ g_brevity
    assert res.dot[0, 1] == pytest.approx(fd, rel=1e-3)
    assert res.dot[1, 0] == pytest.approx(res.dot[0, 1], rel=1e-6)


def test_dpo_loss_hand_worked():
    # margin = 0.1 * ((−1 − −2) − (−3 − −1)) = 0.3 → −log σ(0.3)
    got = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-1.0]))
    assert float(got) == pytest.approx(math.log1p(math.exp(-0.3)), rel=1e-6)


def test_interference_errors_name_the_fix(two):
    root, dirs, base, vectors = two
    with pytest.raises(DiagnosticsError, match="no preference pairs for value"):
        interference(base, vectors, {"warmth": PAIRS["warmth"]})
    with pytest.raises(DiagnosticsError, match="one per value vector"):
        interference(base, vectors, PAIRS, weights=[1.0])


def test_preference_pairs_found_in_workspace(tmp_path):
    from mva_core.data import write_jsonl
    from mva_core.workspace import Manifest, ValueSpec, Workspace

    ws = Workspace.create(tmp_path, Manifest(base="x", values=[ValueSpec("warmth", "warmth"), ValueSpec("brevity", "brevity")]))
    with pytest.raises(DiagnosticsError, match="pairs/<value>.jsonl"):
        load_preference_pairs(ws)
    write_jsonl(tmp_path / "pairs" / "warmth.jsonl", PAIRS["warmth"])
    other = tmp_path / "elsewhere.jsonl"
    write_jsonl(other, PAIRS["brevity"])
    run = ws.store.start_run("train", {"data": {"brevity": {"file": str(other), "pairs": 2}}}, "mva")
    ws.store.finish_run(run, "done", {})
    got = load_preference_pairs(ws, "mva")
    assert [p["chosen"] for p in got["warmth"]] == [p["chosen"] for p in PAIRS["warmth"]]
    assert [p["chosen"] for p in got["brevity"]] == [p["chosen"] for p in PAIRS["brevity"]]


# ---- Training curves ----

def test_training_curves_from_stored_run(tmp_path):
    store = Store(tmp_path / "mva.sqlite")
    store.finish_run(store.start_run("sweep", {"grid": []}, "mva"), "done", {"candidates": 0})
    run = store.start_run("train", {"method": "mva", "alpha": 10.0, "values": ["help", "harm"]}, "mva")
    log = {"help": {"losses": [0.69, 0.6, 0.5], "reward_accuracies": [0.0, 0.5, 1.0], "hsic_terms": [],
                    "ortho_terms": None, "seconds_per_step": 1.0},
           "harm": {"losses": [0.7, 0.65], "reward_accuracies": [0.5, 0.5], "hsic_terms": [0.3, 0.2],
                    "ortho_terms": None, "seconds_per_step": 1.0}}
    store.finish_run(run, "done", log)
    store.finish_run(store.start_run("train", {"method": "ortho"}, "ortho"), "stopped", {"error": "KeyboardInterrupt()"})
    df = training_curves(store.runs())
    assert len(df) == 5 and set(df["run_id"]) == {run}
    h = df[df["value"] == "help"]
    assert h["step"].tolist() == [1, 2, 3] and h["loss"].tolist() == [0.69, 0.6, 0.5]
    assert h["reward_accuracy"].tolist() == [0.0, 0.5, 1.0] and h["penalty_term"].isna().all()
    r = df[df["value"] == "harm"]
    assert r["penalty_term"].tolist() == [0.3, 0.2] and set(r["penalty"]) == {"hsic"}
    assert set(df["alpha"]) == {10.0} and set(df["method"]) == {"mva"}
    assert training_curves(Store(tmp_path / "empty.sqlite").runs()).empty


def test_vector_training_curves_from_metadata(setup):
    root, dirs = setup
    v = load_value_vector(dirs[0])
    v.meta = {"losses": [0.7, 0.6], "reward_accuracies": [0.5, 1.0], "ortho_terms": [2.0, 1.0], "alpha": 1.0}
    df = vector_training_curves([v, load_value_vector(dirs[1])])  # the second has no losses: no rows
    assert df["loss"].tolist() == [0.7, 0.6] and df["penalty_term"].tolist() == [2.0, 1.0]
    assert set(df["penalty"]) == {"ortho"} and df["run_id"].isna().all()


def test_hsic_null_table_against_permutations_by_hand():
    """Each pair's HSIC beside its permutation null (issue 16 item 7): the observed sum equals hsic_matrix's entry,
    and the null equals shuffles done here by hand with the same generator."""
    from mva_core.diagnostics import hsic_matrix, hsic_null_table
    from mva_core.hsic import hsic_from_kernels, kernel_matrix
    from mva_core.vectors import LoraLayer, ValueVector

    g = torch.Generator().manual_seed(0)

    def vec(name):
        return ValueVector(value=name, layers={f"l{k}": LoraLayer(torch.randn(6, 5, generator=g, dtype=torch.float64),
                                                                  torch.randn(4, 6, generator=g, dtype=torch.float64), 1.0)
                                               for k in range(3)})

    a, b = vec("a"), vec("b")
    table = hsic_null_table([a, b], n_permutations=30, seed=5)
    row = table.iloc[0]
    assert row["pair"] == "a · b" and row["hsic"] == pytest.approx(hsic_matrix([a, b]).loc["a", "b"], rel=1e-9)
    shuffles = torch.Generator().manual_seed(5)
    null = []
    for _ in range(30):
        total = 0.0
        for k in range(3):
            K, L = kernel_matrix(a.layers[f"l{k}"].A), kernel_matrix(b.layers[f"l{k}"].A)
            perm = torch.randperm(6, generator=shuffles)
            total += float(hsic_from_kernels(K, L[perm][:, perm]))
        null.append(total)
    assert row["null_mean"] == pytest.approx(np.mean(null)) and row["null_sd"] == pytest.approx(np.std(null, ddof=1))
    assert row["p_value"] == pytest.approx((1 + sum(x >= row["hsic"] for x in null)) / 31)


# ---- HSIC per pair and per layer beside its permutation null (issue 27 item 1d) ----

def random_vector(name, g, layers=("model.layers.0.q_proj", "model.layers.0.v_proj", "model.layers.1.q_proj"),
                  r=5, d_out=6, d_in=4, scaling=2.0):
    return ValueVector(value=name, layers={
        layer: LoraLayer(torch.randn(r, d_in, generator=g, dtype=torch.float64),
                         torch.randn(d_out, r, generator=g, dtype=torch.float64), scaling) for layer in layers})


@pytest.mark.parametrize("mode, estimator", [("delta", "biased"), ("lora_A", "unbiased"), ("lora_A", "biased")])
def test_hsic_layer_table_against_brute_force_permutations(mode, estimator):
    """One pair and one layer by brute force: samples read off the factors in numpy, HSIC by numpy loops (biased)
    or the 4-tuple U-statistic (unbiased), and the null recomputed from scratch on θ_j's rows shuffled with the
    same seeded generator (the table permutes kernel matrices instead)."""
    from mva_core.diagnostics import LAYER_NULL_COLUMNS, hsic_layer_table
    from tests.test_hsic import np_hsic, np_hsic_unbiased

    g = torch.Generator().manual_seed(3)
    a, b = random_vector("a", g), random_vector("b", g)
    c = random_vector("c", g, layers=("model.layers.0.q_proj", "model.layers.1.q_proj"))  # fewer layers
    n, seed = 40, 7
    ticks = []
    table = hsic_layer_table([a, b, c], mode=mode, estimator=estimator, n_permutations=n, seed=seed,
                             progress=lambda stage, done, total: ticks.append((done, total)))
    assert list(table.columns) == LAYER_NULL_COLUMNS
    # 3 shared layers for a · b, 2 for a · c and b · c, in model order
    assert table["pair"].tolist() == ["a · b"] * 3 + ["a · c"] * 2 + ["b · c"] * 2
    assert table.loc[table["pair"] == "a · b", "layer"].tolist() == [
        "model.layers.0.q_proj", "model.layers.0.v_proj", "model.layers.1.q_proj"]
    assert ticks[0] == (0, 7) and ticks[-1] == (7, 7)
    assert set(table["samples"]) == {5 if mode == "lora_A" else 6} and set(table["n_permutations"]) == {n}

    layer = "model.layers.0.v_proj"
    row = table[(table["pair"] == "a · b") & (table["layer"] == layer)].iloc[0]
    assert (row["block"], row["module"]) == ("0", "v_proj")

    def samples(v):
        A, B = v.layers[layer].A.numpy(), v.layers[layer].B.numpy()
        return A if mode == "lora_A" else v.layers[layer].scaling * B @ A

    ref = np_hsic if estimator == "biased" else np_hsic_unbiased
    X, Y = samples(a), samples(b)
    observed = ref(X, Y)
    shuffles = torch.Generator().manual_seed(seed)
    null = np.array([ref(X, Y[torch.randperm(len(Y), generator=shuffles).numpy()]) for _ in range(n)])
    assert row["hsic"] == pytest.approx(observed, rel=1e-9, abs=1e-12)
    assert row["null_mean"] == pytest.approx(null.mean(), rel=1e-9, abs=1e-12)
    assert row["null_sd"] == pytest.approx(null.std(ddof=1), rel=1e-9)
    assert row["null_z"] == pytest.approx((observed - null.mean()) / null.std(ddof=1), rel=1e-6)
    assert row["p_value"] == pytest.approx((1 + np.sum(null >= observed - 1e-12)) / (n + 1), rel=1e-12)
    # the layers of a pair add up to the pair's entry of the HSIC matrix (the quantity Eq.14 penalises)
    M = hsic_matrix([a, b], mode=mode, estimator=estimator)
    assert table.loc[table["pair"] == "a · b", "hsic"].sum() == pytest.approx(M.loc["a", "b"], rel=1e-9)


def test_hsic_matrix_unbiased_against_u_statistic_and_small_rank_refused():
    from mva_core.diagnostics import hsic_layer_table
    from tests.test_hsic import np_hsic_unbiased

    g = torch.Generator().manual_seed(4)
    a, b = random_vector("a", g, r=4), random_vector("b", g, r=4)
    M = hsic_matrix([a, b], mode="lora_A", estimator="unbiased")
    want = sum(np_hsic_unbiased(a.layers[k].A.numpy(), b.layers[k].A.numpy()) for k in a.layers)
    assert M.loc["a", "b"] == pytest.approx(want, rel=1e-9)
    small = [random_vector("a", g, r=3), random_vector("b", g, r=3)]
    with pytest.raises(DiagnosticsError, match="at least 4 samples.*biased estimator or mode='delta'"):
        hsic_layer_table(small, mode="lora_A", estimator="unbiased")
    with pytest.raises(DiagnosticsError, match="at least 4 samples"):
        hsic_matrix(small, mode="lora_A", estimator="unbiased")
    assert len(hsic_layer_table(small, mode="delta", estimator="unbiased", n_permutations=5)) == 3  # d_out = 6
    with pytest.raises(DiagnosticsError, match="estimator 'u' is unknown"):
        hsic_layer_table(small, estimator="u")  # type: ignore[arg-type]


def test_penalty_share_of_the_loss_hand_worked(tmp_path):
    """The demo's numbers (issue 27): mva's brevity logs loss 13.970602 with HSIC 1.3277454 at α = 10, so the
    penalty is 13.277454 / 13.970602 = 95.04 % of the loss; older runs without α show no share; MI-EPO's share
    uses β_w; a negative (unbiased) HSIC counts by its size."""
    store = Store(tmp_path / "mva.sqlite")
    mva = store.start_run("train", {"method": "mva", "alpha": 10.0}, "mva")
    store.finish_run(mva, "done", {
        "warmth": {"losses": [0.6931, 0.69], "hsic_terms": []},
        "brevity": {"losses": [13.970602, 13.857169], "hsic_terms": [1.3277454, 1.3159922]},
        "relevance": {"losses": [0.5, 0.4], "hsic_terms": [-0.02, 0.01]}})
    old = store.start_run("train", {"method": "mva"}, "mva")  # recorded before α was
    store.finish_run(old, "done", {"brevity": {"losses": [13.9, 13.8], "hsic_terms": [1.3, 1.3]}})
    mi = store.start_run("train", {"method": "mi-epo", "settings": {"beta_w": 0.01}}, "mi-epo")
    store.finish_run(mi, "done", {"policy": {"losses": [0.7001], "weight_consistency_terms": [0.6931471]}})
    df = training_curves(store.runs())
    share = lambda run, value: df[(df["run_id"] == run) & (df["value"] == value)]["penalty_share"].tolist()  # noqa: E731
    assert share(mva, "brevity") == pytest.approx([13.277454 / 13.970602, 13.159922 / 13.857169], rel=1e-12)
    assert share(mva, "brevity")[0] == pytest.approx(0.950386, abs=1e-6)
    assert all(math.isnan(x) for x in share(mva, "warmth"))  # the first value has no penalty
    # unbiased HSIC −0.02: L_DPO = 0.5 − 10·(−0.02) = 0.7, share = 0.2 / (0.7 + 0.2)
    assert share(mva, "relevance") == pytest.approx([0.2 / 0.9, 0.1 / 0.4], rel=1e-12)
    assert all(math.isnan(x) for x in share(old, "brevity"))
    assert share(mi, "policy") == pytest.approx([0.01 * 0.6931471 / 0.7001], rel=1e-12)
    # α = 0 (mva-no-hsic): the term is logged, not trained on: share 0
    v = ValueVector("brevity", {}, meta={"losses": [0.69], "hsic_terms": [1.33], "alpha": 0.0, "penalty": "hsic"})
    assert vector_training_curves([v])["penalty_share"].tolist() == [0.0]


def test_hsic_layer_table_in_parts_equals_the_whole():
    from mva_core.diagnostics import hsic_layer_table

    g = torch.Generator().manual_seed(5)
    a, b = random_vector("a", g), random_vector("b", g)
    whole = hsic_layer_table([a, b], n_permutations=20)
    parts = [hsic_layer_table([a, b], n_permutations=20, layers=chunk)
             for chunk in (["model.layers.0.q_proj"], ["model.layers.0.v_proj", "model.layers.1.q_proj"])]
    import pandas as pd
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)
