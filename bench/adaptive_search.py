"""Adaptive front search vs the exhaustive grid, on the real engine (issue 15 item 4).

The exhaustive grid [0, C]^n at `--step` is evaluated once (on a copy of the workspace: the shipped one is never
written); then the adaptive search runs from scratch with several seeds, each on its own fresh copy, with
`--fraction` of the grid's evaluations, on the same prompts, scorers and decoding. Every hypervolume uses ONE
reference point: the per-value minimum over the grid's candidates, the base model and every search's candidates.
Prints per seed and the mean; saves the HV-vs-evaluations curves under bench/out/. Last line:

    hv_fraction=X eval_fraction=Y grid=N seeds=S

    python bench/adaptive_search.py [--workspace data/demo] [--method mva] [--step 0.1] [--seeds 3] [--reuse-grid]

`--emulate K` also runs the search (no generation) on K problems drawn around the grid: joint samples of the
Gaussian processes fitted on the grid's z-scores, noise included (each a plausible other outcome of the same
trade-off), each searched with the same budget and compared with its own grid; it prints their mean fraction, a
check that a setting chosen on this one grid is not just lucky on it.

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
from mva_core.kinds import SearchSpace  # noqa: E402
from mva_core.search import hypervolume_history, search_front, search_method  # noqa: E402
from mva_core.surrogate import fit_surrogate  # noqa: E402
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


def emulated_fractions(W: np.ndarray, Z: np.ndarray, space: SearchSpace, budget: int, k: int,
                       batch: int) -> list[float]:
    """HV fraction of the search on `k` problems drawn around the grid (W, Z): GP posterior samples, noise included."""
    gps = fit_surrogate(W, Z, [f"v{j}" for j in range(Z.shape[1])]).models
    key = {tuple(np.round(w, 6)): i for i, w in enumerate(W)}
    fractions = []
    for i in range(k):
        Zs = np.stack([gp.sample_y(W, random_state=100 * i + j).ravel() for j, gp in enumerate(gps)], axis=1)
        Zs -= Zs[key[(0.0,) * W.shape[1]]]  # z is measured from the base model (w = 0), as in the demo
        result = search_front(lambda X: Zs[[key[tuple(np.round(x, 6))] for x in X]], space, budget, seed=i,
                              batch=batch)
        ref = Zs.min(axis=0)
        fractions.append(pareto.hypervolume(result.z, ref) / pareto.hypervolume(Zs, ref))
    return fractions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="data/demo")
    ap.add_argument("--method", default="mva")
    ap.add_argument("--step", type=float, default=0.1)
    ap.add_argument("--reuse-grid", action="store_true", help="answer the grid from the workspace's stored sweep")
    ap.add_argument("--fraction", type=float, default=0.2, help="adaptive evaluations / grid evaluations")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--emulate", type=int, default=0, help="also search K problems drawn around the grid")
    ap.add_argument("--batch", type=int, default=4, help="points per surrogate fit (the grid is generated 8 per call)")
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
        swept = sweep_groups(args.method, groups, chunk=8)
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
            search_method(ws, args.method, budget, step=args.step, seed=seed, batch=args.batch)
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
        if args.emulate:
            space = SearchSpace(n_values=len(grid_ws.value_names), C=float(grid_ws.manifest.C), step=args.step)
            table = candidate_table(grid_ws)
            Wg = np.array(table[table["method"] == args.method].sort_values("id")["weights"].tolist(), dtype=float)
            em = emulated_fractions(Wg, Zg, space, budget, args.emulate, args.batch)
            print(f"# emulated: {args.emulate} problems drawn around the grid, HV/grid mean {np.mean(em):.3f} "
                  f"(min {np.min(em):.3f}, max {np.max(em):.3f})")
        (out / "adaptive_search.json").write_text(json.dumps({"ref": ref.tolist(), "curves": curves}, indent=1))
        try:
            import plotly.graph_objects as go

            fig = go.Figure([go.Scatter(x=np.arange(1, len(c) + 1), y=c, name=k, mode="lines")
                             for k, c in curves.items()])
            fig.update_layout(xaxis_title="evaluations", yaxis_title="hypervolume (shared ref)")
            fig.write_html(out / "adaptive_search.html")
        except ImportError:
            pass
        print(f"hv_fraction={np.mean(fractions):.3f} eval_fraction={budget / n_grid:.3f} grid={n_grid} "
              f"seeds={args.seeds}")


if __name__ == "__main__":
    main()
