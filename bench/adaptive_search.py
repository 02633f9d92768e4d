"""Adaptive front search vs the exhaustive grid, on the real engine (issue 15 item 4).

The exhaustive grid [0, C]^n at `--step` is evaluated once (on a copy of the workspace: the shipped one is never
written); then the adaptive search runs from scratch with several seeds, each on its own fresh copy, with
`--fraction` of the grid's evaluations, on the same prompts, scorers and decoding. Every hypervolume uses ONE
reference point: the per-value minimum over the grid's candidates, the base model and every search's candidates.
Prints per seed and the mean; saves the HV-vs-evaluations curves under bench/out/. Last line:

    hv_fraction=X eval_fraction=Y grid=N seeds=S

    python bench/adaptive_search.py [--workspace data/demo] [--method mva] [--step 0.1] [--seeds 3] [--reuse-grid]

`--reuse-grid` reads the grid's candidates from the workspace's store where it already holds them (the 3-value
demo's build evaluates [0, 1]^3 at step 0.25 once: `--workspace data/demo3 --step 0.25 --reuse-grid`), on the same
prompts, scorers and decoding; the grid's recorded sweep time is shown.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mva_core import pareto  # noqa: E402
from mva_core.results import candidate_table  # noqa: E402
from mva_core.search import hypervolume_history, search_method  # noqa: E402
from mva_core.sweep import evaluate_base, method_groups, sweep_groups  # noqa: E402
from mva_core.workspace import Workspace  # noqa: E402


def fresh(src: Path, dst: Path) -> Workspace:
    """A copy of the workspace without any stored result (vectors, prompts and workspace.json only)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("mva.sqlite*", "exports"))
    return Workspace(dst)


def z_of(ws: Workspace, method: str) -> tuple[np.ndarray, np.ndarray]:
    table = candidate_table(ws)
    rows = table[table["method"] == method].sort_values("id")
    return rows[[f"z_{v}" for v in ws.value_names]].to_numpy(dtype=float), \
        table.loc[table["method"] == "base", [f"z_{v}" for v in ws.value_names]].to_numpy(dtype=float)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="data/demo")
    ap.add_argument("--method", default="mva")
    ap.add_argument("--step", type=float, default=0.1)
    ap.add_argument("--reuse-grid", action="store_true", help="answer the grid from the workspace's stored sweep")
    ap.add_argument("--fraction", type=float, default=0.2, help="adaptive evaluations / grid evaluations")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        if args.reuse_grid:  # the stored results too: the sweep below answers every stored point from them
            shutil.copytree(args.workspace, Path(tmp) / "grid", ignore=shutil.ignore_patterns("exports"))
            grid_ws = Workspace(Path(tmp) / "grid")
        else:
            grid_ws = fresh(Path(args.workspace), Path(tmp) / "grid")
        t0 = time.perf_counter()
        groups = method_groups(grid_ws, args.method, args.step)
        evaluate_base(grid_ws, groups[0][0].base)
        swept = sweep_groups(args.method, groups, chunk=args.batch)
        grid_s = time.perf_counter() - t0
        if args.reuse_grid:
            runs = grid_ws.store.runs()
            runs = runs[(runs["kind"] == "sweep") & (runs["method"] == args.method) & runs["finished"].notna()]
            grid_s = float((runs["finished"] - runs["started"]).sum())
            print(f"# grid read from the store ({swept.generated} of {len(swept.candidate_ids)} generated now); "
                  f"its recorded sweep time: {grid_s:.0f} s")
        Zg, Zb = z_of(grid_ws, args.method)
        n_grid = len(Zg)
        budget = max(int(round(args.fraction * n_grid)), 1)
        searches = []
        for seed in range(args.seeds):
            ws = fresh(Path(args.workspace), Path(tmp) / f"search{seed}")
            t0 = time.perf_counter()
            search_method(ws, args.method, budget, seed=seed, batch=args.batch)
            searches.append((z_of(ws, args.method)[0], time.perf_counter() - t0))
        every = np.concatenate([Zg, Zb, *[z for z, _ in searches]])
        ref = pareto.reference_point(every[pareto.finite_rows(every)])
        hv_grid = pareto.hypervolume(Zg, ref)
        print(f"# {args.method} on {args.workspace}: grid step {args.step} = {n_grid} candidates in {grid_s:.0f} s; "
              f"adaptive budget {budget}; shared ref {np.round(ref, 3).tolist()}")
        print(f"{'run':12s} {'HV':>8s} {'HV/grid':>8s} {'evals':>6s} {'seconds':>8s}")
        print(f"{'grid':12s} {hv_grid:8.4f} {1.0:8.3f} {n_grid:6d} {grid_s:8.0f}")
        fractions, curves = [], {"grid": hypervolume_history(Zg, ref)}
        for seed, (z, seconds) in enumerate(searches):
            hv = pareto.hypervolume(z, ref)
            fractions.append(hv / hv_grid)
            curves[f"seed {seed}"] = hypervolume_history(z, ref)
            print(f"{f'adaptive s{seed}':12s} {hv:8.4f} {hv / hv_grid:8.3f} {len(z):6d} {seconds:8.0f}")
        (out / "adaptive_search.json").write_text(json.dumps({"ref": ref.tolist(), "curves": curves}, indent=1))
        try:
            import plotly.graph_objects as go

            fig = go.Figure([go.Scatter(x=np.arange(1, len(c) + 1), y=c, name=k, mode="lines") for k, c in curves.items()])
            fig.update_layout(xaxis_title="evaluations", yaxis_title="hypervolume (shared ref)")
            fig.write_html(out / "adaptive_search.html")
        except ImportError:
            pass
        print(f"hv_fraction={np.mean(fractions):.3f} eval_fraction={budget / n_grid:.3f} grid={n_grid} "
              f"seeds={args.seeds}")


if __name__ == "__main__":
    main()
