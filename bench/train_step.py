"""Seconds per DPO training step with and without the HSIC penalty (MVA Eq.14), on the demo model.

Trains the demo's second value (brevity) for a few CPU_SMALL steps, four ways: plain DPO (no earlier vector,
so no penalty is computed at all: the baseline), α = 0 against the first vector (warmth; the penalty is
computed for the log only, without gradient), and α·HSIC against it with `lora_A` and with `delta` samples.
Reports the median step time of each (step 1, the warm-up, left out) and its ratio to plain DPO.
Target: the `lora_A` penalty step ≤ 1.10 × a plain step; `delta` is reported as measured.
Also reports the online step of the conditioned policies (mo-odpo, mi-epo: sample 2 responses per prompt with the
current policy, score, DPO), at the demo's 48 new tokens, against the same plain DPO step (`--skip-online` omits it).

Usage: python bench/train_step.py [--steps 6] [--workspace data/demo]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mva_core.methods.conditioned import train_conditioned_policy  # noqa: E402
from mva_core.config import CPU_SMALL  # noqa: E402
from mva_core.preference_data import load_preference_jsonl  # noqa: E402
from mva_core.methods.mva import train_value  # noqa: E402
from mva_core.models import load_base  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="data/demo")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--skip-online", action="store_true", help="leave out the mo-odpo / mi-epo online steps")
    args = ap.parse_args()
    ws = Path(args.workspace)
    base = load_base("smollm2-135m-instruct")
    pairs = load_preference_jsonl(ws / "pairs" / "brevity.jsonl")
    earlier = [ws / "vectors" / "mva-no-hsic" / "warmth"]
    config = replace(CPU_SMALL, max_steps=args.steps)
    times = {}
    runs = [("plain DPO", [], 0.0, "lora_A"), ("HSIC logged only (alpha=0)", earlier, 0.0, "lora_A"),
            ("DPO + HSIC lora_A", earlier, 10.0, "lora_A"), ("DPO + HSIC delta", earlier, 10.0, "delta")]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, before, alpha, mode) in enumerate(runs):
            summary = train_value(base.path, pairs, "brevity", Path(tmp) / f"run{i}", config, base.fingerprint,
                                  earlier=before, alpha=alpha, mode=mode, progress=False)
            times[name] = statistics.median(summary["step_seconds"][1:])  # step 1 includes warm-up
        if not args.skip_online:
            datasets = {v: load_preference_jsonl(ws / "pairs" / f"{v}.jsonl") for v in ("warmth", "brevity")}
            for name, method, beta_w in [("mo-odpo online step", "mo-odpo", 0.0), ("mi-epo online step", "mi-epo", 0.01)]:
                summary = train_conditioned_policy(base.path, datasets, Path(tmp) / method, config, base.fingerprint,
                                                   {"warmth": "warmth", "brevity": "brevity"}, method=method,
                                                   beta_w=beta_w, max_new_tokens=48, progress=False)
                times[name] = statistics.median(summary["step_seconds"][1:])
    plain = times["plain DPO"]
    print(f"{'name':<28}{'ours (s/step)':>15}{'baseline':>12}{'ratio':>9}")
    for name, t in times.items():
        print(f"{name:<28}{t:>15.3f}{plain:>12.3f}{t / plain:>9.3f}")


if __name__ == "__main__":
    main()
