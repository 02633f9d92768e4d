"""MOD, decode-time composition (issue 28 item 3): the mixed next-token distribution and greedy decoding against a
direct computation with each model merged separately and run alone, in float64 numpy."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mva_core.compose import WeightBatchedModel, merge
from mva_core.config import DecodingConfig
from mva_core.decode_time import component_weights, mixed_log_probs
from mva_core.generate import generate_responses, generate_samples
from mva_core.models import chat_prompt
from mva_core.vectors import load_value_vectors
from tests.tiny import make_tiny_llama, make_value_vector

PROMPTS = ["How do I bake bread?", "Tell me a joke about cats, please."]
WEIGHTS = np.array([[0.7, 0.9], [0.25, 0.5], [1.0, 0.0], [0.0, 0.6]])  # Σ > 1 (negative base coefficient) included


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mod")
    make_tiny_llama(root / "base")
    dirs = [make_value_vector(root / "base", root / n, n, seed=s) for n, s in [("a", 1), ("b", 2)]]
    base = AutoModelForCausalLM.from_pretrained(root / "base").eval()
    tok = AutoTokenizer.from_pretrained(root / "base")
    vectors = load_value_vectors(dirs)
    # each model merged separately (MVA Eq.15 at w = e_i), run alone
    separate = [base] + [merge(base, [v], [1.0]) for v in vectors]
    return base, tok, vectors, separate


def direct_log_probs(separate, ids: torch.Tensor, w: np.ndarray) -> np.ndarray:
    """(1 − Σw) log π_base + Σ w_i log π_i at the last position, normalised, from separately run models (float64)."""
    with torch.no_grad():
        logits = [m(input_ids=ids).logits[0, -1].double().numpy() for m in separate]  # each (V,)
    log_p = [x - x.max() - np.log(np.exp(x - x.max()).sum()) for x in logits]
    mixed = (1 - w.sum()) * log_p[0] + sum(wi * lp for wi, lp in zip(w, log_p[1:]))
    return mixed - mixed.max() - np.log(np.exp(mixed - mixed.max()).sum())


def test_mixed_distribution_equals_separate_models(setup):
    base, tok, vectors, separate = setup
    wb = WeightBatchedModel(base, vectors)
    ids = tok(chat_prompt(tok, PROMPTS[0]), return_tensors="pt", add_special_tokens=False)["input_ids"]
    n = len(vectors)
    # one weight-batched forward pass: n + 1 rows per sequence, every candidate's sequence in the same batch
    logits = wb.logits(ids.repeat(len(WEIGHTS) * (n + 1), 1), np.tile(component_weights(n), (len(WEIGHTS), 1)))
    got = mixed_log_probs(logits[:, -1].view(len(WEIGHTS), n + 1, -1), torch.as_tensor(WEIGHTS)).numpy()
    for k, w in enumerate(WEIGHTS):
        want = direct_log_probs(separate, ids, w)
        assert np.abs(got[k] - want).max() < 1e-5, w
        assert abs(np.exp(got[k]).sum() - 1) < 1e-9  # normalised
    # the mixture is not the parameter-space composition at the same weights
    with torch.no_grad():
        merged = torch.log_softmax(merge(base, vectors, WEIGHTS[0])(input_ids=ids).logits[0, -1].double(), -1).numpy()
    assert np.abs(merged - got[0]).max() > 1e-3


def test_masked_token_stays_masked_under_a_negative_coefficient():
    logits = torch.randn(1, 3, 5)
    logits[:, :, 2] = float("-inf")  # e.g. EOS before min_new_tokens, masked in every row
    out = mixed_log_probs(logits, torch.tensor([[0.8, 0.9]]))  # base coefficient 1 − 1.7 = −0.7
    assert out[0, 2] == float("-inf") and torch.isfinite(out[0, [0, 1, 3, 4]]).all()
    assert abs(out[0].exp().sum().item() - 1) < 1e-12


def direct_greedy(separate, tok, prompt: str, w: np.ndarray, max_new_tokens: int) -> tuple[str, float]:
    """Step by step, no cache: each model run alone on the whole sequence, the mixture's argmax appended; also the
    smallest gap between the mixture's top two log-probs (a near-tie would make the comparison float noise)."""
    ids = tok(chat_prompt(tok, prompt), return_tensors="pt", add_special_tokens=False)["input_ids"]
    new, gap = [], np.inf
    for _ in range(max_new_tokens):
        lp = direct_log_probs(separate, ids, w)
        top2 = np.sort(lp)[-2:]
        gap = min(gap, top2[1] - top2[0])
        token = int(np.argmax(lp))
        new.append(token)
        if token == tok.eos_token_id:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tok.decode(new, skip_special_tokens=True).strip(), gap


def test_greedy_mod_equals_step_by_step_direct_decoding(setup):
    base, tok, vectors, separate = setup
    dec = DecodingConfig(max_new_tokens=8, batch_size=7)  # 2 sequences of 3 rows per call: calls mix candidates
    got = generate_samples(WeightBatchedModel(base, vectors), tok, PROMPTS, WEIGHTS, dec, decode_time=True)
    for k, w in enumerate(WEIGHTS):
        for j, p in enumerate(PROMPTS):
            want, gap = direct_greedy(separate, tok, p, w, dec.max_new_tokens)
            assert gap > 1e-4, "a near-tie: pick other prompts"
            assert got[k][j][0] == want, (w, p)
    assert got[0] != got[1]  # the weights change what is generated


