"""Sweep throughput: weight-batched evaluation vs the MVA code's loop, per-candidate merging, and the base alone.

One run, same prompts, same token counts (min_new_tokens = max_new_tokens), same machine:
  ours            all candidates x prompts through the weight-batched model, chunked generate calls
  anchor          as the paper's released code: for every candidate and every value's reward model,
                  reload the base, merge the adapters (peft), generate one prompt at a time, score
  merge_batched   for every candidate: merge into a copy of the base, generate its prompts in one batch
  base            the base model alone on the same number of rows and batch size (the physical limit)
Equality: at every decoding step the weight-batched logits match the merged model's (greedy_agreement).

Usage: python bench/sweep_throughput.py [--workspace data/demo] [--anchor-candidates 2] [--merge-candidates 5]
The last line is exactly `ratio_vs_anchor=X ratio_vs_merge_batched=Y overhead_vs_base=Z`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mva_core.compose import WeightBatchedModel, merge  # noqa: E402
from mva_core.config import DecodingConfig  # noqa: E402
from mva_core.kinds import SearchSpace  # noqa: E402
from mva_core.generate import generate_responses, greedy_agreement  # noqa: E402
from mva_core.models import load_base  # noqa: E402
from mva_core.scorers import get_scorer  # noqa: E402
from mva_core.vectors import load_value_vector  # noqa: E402
from mva_core.workspace import Workspace  # noqa: E402


def score_all(scorers, prompts: list[str], responses: list[str]) -> np.ndarray:
    return np.stack([s.score(prompts, responses) for s in scorers], axis=1)  # (rows, values)


def anchor_candidate(base_path: str, vector_dirs: list[Path], w: np.ndarray, tok, prompts, decoding, scorers) -> None:
    """One candidate the way the released MVA code evaluates it: per reward model, reload + merge + batch-1 decode."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    one = DecodingConfig(max_new_tokens=decoding.max_new_tokens, min_new_tokens=decoding.min_new_tokens, batch_size=1)
    for scorer in scorers:
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        names = [f"v{i}" for i in range(len(vector_dirs))]
        model = PeftModel.from_pretrained(model, str(vector_dirs[0]), adapter_name=names[0])
        for name, d in zip(names[1:], vector_dirs[1:]):
            model.load_adapter(str(d), adapter_name=name)
        model.add_weighted_adapter(names, [float(x) for x in w], "combo", combination_type="cat")
        model.set_adapter("combo")
        merged = model.merge_and_unload().eval()
        responses = generate_responses(merged, tok, prompts, None, one)[0]
        scorer.score(prompts, responses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="data/demo")
    ap.add_argument("--method", default="mva-no-hsic")
    ap.add_argument("--step", type=float, default=0.25, help="grid step on [0, C]^2 (0.25 -> 25 candidates)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64, help="rows per weight-batched generate call")
    ap.add_argument("--anchor-candidates", type=int, default=2, help="the anchor is timed on this many candidates")
    ap.add_argument("--merge-candidates", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)

    ws = Workspace(args.workspace)
    base = load_base(ws.manifest.base)
    dirs = ws.vector_dirs(args.method)
    vectors = [load_value_vector(d) for d in dirs]
    prompts = ws.prompts()[: args.prompts]
    scorers = [get_scorer(v.scorer) for v in ws.manifest.values]
    grid = SearchSpace(n_values=len(vectors), C=ws.manifest.C, step=args.step).grid()
    K, P, T = len(grid), len(prompts), args.new_tokens
    dec = DecodingConfig(max_new_tokens=T, min_new_tokens=T, batch_size=args.batch_size)
    print(f"# {K} candidates x {P} prompts x {T} new tokens, greedy; torch threads={torch.get_num_threads()}")
    scorers[0].score(["warm up"], ["warm up"])  # load scorer models outside the timings

    # ---- ours: weight-batched ----
    t0 = time.perf_counter()
    wb = WeightBatchedModel(base.model, vectors)
    resp = generate_responses(wb, base.tokenizer, prompts, grid, dec)
    score_all(scorers, [p for _ in range(K) for p in prompts], [r for row in resp for r in row])
    t_ours = time.perf_counter() - t0

    # ---- base alone, same rows and batch size ----
    t0 = time.perf_counter()
    flat = generate_responses(base.model, base.tokenizer, [p for _ in range(K) for p in prompts], None, dec)[0]
    score_all(scorers, [p for _ in range(K) for p in prompts], flat)
    t_base = time.perf_counter() - t0

    # ---- merge per candidate, batched generation ----
    pick = np.linspace(0, K - 1, args.merge_candidates).round().astype(int)
    dec_c = DecodingConfig(max_new_tokens=T, min_new_tokens=T, batch_size=P)
    t0 = time.perf_counter()
    for k in pick:
        m = merge(base.model, vectors, grid[k])
        r = generate_responses(m, base.tokenizer, prompts, None, dec_c)[0]
        score_all(scorers, prompts, r)
    t_merge = (time.perf_counter() - t0) / len(pick)

    # ---- anchor: the released code's loop ----
    pick_a = np.linspace(0, K - 1, args.anchor_candidates).round().astype(int)
    t0 = time.perf_counter()
    for k in pick_a:
        anchor_candidate(base.path, dirs, grid[k], base.tokenizer, prompts, dec, scorers)
    t_anchor = (time.perf_counter() - t0) / len(pick_a)

    # ---- outputs equal ----
    agree = [greedy_agreement(merge(base.model, vectors, grid[k]), wb, base.tokenizer, prompts, grid[k],
                              DecodingConfig(max_new_tokens=T, min_new_tokens=T), atol=1e-3) for k in pick]
    mism = sum(a["mismatches"] for a in agree)
    ties = sum(a["near_ties"] for a in agree)
    diff = max(a["max_abs_logit_diff"] for a in agree)

    ours_cps = K / t_ours
    print(f"{'name':32s} {'ours':>10s} {'baseline':>10s} {'ratio':>8s}")
    print(f"{'candidates/s vs anchor loop':32s} {ours_cps:10.3f} {1 / t_anchor:10.3f} {ours_cps * t_anchor:8.1f}")
    print(f"{'candidates/s vs merge+batched':32s} {ours_cps:10.3f} {1 / t_merge:10.3f} {ours_cps * t_merge:8.1f}")
    print(f"{'seconds vs base alone':32s} {t_ours:10.2f} {t_base:10.2f} {t_ours / t_base:8.2f}")
    print(f"# equality on {len(pick)} candidates: max |logit diff| {diff:.2e}, near-ties {ties}, mismatches {mism}")
    assert mism == 0, f"weight-batched decoding diverged from the merged model at {mism} step(s) that were not near-ties"
    print(f"ratio_vs_anchor={ours_cps * t_anchor:.2f} ratio_vs_merge_batched={ours_cps * t_merge:.2f} "
          f"overhead_vs_base={t_ours / t_base:.2f}")


if __name__ == "__main__":
    main()
