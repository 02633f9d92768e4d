"""Diagnostics of a set of value vectors θ_1..θ_n (DESIGN §2 "diagnostics"): how much do they overlap?

- `layer_cosines`: per target layer, cos(vec ΔW_i, vec ΔW_j) with ΔW = s·B A (paper Fig.6), from the
  rank-sized factors: ⟨ΔW_i, ΔW_j⟩_F = s_i s_j tr((B_iᵀ B_j)(A_j A_iᵀ)), never a dense d_out × d_in product.
- `hsic_matrix`: HSIC(θ_i, θ_j) of MVA Eq.6, summed over the shared target layers (as `hsic.vector_hsic`), the
  quantity Value Decorrelation Training (Eq.14) penalises.
- `interference`: MVA Eq.10. One gradient step on value i's DPO loss, W ← W − η g_i, changes value j's loss by
  ΔL_j ≈ −η g_jᵀ g_i (first-order Taylor), so the matrix G_ij = g_iᵀ g_j says whether training for i helps
  (G_ij > 0: both losses fall) or hurts (G_ij < 0) value j; cos(g_i, g_j) is its scale-free form.
- `hsic_layer_table`: the same HSIC per pair and per target layer, beside each layer's permutation null.
- `training_curves`: per-step loss, reward accuracy, penalty term and the penalty's share of the loss of stored
  `train` runs.

Choice for `interference` (documented in its docstring): the gradients are taken w.r.t. the dense weights W of
the target layers the vectors adapt, the one parameter space all values' updates share (each vector's own LoRA
factors live in different spaces, so g_iᵀ g_j between them would not be defined).
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .errors import MVAError
from .compose import delta_weight
from .hsic import (
    ESTIMATORS, KERNELS, SAMPLE_MODES, Estimator, Kernel, SampleMode, layer_kernels, layer_samples, permutation_null,
    vector_permutation_null,
)
from .config import DPO_BETA
from .models import BaseModel, render_prompts, sequence_logps
from .preference_data import check_pairs, load_preference_jsonl
from .vectors import ADAPTER_FILE, LoraLayer, ValueVector, VectorError, check_compatible, load_value_vector

if TYPE_CHECKING:
    from .workspace import Workspace

PairRecord = Mapping[str, str]  # {"prompt", "chosen", "rejected"}
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class DiagnosticsError(MVAError, ValueError):
    """A diagnostic cannot be computed from what the workspace holds; the message says what to add."""


# ---- Value vectors of a method ----

def load_method_vectors(ws: "Workspace", method: str) -> list[ValueVector]:
    """θ_1..θ_n of `method` in the workspace's value order (vectors/<method>/<value>/)."""
    if method not in ws.methods():
        raise DiagnosticsError(f"method {method!r} has no full set of value vectors under {ws.root / 'vectors'} "
                               f"(methods with one vector per value: {ws.methods()}); train it with "
                               f"`python -m mva_core train --method {method} ...`")
    return [load_value_vector(d) for d in ws.vector_dirs(method)]


def vector_set_stamp(ws: "Workspace", method: str) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of each adapter file of `method`: a cheap cache key that changes when one is retrained."""
    out = []
    for d in ws.vector_dirs(method):
        f = d / ADAPTER_FILE if (d / ADAPTER_FILE).is_file() else d / "adapter_model.bin"
        st = f.stat()
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _natural_key(name: str) -> list[Any]:
    """'model.layers.10.q_proj' after 'model.layers.2.q_proj': digits compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _block(module: str) -> str:
    """The transformer block a module sits in: its first integer path component ('3' in model.layers.3.…),
    else the path without the layer name."""
    nums = [p for p in module.split(".") if p.isdigit()]
    return nums[0] if nums else module.rpartition(".")[0] or module


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def shared_layers(vi: ValueVector, vj: ValueVector) -> list[str]:
    """The target layers both vectors adapt, in model order."""
    return sorted(set(vi.layers) & set(vj.layers), key=_natural_key)


# ---- Layer-wise cosine similarity (paper Fig.6) ----