def test_unit_weight_on_the_simplex_is_that_models_greedy_output(setup):
    base, tok, vectors, separate = setup
    dec = DecodingConfig(max_new_tokens=10, batch_size=8)
    W = np.eye(2)  # Σ w = 1, one w_i = 1: base coefficient 0, the mixture is model i
    got = generate_responses(WeightBatchedModel(base, vectors), tok, PROMPTS, W, dec)
    mixed = [[s[0] for s in c] for c in generate_samples(WeightBatchedModel(base, vectors), tok, PROMPTS, W, dec,
                                                          decode_time=True)]
    for i in range(2):
        alone = generate_responses(separate[i + 1], tok, PROMPTS, None, dec)[0]
        assert mixed[i] == alone == got[i]


def test_sampled_mod_is_reproducible_whatever_shares_the_call(setup):
    base, tok, vectors, _ = setup
    wb = WeightBatchedModel(base, vectors)
    kw = dict(max_new_tokens=8, do_sample=True, num_samples=2, temperature=1.0, seed=3)
    ids = ["cand-a", "cand-b"]  # the seeds' identities (a sweep passes the candidates' keys)
    one = generate_samples(wb, tok, PROMPTS, WEIGHTS[:2], DecodingConfig(batch_size=3, **kw), identities=ids,
                           decode_time=True)
    many = generate_samples(wb, tok, PROMPTS, WEIGHTS[:2], DecodingConfig(batch_size=24, **kw), identities=ids,
                            decode_time=True)
    assert one == many
    assert any(s[0] != s[1] for c in one for s in c)  # samples differ


@pytest.mark.slow
def test_mod_is_a_compared_method_beside_mva_no_hsic(tmp_path):
    """`sweep --method mod` over mva-no-hsic's vectors: its own candidates (the parameter-space ones at the same
    weights stay mva-no-hsic's), on the fronts and in `compare --json` with intervals and its cost per candidate."""
    import json

    from mva_core.atomic import ExportError
    from mva_core.export import export_candidate
    from mva_core.results import load_table
    from mva_core.sweep import evaluate_base, method_groups, sweep_groups
    from tests.test_cli import run
    from tests.tiny import make_tiny_workspace

    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    evaluate_base(ws)
    sweep_groups("mva-no-hsic", method_groups(ws, "mva-no-hsic", 0.5))
    out = run("sweep", "--method", "mod", "--grid", "0:1:0.5", "--workspace", ws.root)
    assert "9 candidates of mod" in out.stdout and "9 generated" in out.stdout
    again = run("sweep", "--method", "mod", "--grid", "0:1:0.5", "--workspace", ws.root)
    assert "0 generated" in again.stdout  # resumable: every candidate answered from the store

    table = load_table(ws).frame
    mod, mva = table[table["method"] == "mod"], table[table["method"] == "mva-no-hsic"]
    assert len(mod) == len(mva) == 9 and not set(mod["id"]) & set(mva["id"])
    assert (mod["generated_by"] == "mod").all()
    at = {name: {tuple(w): int(cid) for w, cid in zip(rows["weights"], rows["id"])} for name, rows in
          (("mod", mod), ("mva", mva))}

    def responses(cid: int) -> list[str]:
        return ws.store.responses([cid])["response"].tolist()

    # one w_i = 1 on the simplex: model i itself, by either composition; off it the two differ
    assert responses(at["mod"][(1.0, 0.0)]) == responses(at["mva"][(1.0, 0.0)])
    assert responses(at["mod"][(1.0, 1.0)]) != responses(at["mva"][(1.0, 1.0)])
    with pytest.raises(ExportError, match="decode-time mixture"):
        export_candidate(ws, int(mod["id"].iloc[-1]), "merged", tmp_path / "out")

    doc = json.loads(run("compare", "--workspace", ws.root, "--methods", "mod,mva-no-hsic", "--json").stdout)
    for name, rows in (("mod", 3), ("mva-no-hsic", 1)):
        m = doc["methods"][name]
        assert m["hv"] is not None and len(m["hv_ci"]) == 2 and m["mip"] is not None
        assert m["cost"]["rows_per_token"] == rows and m["cost"]["candidates_timed"] == 9
        assert m["cost"]["seconds_per_candidate"] > 0
    assert "mod|mva-no-hsic" in doc["pairs"]


@pytest.mark.slow
def test_out_of_memory_halves_mod_sequences_and_keeps_the_text(setup):
    """A call of 2 sequences x 3 rows that runs out of memory goes on 1 sequence (3 rows) per call, same text."""
    from mva_core.notices import notices_to
    from tests.oom import cuda_oom, memory_for_rows

    base, tok, vectors, _ = setup
    wb = WeightBatchedModel(base, vectors)
    dec = DecodingConfig(max_new_tokens=6, batch_size=6)
    reference = generate_samples(wb, tok, PROMPTS, WEIGHTS[:2], replace(dec, batch_size=3), decode_time=True)
    told: list[str] = []
    with memory_for_rows(3, cuda_oom) as passed, notices_to(told.append):
        got = generate_samples(WeightBatchedModel(base, vectors), tok, PROMPTS, WEIGHTS[:2], dec, decode_time=True)
    assert got == reference and passed and max(passed) == 3
    assert told and "generating 6 rows in one call" in told[0] and "going on with 3 rows per call" in told[0]
