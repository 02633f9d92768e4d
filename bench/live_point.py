"""Live slider latency on the demo workspace: a cached grid point, and an off-grid point end to end, the way Explore
evaluates it (issue 31 item 1): any-time (mva_core.live), on ALL of the workspace's prompts with its decoding.

For each off-grid point: `first_point_s`, the seconds until the point first appears (after the first batch of
prompts, with its bootstrap interval), and `final_point_s`, until it is stored (every prompt generated and scored).
Targets: a stored grid point answered in < 100 ms; the first point in < 10 s on CPU. The model load is reported
separately: the app loads it once per process (st.cache_resource), not per slider move.

Usage: python bench/live_point.py [--workspace data/demo] [--points 1]
Last line: `first_point_s=… final_point_s=… prompts=…` (medians over the points).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mva_core.live import PROMPTS_PER_BATCH, evaluate_anytime  # noqa: E402
from mva_core.results import candidate_table  # noqa: E402
from mva_core.surrogate import fit_surrogate  # noqa: E402
from mva_core.sweep import Evaluator  # noqa: E402
from mva_core.workspace import Workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="data/demo")
    ap.add_argument("--method", default="mva-no-hsic")
    ap.add_argument("--points", type=int, default=1, help="off-grid points timed")
    ap.add_argument("--prompts-per-batch", type=int, default=PROMPTS_PER_BATCH, help="the app's batch (default)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        shutil.copytree(args.workspace, root)  # the shipped workspace is never written
        ws = Workspace(root)
        t0 = time.perf_counter()
        ev = Evaluator(ws, args.method)
        t_load = time.perf_counter() - t0

        stored = ws.store.candidates(args.method)["weights"].tolist()
        hits = []
        for w in stored[:20]:
            t0 = time.perf_counter()
            res = ev.evaluate([w], source="live")
            hits.append(time.perf_counter() - t0)
            assert res.generated == 0, "a stored grid point was regenerated"

        rng = np.random.default_rng(0)
        first, fresh = [], []
        for _ in range(args.points):
            w = np.round(rng.uniform(0, ws.manifest.C, len(ws.value_names)), 3)
            seen: list[float] = []
            t0 = time.perf_counter()

            def on_point(point, seen=seen, t0=t0) -> None:
                seen.append(time.perf_counter() - t0)
                print(f"# {point.n_done}/{point.n_prompts} prompts after {seen[-1]:.1f} s: z "
                      f"{np.round(point.z, 3).tolist()}, 95 % interval width {np.round(point.width, 3).tolist()}",
                      flush=True)

            res = evaluate_anytime(ev, w, prompts_per_batch=args.prompts_per_batch, on_point=on_point)
            fresh.append(time.perf_counter() - t0)
            first.append(seen[0])
            assert res.history and not res.partial, "an off-grid point was answered from the store"
            print(f"# point {np.round(w, 3).tolist()}: first after {seen[0]:.1f} s ({res.history[0][0]} prompts, "
                  f"interval width {res.history[0][2]:.2f} z), stored after {fresh[-1]:.1f} s (width "
                  f"{res.history[-1][2]:.2f} z), {res.tokens_per_s:.0f} tok/s", flush=True)

        # the surrogate on a slider move: fitted once on the method's stored candidates, then predict per move
        table = candidate_table(ws)
        cands = table[(table["method"] == args.method) & table["finite"]]
        cols = [f"w_{v}" for v in ws.value_names]
        model = fit_surrogate(cands[cols].to_numpy(dtype=float),
                              cands[[f"z_{v}" for v in ws.value_names]].to_numpy(dtype=float), cols)
        moves = []
        for w in rng.uniform(0, ws.manifest.C, size=(25, len(ws.value_names))):
            t0 = time.perf_counter()
            model.predict([w])
            moves.append(time.perf_counter() - t0)

    T = ev.decoding.max_new_tokens
    print(f"# {len(ev.prompts)} prompts x {T} new tokens, batches of {args.prompts_per_batch} prompts; "
          f"model load {t_load:.1f} s (once per process)")
    print(f"{'name':28s} {'ours':>10s} {'target':>10s} {'ratio':>8s}")
    hit, miss, early = statistics.median(hits), statistics.median(fresh), statistics.median(first)
    print(f"{'cached grid point (s)':28s} {hit:10.4f} {0.1:10.4f} {hit / 0.1:8.2f}")
    print(f"{'off-grid first point (s)':28s} {early:10.2f} {10.0:10.2f} {early / 10.0:8.2f}")
    print(f"{'off-grid stored point (s)':28s} {miss:10.2f} {'':>10s} {'':>8s}")
    predict = statistics.median(moves)
    print(f"{'surrogate on a slider move (s)':28s} {predict:10.4f} {0.1:10.4f} {predict / 0.1:8.2f}")
    print(f"# surrogate: {model.n_candidates} candidates, leave-one-out MAE "
          + ", ".join(f"{v} {e:.3f} z" for v, e in zip(ws.value_names, model.loo_mae)))
    print(f"cached_ms={hit * 1000:.1f} predict_ms={predict * 1000:.1f}")
    print(f"first_point_s={early:.1f} final_point_s={miss:.1f} prompts={len(ev.prompts)}")


if __name__ == "__main__":
    main()