def _frobenius(li: LoraLayer, lj: LoraLayer) -> float:
    """⟨ΔW_i, ΔW_j⟩_F = s_i s_j tr((B_iᵀ B_j)(A_j A_iᵀ)) in float64, from (r, r) products only."""
    Bi, Ai, Bj, Aj = (t.detach().to(torch.float64) for t in (li.B, li.A, lj.B, lj.A))
    return float(li.scaling * lj.scaling * torch.trace((Bi.T @ Bj) @ (Aj @ Ai.T)))  # (r_i, r_j) @ (r_j, r_i)


def _cosine(inner: float, sq_i: float, sq_j: float) -> float:
    """inner / (‖ΔW_i‖ ‖ΔW_j‖), clipped to [−1, 1] against rounding; NaN if either ΔW is zero (undefined)."""
    if sq_i <= 0.0 or sq_j <= 0.0:
        return math.nan
    return float(np.clip(inner / math.sqrt(sq_i * sq_j), -1.0, 1.0))


def layer_cosines(vectors: Sequence[ValueVector]) -> pd.DataFrame:
    """Per target layer shared by θ_i and θ_j (i < j), cos(vec ΔW_i, vec ΔW_j), ΔW = s·B A (paper Fig.6).

    Tidy rows, in model order: `layer` (module name), `block` (its block index), `module` (q_proj, …),
    `pair` ("a · b"), `value_i`, `value_j`, `cosine` (NaN where a ΔW is zero), `inner` = ⟨ΔW_i, ΔW_j⟩_F,
    `norm_i`, `norm_j` = ‖ΔW‖_F. Near 0: the vectors change that layer in unrelated directions; ±1: in the
    same (opposite) direction.
    """
    check_compatible(vectors)
    rows = []
    for i, j in _pairs(len(vectors)):
        vi, vj = vectors[i], vectors[j]
        for name in shared_layers(vi, vj):
            li, lj = vi.layers[name], vj.layers[name]
            inner, sq_i, sq_j = _frobenius(li, lj), _frobenius(li, li), _frobenius(lj, lj)
            rows.append({"layer": name, "block": _block(name), "module": name.rsplit(".", 1)[-1],
                         "pair": f"{vi.value} · {vj.value}", "value_i": vi.value, "value_j": vj.value,
                         "cosine": _cosine(inner, sq_i, sq_j), "inner": inner,
                         "norm_i": math.sqrt(max(sq_i, 0.0)), "norm_j": math.sqrt(max(sq_j, 0.0))})
    return pd.DataFrame(rows, columns=["layer", "block", "module", "pair", "value_i", "value_j", "cosine", "inner",
                                       "norm_i", "norm_j"])


def vector_cosines(vectors: Sequence[ValueVector]) -> pd.DataFrame:
    """(n, n) cosine of the whole vectors, all shared target layers' ΔW concatenated:
    Σ_l ⟨ΔW_i, ΔW_j⟩ / sqrt(Σ_l ‖ΔW_i‖² · Σ_l ‖ΔW_j‖²) over the layers both adapt. Index/columns = values."""
    check_compatible(vectors)
    n = len(vectors)
    M = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            shared = set(vectors[i].layers) & set(vectors[j].layers)
            li = [vectors[i].layers[m] for m in shared]
            lj = [vectors[j].layers[m] for m in shared]
            inner = sum(_frobenius(a, b) for a, b in zip(li, lj))
            M[i, j] = _cosine(inner, sum(_frobenius(a, a) for a in li), sum(_frobenius(b, b) for b in lj))
    names = [v.value for v in vectors]
    return pd.DataFrame(M, index=names, columns=names)


# ---- HSIC matrix (MVA Eq.6) ----

