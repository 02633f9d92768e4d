"""Live slider latency on the demo workspace: a cached grid point, and an off-grid point end to end.

Targets: a stored grid point answered in < 100 ms; an off-grid point (8 prompts x 48 new tokens,
generation + scoring + storing) in < 10 s on CPU. The model load is reported separately: the app
loads it once per process (st.cache_resource), not per slider move.

Usage: python bench/live_point.py [--workspace data/demo] [--points 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mva_core.results import candidate_table  # noqa: E402
from mva_core.surrogate import fit_surrogate  # noqa: E402
from mva_core.sweep import Evaluator  # noqa: E402
from mva_core.workspace import Workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="data/demo")
    ap.add_argument("--method", default="mva-no-hsic")
    ap.add_argument("--points", type=int, default=3, help="off-grid points timed")
    ap.add_argument("--new-tokens", type=int, default=48)
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

        T = args.new_tokens
        ev.decoding = replace(ev.decoding, max_new_tokens=T, min_new_tokens=T, batch_size=len(ev.prompts))
        rng = np.random.default_rng(0)
        fresh = []
        for _ in range(args.points):
            w = np.round(rng.uniform(0, ws.manifest.C, len(ws.value_names)), 3)
            t0 = time.perf_counter()
            res = ev.evaluate([w], source="live")
            fresh.append(time.perf_counter() - t0)
            assert res.generated == 1

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

    print(f"# {len(ev.prompts)} prompts, off-grid points decode {T} new tokens; model load {t_load:.1f} s (once per process)")
    print(f"{'name':28s} {'ours':>10s} {'target':>10s} {'ratio':>8s}")
    hit, miss = statistics.median(hits), statistics.median(fresh)
    print(f"{'cached grid point (s)':28s} {hit:10.4f} {0.1:10.4f} {hit / 0.1:8.2f}")
    print(f"{'off-grid point (s)':28s} {miss:10.2f} {10.0:10.2f} {miss / 10.0:8.2f}")
    predict = statistics.median(moves)
    print(f"{'surrogate on a slider move (s)':28s} {predict:10.4f} {0.1:10.4f} {predict / 0.1:8.2f}")
    print(f"# surrogate: {model.n_candidates} candidates, leave-one-out MAE "
          + ", ".join(f"{v} {e:.3f} z" for v, e in zip(ws.value_names, model.loo_mae)))
    print(f"cached_ms={hit * 1000:.1f} offgrid_s={miss:.2f} predict_ms={predict * 1000:.1f}")


if __name__ == "__main__":
    main()
