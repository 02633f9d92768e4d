"""How hard MI-EPO's weight-consistency term pulls, against the online-DPO term, on the demo (issue #27 item 2).

L = L_DPO + β_w · L_wc (methods/conditioned.py). On the demo's setup (its base, its two values' prompts and
scorers, its training config, a fresh LoRA as training starts) this builds the method's own trainer
(`conditioned.trainer_factory`) and, per training batch, lets it do what a training step does:
  * ∇L_DPO  — trl's online step (sample 2 responses per prompt with the current policy, score, rank, DPO),
              run with β_w = 0 so that only the DPO term is backpropagated;
  * ∇L_wc   — the trainer's own `weight_consistency(model)` on that batch's chosen responses, unweighted.
Both are gradients over the LoRA parameters (what the optimizer sees). Per batch it prints ‖∇L_DPO‖, ‖∇L_wc‖ and
their cosine; then, per β_w in {0.01 (paper), 0.1, 1, 10}, the share ‖β_w ∇L_wc‖ / ‖∇L_DPO‖ (median over batches)
as `name  ours  baseline  ratio` rows, and the β_w at which the term's gradient reaches 10 % and 50 % of the DPO
term's. `--trained DIR` repeats the batches at a trained policy (e.g. data/demo/vectors/mi-epo/policy; off by
default: it doubles the runtime). Nothing is trained or written.
Runtime: ≈ 10 s per batch on 2 free cores (the demo's online step); 40–240 s per batch measured with a test run
on the same 2 cores.

Usage: python bench/weight_consistency.py [--batches 3] [--workspace data/demo] [--trained DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mva_core.demo import demo_train_config  # noqa: E402
from mva_core.methods.conditioned import Scalariser, trainer_factory  # noqa: E402
from mva_core.models import load_base  # noqa: E402
from mva_core.preference_data import load_preference_jsonl  # noqa: E402

BETA_WS = (0.01, 0.1, 1.0, 10.0)  # 0.01: the paper's (DESIGN §1)


def lora_grad(model: torch.nn.Module) -> torch.Tensor:
    """The gradient over the trainable (LoRA) parameters, flattened, (P,)."""
    return torch.cat([p.grad.detach().flatten().clone() if p.grad is not None else torch.zeros(p.numel())
                      for p in model.parameters() if p.requires_grad])


def term_gradients(trainer, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(∇L_DPO, ∇L_wc) of one training batch, each alone: the trainer's online step with β_w = 0, then its
    weight-consistency term on that step's chosen responses (unweighted)."""
    model = trainer.model
    beta_w, trainer.beta_w = trainer.beta_w, 0.0
    try:
        model.zero_grad(set_to_none=True)
        trainer.training_step(model, inputs)  # samples, scores, ranks, backpropagates L_DPO only
        g_dpo = lora_grad(model)
        model.zero_grad(set_to_none=True)
        trainer.weight_consistency(model).backward()  # L_wc on the batch trl just ranked
        g_wc = lora_grad(model)
        model.zero_grad(set_to_none=True)
    finally:
        trainer.beta_w = beta_w
    return g_dpo, g_wc


def measure(trainer, n_batches: int) -> list[dict[str, float]]:
    rows = []
    batches = iter(trainer.get_train_dataloader())
    for _ in range(n_batches):
        t = time.perf_counter()
        g_dpo, g_wc = term_gradients(trainer, next(batches))
        rows.append({"dpo": g_dpo.norm().item(), "wc": g_wc.norm().item(),
                     "cos": torch.nn.functional.cosine_similarity(g_dpo, g_wc, dim=0).item(),
                     "seconds": time.perf_counter() - t})
    return rows


def report(label: str, rows: list[dict[str, float]]) -> dict[str, float]:
    print(f"\n== {label}: {len(rows)} batches ==")
    print(f"{'batch':<8}{'|grad DPO|':>12}{'|grad L_wc|':>13}{'ratio':>10}{'cos':>9}{'seconds':>9}")
    for i, r in enumerate(rows):
        print(f"{i + 1:<8}{r['dpo']:>12.4g}{r['wc']:>13.4g}{r['wc'] / r['dpo']:>10.4f}{r['cos']:>9.3f}{r['seconds']:>9.1f}")
    ratio = statistics.median(r["wc"] / r["dpo"] for r in rows)
    dpo, wc = statistics.median(r["dpo"] for r in rows), statistics.median(r["wc"] for r in rows)
    print(f"{'median':<8}{dpo:>12.4g}{wc:>13.4g}{ratio:>10.4f}{statistics.median(r['cos'] for r in rows):>9.3f}")
    print(f"\n{'name':<34}{'ours |b_w grad L_wc|':>22}{'baseline |grad DPO|':>21}{'ratio':>9}")
    for b in BETA_WS:
        print(f"{f'beta_w={b:g}' + (' (paper)' if b == 0.01 else ''):<34}{b * wc:>22.4g}{dpo:>21.4g}{b * ratio:>9.4f}")
    print(f"beta_w at which the term's gradient is 10 % of DPO's: {0.1 / ratio:.3g}; 50 %: {0.5 / ratio:.3g}; "
          f"100 %: {1 / ratio:.3g}")
    return {"median_ratio": ratio, "beta_w_10pct": 0.1 / ratio, "beta_w_50pct": 0.5 / ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="data/demo")
    ap.add_argument("--batches", type=int, default=3, help="training batches per policy (demo: 2 prompts each)")
    ap.add_argument("--trained", default="",
                    help="a trained conditioned policy to measure at too (e.g. data/demo/vectors/mi-epo/policy)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ws = Path(args.workspace)
    manifest = json.loads((ws / "workspace.json").read_text())
    scorers = {v["name"]: v["scorer"] for v in manifest["values"]}
    datasets = {v: load_preference_jsonl(ws / "pairs" / f"{v}.jsonl") for v in scorers}
    base = load_base(manifest["base"])
    print(f"base loaded: {time.perf_counter() - t0:.0f} s")
    config = replace(demo_train_config(seed=0), max_steps=args.batches)  # the demo's training, first batches
    make_trainer = trainer_factory(base, datasets, config, Scalariser.fit(datasets, scorers), beta_w=0.01,
                                   dirichlet_alpha=1.0, max_new_tokens=48, temperature=0.7, progress=False)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(Path(tmp), [])
        print(f"scorers fitted, trainer built: {time.perf_counter() - t0:.0f} s")
        results["fresh"] = report("fresh LoRA (step 1 of training: B = 0, so pi = pi_ref)",
                                  measure(trainer, args.batches))
        if args.trained:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            missing = set_peft_model_state_dict(trainer.model, load_file(Path(args.trained) / "adapter_model.safetensors"))
            assert not missing.unexpected_keys, missing.unexpected_keys
            results["trained"] = report(f"trained policy {args.trained}", measure(trainer, args.batches))
    print(f"\nseconds: {time.perf_counter() - t0:.0f}")


if __name__ == "__main__":
    main()