def hsic_null_table(vectors: Sequence[ValueVector], mode: SampleMode = "lora_A", kernel: Kernel = "gaussian",
                    n_permutations: int = 200, seed: int = 0) -> pd.DataFrame:
    """Each pair's HSIC (Σ over layers, MVA Eq.6 and Song et al.'s unbiased estimator) beside its permutation null
    (`hsic.vector_permutation_null`): is the dependence more than two unrelated vectors of these shapes show?
    Columns: pair, hsic, null_mean, null_sd, p_value, hsic_unbiased, unbiased_null_mean, unbiased_p_value."""
    rows = []
    for i, a in enumerate(vectors):
        for b in vectors[i + 1:]:
            biased = vector_permutation_null(a.layers, b.layers, mode, kernel, n_permutations=n_permutations, seed=seed)
            unbiased = vector_permutation_null(a.layers, b.layers, mode, kernel, estimator="unbiased",
                                               n_permutations=n_permutations, seed=seed)
            rows.append({"pair": f"{a.value} · {b.value}", "hsic": biased.observed, "null_mean": biased.null_mean,
                         "null_sd": biased.null_sd, "p_value": biased.p_value, "hsic_unbiased": unbiased.observed,
                         "unbiased_null_mean": unbiased.null_mean, "unbiased_p_value": unbiased.p_value})
    return pd.DataFrame(rows, columns=["pair", "hsic", "null_mean", "null_sd", "p_value", "hsic_unbiased",
                                       "unbiased_null_mean", "unbiased_p_value"])


def _check_hsic_options(vectors: Sequence[ValueVector], mode: str, kernel: str, estimator: str) -> None:
    """Unknown options, and the unbiased estimator on fewer than 4 samples per layer, as DiagnosticsError."""
    if mode not in SAMPLE_MODES:
        raise DiagnosticsError(f"HSIC sample mode {mode!r} is unknown; choose one of {list(SAMPLE_MODES)}")
    if kernel not in KERNELS:
        raise DiagnosticsError(f"HSIC kernel {kernel!r} is unknown; choose one of {list(KERNELS)}")
    if estimator not in ESTIMATORS:
        raise DiagnosticsError(f"HSIC estimator {estimator!r} is unknown; choose one of {sorted(ESTIMATORS)}")
    if estimator == "unbiased":
        for v in vectors:
            for name, layer in v.layers.items():
                m = layer.A.shape[0] if mode == "lora_A" else layer.shape[0]
                if m < 4:
                    raise DiagnosticsError(f"the unbiased HSIC needs at least 4 samples per layer, but {v.value!r} "
                                           f"has {m} at {name} in mode {mode!r}; use the biased estimator or "
                                           "mode='delta'")


def hsic_matrix(vectors: Sequence[ValueVector], mode: SampleMode = "lora_A", kernel: Kernel = "gaussian",
                sigma: float | None = None, estimator: Estimator = "biased") -> pd.DataFrame:
    """(n, n) HSIC(θ_i, θ_j) (MVA Eq.6, or Song et al.'s unbiased estimator), summed over the target layers both
    vectors adapt, as `hsic.vector_hsic`.

    Each vector's kernel matrices are computed once (`hsic.layer_kernels`) and paired by the estimator:
    n kernels per layer instead of 2n², which in `delta` mode (d_out samples) is most of the cost. The diagonal
    HSIC(θ_i, θ_i) is the scale an off-diagonal entry compares to. `mode` 'lora_A' pairs row k of A_i with row
    k of A_j (ranks must agree; else use 'delta').
    """
    _check_hsic_options(vectors, mode, kernel, estimator)
    check_compatible(vectors)
    fn = ESTIMATORS[estimator]
    kernels = [layer_kernels(v.layers, mode, kernel, sigma) for v in vectors]  # per vector: layer -> (m, m)
    n = len(vectors)
    M = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            shared = sorted(set(kernels[i]) & set(kernels[j]))
            if not shared:
                raise VectorError(f"value vectors {vectors[i].value!r} and {vectors[j].value!r} share no target "
                                  "layer, so HSIC between them is undefined; train them with the same target_modules")
            for name in shared:
                Ki, Kj = kernels[i][name], kernels[j][name]
                if Ki.shape != Kj.shape:  # lora_A: m = r differs
                    raise VectorError(f"HSIC mode 'lora_A' pairs row k of A_i with row k of A_j, but at {name} "
                                      f"{vectors[i].value!r} has rank {Ki.shape[0]} and {vectors[j].value!r} rank "
                                      f"{Kj.shape[0]}; use mode='delta', or train both with the same lora_r")
                M[i, j] += float(fn(Ki, Kj))
    names = [v.value for v in vectors]
    return pd.DataFrame(M, index=names, columns=names)


LAYER_NULL_COLUMNS = ["pair", "value_i", "value_j", "layer", "block", "module", "samples", "hsic", "null_mean",
                      "null_sd", "null_z", "p_value", "n_permutations"]


def hsic_layer_table(vectors: Sequence[ValueVector], mode: SampleMode = "lora_A", kernel: Kernel = "gaussian",
                     estimator: Estimator = "biased", n_permutations: int = 100, seed: int = 0,
                     sigma: float | None = None, layers: Collection[str] | None = None,
                     progress: Progress | None = None) -> pd.DataFrame:
    """Per pair θ_i, θ_j (i < j) and per target layer both adapt: HSIC of the layer's samples (MVA Eq.6 or the
    unbiased estimator) beside its permutation null, `hsic.permutation_null(X, Y, n_permutations, seed)` on that
    layer's (X, Y) = `hsic.layer_samples` (θ_j's rows shuffled, each layer from a fresh generator seeded `seed`).

    Tidy rows in model order: `pair` ("a · b"), `value_i`, `value_j`, `layer`, `block`, `module`, `samples` (m:
    r in `lora_A` mode, d_out in `delta`), `hsic`, `null_mean`, `null_sd`, `null_z` = (hsic − null_mean) /
    null_sd (NaN when the null has no spread), `p_value` = (1 + #{null ≥ hsic}) / (1 + n), `n_permutations`.
    Which layers carry a dependence, and whether a low sum is a pairing the training chose (`lora_A`: HSIC far
    below its null, a z < 0 that no independent pair shows) rather than independence. `progress(stage, done,
    total)` ticks once per layer; `layers` keeps those layer names only (to compute a table in parts).
    """
    _check_hsic_options(vectors, mode, kernel, estimator)
    check_compatible(vectors)
    if not (isinstance(n_permutations, int) and n_permutations >= 1):
        raise DiagnosticsError(f"n_permutations={n_permutations!r}: must be an integer >= 1 (100 or more for a p-value)")
    cells = [(i, j, name) for i, j in _pairs(len(vectors)) for name in shared_layers(vectors[i], vectors[j])
             if layers is None or name in layers]
    rows = []
    for k, (i, j, name) in enumerate(cells):
        if progress:
            progress("HSIC per layer beside its permutation null", k, len(cells))
        vi, vj = vectors[i], vectors[j]
        X, Y = layer_samples(vi.layers[name], vj.layers[name], mode)  # (m, d_in) each
        null = permutation_null(X.detach(), Y.detach(), n_permutations, seed, kernel, sigma, estimator)
        z = (null.observed - null.null_mean) / null.null_sd if null.null_sd > 0 else math.nan
        rows.append({"pair": f"{vi.value} · {vj.value}", "value_i": vi.value, "value_j": vj.value, "layer": name,
                     "block": _block(name), "module": name.rsplit(".", 1)[-1], "samples": int(X.shape[0]),
                     "hsic": null.observed, "null_mean": null.null_mean, "null_sd": null.null_sd, "null_z": z,
                     "p_value": null.p_value, "n_permutations": n_permutations})
    if progress:
        progress("HSIC per layer beside its permutation null", len(cells), len(cells))
    return pd.DataFrame(rows, columns=LAYER_NULL_COLUMNS)


# ---- DPO loss from log-probs (DESIGN §1; Rafailov et al. 2023, Eq.7) ----

def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = DPO_BETA) -> torch.Tensor:
    """L_DPO = −mean log σ(β [(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))]).

    Arguments are (N,) summed completion log-probs. At π = π_ref every margin is 0 and L = log 2.
    """
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))  # (N,)
    return -F.logsigmoid(margin).mean()


@dataclass
class PairBatch:
    """Token ids of N preference pairs: the rendered prompt, and each completion followed by EOS (as trl)."""

    prompt: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[int]]


def encode_pairs(tokenizer: Any, pairs: Sequence[PairRecord], max_length: int = 256,
                 system_prompt: str | None = None) -> PairBatch:
    """Tokenise pairs the way training does: the prompt through the chat template (`models.render_prompts`, i.e.
    exactly what generation feeds the model), the completion as plain text + EOS, prompt and completion
    tokenised separately; prompt + completion cut to `max_length` tokens from the start (trl's keep_start).
    Pairs whose prompt alone fills `max_length` have no completion token left and are dropped."""
    check_pairs(list(pairs))
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DiagnosticsError("the tokenizer has no eos_token; the DPO completions end with it (as in training), "
                               "so load a tokenizer that defines one")
    texts = render_prompts(tokenizer, [p["prompt"] for p in pairs], system_prompt)
    out = PairBatch([], [], [])
    for text, pair in zip(texts, pairs):
        p = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(p) >= max_length:
            continue
        room = max_length - len(p)
        out.prompt.append(p)
        for field, ids in (("chosen", out.chosen), ("rejected", out.rejected)):
            ids.append((tokenizer(pair[field], add_special_tokens=False)["input_ids"] + [eos])[:room])
    if not out.prompt:
        raise DiagnosticsError(f"every prompt is at least max_length={max_length} tokens long, so no pair has a "
                               "response left; raise max_length")
    return out


def pair_logps(model: torch.nn.Module, batch: PairBatch, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed log-probs, (N,) each, from one forward over [chosen; rejected] (as trl)."""
    both = sequence_logps(model, batch.prompt + batch.prompt, batch.chosen + batch.rejected, pad_id)  # (2N,)
    return both.chunk(2)


# ---- Interference (MVA Eq.10) ----

@dataclass
class Interference:
    """G_ij = g_iᵀ g_j and cos(g_i, g_j) for g_i = ∇_W L_DPO,i (MVA Eq.10), with what they were computed at."""

    values: list[str]
    dot: np.ndarray  # (n, n) g_iᵀ g_j
    cosine: np.ndarray  # (n, n)
    losses: np.ndarray  # (n,) L_DPO,i at the point its gradient was taken
    norms: np.ndarray  # (n,) ‖g_i‖
    n_pairs: list[int]  # pairs of D_i in the batch
    n_parameters: int  # entries of each g_i (the target layers' weights)
    at: str  # "own" (each value at base + θ_i) or "w = (…)" (all at one composed model)


def _gradient_view(model: torch.nn.Module, modules: Sequence[str]) -> tuple[torch.nn.Module, dict[str, torch.nn.Parameter]]:
    """A copy of `model` that shares every parameter and buffer except the weights of `modules`, which are
    private leaf tensors requiring gradient. The (possibly cached, shared) `model` is only read."""
    targets = {id(model.get_submodule(m).weight) for m in modules}
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers()) if id(t) not in targets}
    view = copy.deepcopy(model, memo)
    weights = {}
    for m in modules:
        linear = view.get_submodule(m)
        linear.weight = torch.nn.Parameter(linear.weight.detach().clone(), requires_grad=True)
        weights[m] = linear.weight
    return view, weights


@torch.no_grad()
def _set_point(weights: Mapping[str, torch.nn.Parameter], base_model: torch.nn.Module,
               vectors: Sequence[ValueVector], w: Sequence[float]) -> None:
    """Private weights ← W + Σ_k w_k ΔW_k (MVA Eq.15), ΔW = compose.delta_weight."""
    for m, p in weights.items():
        new = base_model.get_submodule(m).weight.detach().clone()
        for wk, v in zip(w, vectors):
            if m in v.layers and wk != 0.0:
                new += float(wk) * delta_weight(v.layers[m]).to(new)
        p.copy_(new)


def interference(base: BaseModel, vectors: Sequence[ValueVector], pairs: Mapping[str, Sequence[PairRecord]], *,
                 weights: Sequence[float] | None = None, beta: float = DPO_BETA, n_pairs: int = 4,
                 max_length: int = 256, micro_batch: int = 2, seed: int = 0, system_prompt: str | None = None,
                 progress: Progress | None = None) -> Interference:
    """MVA Eq.10: the n × n matrix g_iᵀ g_j (and cosines) of the values' DPO-loss gradients.

    g_i = ∇_W L_DPO,i, the gradient of value i's DPO loss (`dpo_loss`, β = 0.1, reference = the base model) on
    `n_pairs` pairs drawn from D_i = `pairs[value_i]` (seeded), w.r.t. the dense weights W of every target
    layer the vectors adapt. Where it is taken:
    - `weights=None`: each value at its own trained policy π = base + θ_i (where its training ended);
    - `weights=w`: all values at the one composed model π_w = base + Σ_k w_k θ_k (Eq.15); w = 0 is the base
      model, where every vector's training starts (there all losses are log 2 and g_i depends on D_i only).
    A step W ← W − η g_i changes L_j by ≈ −η g_iᵀ g_j: a negative entry means training for value i raises
    value j's loss (the values interfere). Neither `base.model` nor the vectors are modified.

    The loss is a mean over pairs, so its gradient is accumulated over `micro_batch` pairs at a time (exact;
    bounds memory, and `progress` ticks once per micro-batch: a 135M model on 2 CPU cores takes seconds each).
    """
    check_compatible(vectors, base.model, base.fingerprint)
    names = [v.value for v in vectors]
    missing = [v for v in names if not pairs.get(v)]
    if missing:
        raise DiagnosticsError(f"no preference pairs for value(s) {missing}; give each value's "
                               "{prompt, chosen, rejected} JSONL (e.g. <workspace>/pairs/<value>.jsonl)")
    if weights is not None and (len(weights) != len(vectors) or not all(math.isfinite(float(w)) for w in weights)):
        raise DiagnosticsError(f"weights {list(weights)} must be {len(vectors)} finite numbers, one per value vector "
                               f"({names})")
    for name, k in (("n_pairs", n_pairs), ("micro_batch", micro_batch)):
        if not (isinstance(k, int) and k >= 1):
            raise DiagnosticsError(f"{name}={k!r}: must be an integer >= 1")
    tok = base.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    batches = {}
    for v in names:
        d = list(pairs[v])
        pick = sorted(rng.choice(len(d), size=min(n_pairs, len(d)), replace=False).tolist())
        batches[v] = encode_pairs(tok, [d[k] for k in pick], max_length, system_prompt)

    modules = sorted({m for v in vectors for m in v.layers}, key=_natural_key)
    view, params = _gradient_view(base.model, modules)
    view.eval()
    chunks = {v: [slice(s, s + micro_batch) for s in range(0, len(batches[v].prompt), micro_batch)] for v in names}
    total, done = sum(len(c) for c in chunks.values()), 0
    grads: list[list[torch.Tensor]] = []
    losses = []
    point = None if weights is None else [float(w) for w in weights]
    if point is not None:
        _set_point(params, base.model, vectors, point)
    for i, v in enumerate(names):
        if point is None:  # base + θ_i
            _set_point(params, base.model, vectors, [1.0 if k == i else 0.0 for k in range(len(vectors))])
        batch, N = batches[v], len(batches[v].prompt)
        g_i = [torch.zeros_like(params[m], dtype=torch.float64) for m in modules]
        loss_i = 0.0
        for part in chunks[v]:
            if progress:
                progress(f"gradients of {v}", done, total)
            sub = PairBatch(batch.prompt[part], batch.chosen[part], batch.rejected[part])
            with torch.no_grad():
                ref_c, ref_r = pair_logps(base.model, sub, pad)
            pol_c, pol_r = pair_logps(view, sub, pad)
            # mean over N pairs = Σ over micro-batches of (size / N) · their mean
            loss = dpo_loss(pol_c, pol_r, ref_c, ref_r, beta) * (len(sub.prompt) / N)
            for acc, g in zip(g_i, torch.autograd.grad(loss, [params[m] for m in modules])):
                acc += g.to(torch.float64)
            loss_i += float(loss.detach())
            done += 1
        grads.append(g_i)
        losses.append(loss_i)
    if progress:
        progress("gradients", total, total)
    n = len(names)
    dot = np.array([[sum(float((a * b).sum()) for a, b in zip(grads[i], grads[j])) for j in range(n)]
                    for i in range(n)])
    norms = np.sqrt(np.clip(np.diag(dot), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(dot / np.outer(norms, norms), -1.0, 1.0)  # NaN where a gradient is zero
    at = "own" if point is None else "w = (" + ", ".join(f"{w:g}" for w in point) + ")"
    return Interference(values=names, dot=dot, cosine=cos, losses=np.array(losses), norms=norms,
                        n_pairs=[len(batches[v].prompt) for v in names],
                        n_parameters=sum(params[m].numel() for m in modules), at=at)


def preference_pair_files(ws: "Workspace", method: str | None = None) -> dict[str, Path]:
    """value -> preference JSONL for the workspace's values: `<workspace>/pairs/<value>.jsonl` if present
    (where `demo build` writes them), else the file the latest finished `train` run of `method` read."""
    found: dict[str, Path] = {}
    runs = ws.store.runs()
    runs = runs[(runs["kind"] == "train") & (runs["status"] == "done")]
    if method is not None:
        runs = runs[runs["method"] == method]
    for _, run in runs.iloc[::-1].iterrows():
        data = json.loads(run["config"]).get("data") or {}
        for v, d in data.items():
            f = Path(d.get("file", "")) if isinstance(d, dict) else Path(str(d))
            if v not in found and f.is_file():
                found[v] = f
    for v in ws.value_names:
        f = ws.root / "pairs" / f"{v}.jsonl"
        if f.is_file():
            found[v] = f
    missing = [v for v in ws.value_names if v not in found]
    if missing:
        raise DiagnosticsError(f"no preference pairs found for {missing}; put each value's pairs (JSONL with prompt, "
                               f"chosen, rejected) at {ws.root / 'pairs'}/<value>.jsonl, or train with "
                               "`python -m mva_core train --data VALUE=FILE ...`, which records the files")
    return {v: found[v] for v in ws.value_names}


def load_preference_pairs(ws: "Workspace", method: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """value -> its preference pairs (see `preference_pair_files`), checked as training checks them."""
    return {v: load_preference_jsonl(f) for v, f in preference_pair_files(ws, method).items()}


# ---- Training curves ----

CURVE_COLUMNS = ["run_id", "method", "value", "status", "alpha", "penalty", "step", "loss", "reward_accuracy",
                 "penalty_term", "penalty_share", "dpo_part", "weighted_penalty"]


def loss_parts(loss: float, term: float, weight: float | None) -> tuple[float, float]:
    """(L_DPO, λ·P): the logged loss L = L_DPO + λ·P (MVA Eq.14) split into its DPO part and its weighted penalty.

    A step with no penalty term (the first value: no earlier vector) is all DPO: (L, 0). NaN parts where λ was
    not recorded (runs from before it was) or L is missing: the split is then unknown, not guessed.
    """
    if not math.isfinite(loss):
        return math.nan, math.nan
    if not math.isfinite(term):
        return loss, 0.0
    if weight is None or not math.isfinite(weight):
        return math.nan, math.nan
    return loss - weight * term, weight * term


def penalty_share(loss: float, term: float, weight: float | None) -> float:
    """The penalty's share of a step's training loss, |λ·P| / (|L − λ·P| + |λ·P|), where L = L_DPO + λ·P is the
    logged loss (MVA Eq.14: λ = α, P = Σ_{j<i} HSIC or the orthogonality term; MI-EPO: λ = β_w, P = L_wc).

    For P ≥ 0 this is λ·P / L (L_DPO = −log σ(·) ≥ 0); the absolute values keep it in [0, 1] when the unbiased
    HSIC is negative. NaN when λ was not recorded (runs from before it was), or L or P is missing.
    """
    if weight is None or not all(math.isfinite(x) for x in (loss, term, weight)):
        return math.nan
    penalty = abs(weight * term)
    total = abs(loss - weight * term) + penalty
    return penalty / total if total > 0 else math.nan


def _curve_rows(base: dict[str, Any], entry: Mapping[str, Any], default_penalty: str | None,
                beta_w: float | None = None) -> list[dict[str, Any]]:
    """Per-step rows of one value's log; `base["alpha"]` weighs Eq.14's penalties, `beta_w` MI-EPO's L_wc."""
    losses = list(entry.get("losses") or [])
    acc = list(entry.get("reward_accuracies") or [])
    terms, penalty = [], default_penalty
    for name in ("hsic", "ortho", "weight_consistency"):  # MVA Eq.14's penalties; MI-EPO's L_wc
        if entry.get(f"{name}_terms"):
            terms, penalty = list(entry[f"{name}_terms"]), name
    alpha = base.get("alpha")
    weight = beta_w if penalty == "weight_consistency" else (alpha if alpha is not None and math.isfinite(alpha)
                                                             else None)
    n = max(len(losses), len(acc), len(terms))
    at = lambda xs, k: float(xs[k]) if k < len(xs) and xs[k] is not None else math.nan  # noqa: E731
    return [{**base, "penalty": penalty, "step": k + 1, "loss": at(losses, k), "reward_accuracy": at(acc, k),
             "penalty_term": at(terms, k), "penalty_share": penalty_share(at(losses, k), at(terms, k), weight),
             **dict(zip(("dpo_part", "weighted_penalty"), loss_parts(at(losses, k), at(terms, k), weight)))}
            for k in range(n)]


def training_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Tidy per-step rows of the `train` runs in a `Store.runs()` table (columns `CURVE_COLUMNS`).

    A run's log is `{value: {losses, reward_accuracies, hsic_terms, ortho_terms, seconds_per_step}}` (cli
    train); `step` k counts optimizer steps from 1 (losses[k−1] is the batch loss before update k);
    `penalty_term` is the unweighted Σ_{j<i} P(θ_i, θ_j) of MVA Eq.14 at that step (NaN for the first value,
    which has no earlier vector); `loss` is the whole logged loss L_DPO + α·P, split by `loss_parts` into
    `dpo_part` (L_DPO) and `weighted_penalty` (α·P), and `penalty_share` = α·P / loss (`penalty_share`; NaN for
    runs that recorded no α). Runs without per-value logs (stopped, failed) give no rows.
    """
    rows: list[dict[str, Any]] = []
    if runs is None or runs.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    for _, run in runs[runs["kind"] == "train"].iterrows():
        log = json.loads(run["log"]) if isinstance(run["log"], str) and run["log"] else {}
        config = json.loads(run["config"]) if isinstance(run["config"], str) else {}
        default_penalty = _penalty_of(run["method"], config)
        alpha = config.get("alpha")
        settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
        beta_w = settings.get("beta_w")  # MI-EPO's weight of L_wc
        for value, entry in log.items():
            if not isinstance(entry, dict) or not entry.get("losses"):
                continue
            base = {"run_id": int(run["id"]), "method": run["method"], "value": value, "status": run["status"],
                    "alpha": math.nan if alpha is None else float(alpha)}
            rows += _curve_rows(base, entry, default_penalty, beta_w)
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _penalty_of(method: str, config: Mapping[str, Any]) -> str:
    """The decorrelation penalty a recorded train run used: its settings, else its method's default (runs recorded
    before settings were stored), else "hsic"."""
    recorded = config.get("settings", {}).get("penalty") if isinstance(config.get("settings"), dict) else None
    if isinstance(recorded, str):
        return recorded
    from .methods import available_methods, get_method  # the registry; training code loads lazily

    if method in available_methods():
        default = getattr(get_method(method).settings_class(), "penalty", None)
        if isinstance(default, str):
            return default
    return "hsic"


def vector_training_curves(vectors: Sequence[ValueVector]) -> pd.DataFrame:
    """The same tidy rows from the vectors' own metadata (mva_vector.json keeps losses, reward accuracies and
    penalty terms), for vectors trained outside a recorded run (e.g. by `demo build`); `run_id` is NaN."""
    rows: list[dict[str, Any]] = []
    for v in vectors:
        if not v.meta.get("losses"):
            continue
        alpha = v.meta.get("alpha")
        base = {"run_id": math.nan, "method": v.method, "value": v.value, "status": "vector metadata",
                "alpha": math.nan if alpha is None else float(alpha)}
        rows += _curve_rows(base, v.meta, v.meta.get("penalty"), v.meta.get("beta_w"))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)
