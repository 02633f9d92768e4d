"""Adaptive front search vs the exhaustive grid, on the real engine (issue 15 item 4).

The exhaustive grid [0, C]^n at `--step` is evaluated once (on a copy of the workspace: the shipped one is never
written); then the adaptive search runs from scratch with several seeds, each on its own fresh copy, with
`--fraction` of the grid's evaluations, on the same prompts, scorers and decoding. Every hypervolume uses ONE
reference point: the per-value minimum over the grid's candidates, the base model and every search's candidates.
Prints per seed and the mean; saves the HV-vs-evaluations curves under bench/out/. Last line:

    hv_fraction=X eval_fraction=Y grid=N seeds=S

    python bench/adaptive_search.py [--workspace data/demo] [--method mva] [--step 0.1] [--seeds 3] [--reuse-grid]

`--emulate K` also runs the search (no generation) on 2·K problems drawn around the grid: for each value, a joint
sample of the noise-free part of the Gaussian process fitted on the grid's z-scores (its RBF term, conditioned on
the grid) plus independent draws of its fitted white noise (each problem a plausible other outcome of the same
trade-off, as rough as the measured one), on the lattice at `--emulate-step` (default `--step`; a finer step
emulates a finer grid around the stored one, e.g. the 2-value demo's 121-point step-0.1 grid around its stored
step-0.25 grid, without generating it). K problems have the seeds the search was tuned on (`--tune-seed`, default
0: seeds 0 … K−1) and K were never looked at while tuning (`--problem-seed`, default 1000); each set prints on its
own line: the mean and the worst HV fraction (with its seed), the noise-free fraction (the HV of the noise-free
values at the weights the search chose over the noise-free grid's: did it find the right weights?), and the
ceiling: the HV fraction of the same number of points chosen greedily knowing the noise-free values. A search
cannot see a point's noise before evaluating it, so it cannot do much better than that (it can do a little
better: it keeps the points whose noise turned out lucky and searches around the others); a ceiling well below
0.95 says the target is out of reach on that problem for any search, not that this one is poor.

`--reuse-grid` reads the grid's candidates from the workspace's store where it already holds them (the 3-value
demo's build evaluates [0, 1]^3 at step 0.25 once: `--workspace data/demo3 --step 0.25 --reuse-grid`; the 2-value
demo's store holds `mva` and `mva-no-hsic` at step 0.25; its step-0.1 grid is generated once on a copy: `cp -r
data/demo /tmp/demo_fine && python -m mva_core sweep --workspace /tmp/demo_fine --method mva --grid 0:1:0.1`, about
21 min on 2 idle cores, then `--workspace /tmp/demo_fine --step 0.1 --reuse-grid`), on the same prompts, scorers
and decoding; the grid's recorded sweep time is shown, and the searches answer from that grid (no generation: the
decoding is greedy, so the stored answer is the one the engine would give) instead of generating on a fresh copy.

Early stop (`search --early-stop`): every search here records, batch by batch, its expected hypervolume gain and
the sd of its front's hypervolume under prompt resampling (the grid's stored per-prompt rewards; for emulated
problems, Gaussian redraws with the problem's noise sd), and each line reports where the early stop would have
ended it: evaluations saved and the fraction of the full search's hypervolume kept.

`--radius R`: the picks after the extremes are made among the lattice points within R steps of the measured front
(the search's default `search.NEIGHBOURHOOD`); `--radius 0` runs the search before issue 29 item 5 (anywhere).
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

from dataclasses import dataclass  # noqa: E402

from tqdm import tqdm  # noqa: E402

from mva_core import pareto  # noqa: E402
from mva_core.acquisition import hv_bootstrap_sd, hv_parametric_sd, hypervolumes  # noqa: E402
from mva_core.metrics import prompt_rewards  # noqa: E402
from mva_core.results import candidate_table  # noqa: E402
from mva_core.kinds import SearchSpace  # noqa: E402
from mva_core.search import (ACQUISITION, ACQUISITIONS, NEIGHBOURHOOD, hypervolume_history,  # noqa: E402
                             search_front, search_method)
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


def emulate(W: np.ndarray, Z: np.ndarray, Wf: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One problem drawn around the grid (W, Z) on the lattice `Wf` (module docstring): its noise-free z-scores, its
    observed ones (noise-free + white noise) and the noise sd per value, each measured from the base (w = 0)."""
    gps = fit_surrogate(W, Z, [f"v{j}" for j in range(Z.shape[1])]).models
    rng = np.random.default_rng(seed)
    F, Y, sd = [], [], []
    for gp in gps:
        smooth, noise = gp.kernel_.k1, gp.kernel_.k2.noise_level  # constant × RBF, white noise (normalised units)
        Kt = smooth(W) + noise * np.eye(len(W))
        A = np.linalg.solve(Kt, smooth(Wf, W).T)
        mean, cov = A.T @ gp.y_train_, smooth(Wf) - smooth(Wf, W) @ A
        f = rng.multivariate_normal(mean, cov + 1e-10 * np.eye(len(Wf)), method="eigh")
        y = f + rng.normal(0, np.sqrt(noise), len(Wf))
        scale, shift = float(np.atleast_1d(gp._y_train_std)[0]), float(np.atleast_1d(gp._y_train_mean)[0])
        F.append(f * scale + shift)
        Y.append(y * scale + shift)
        sd.append(np.sqrt(noise) * scale)
    F, Y = np.stack(F, axis=1), np.stack(Y, axis=1)
    at0 = int(np.flatnonzero((np.abs(Wf) < 1e-12).all(axis=1))[0])
    return F - Y[at0], Y - Y[at0], np.array(sd)


def greedy_ceiling(F: np.ndarray, Y: np.ndarray, k: int) -> float:
    """HV fraction (of Y's grid) of k points chosen greedily by their noise-free values F's hypervolume."""
    ref, chosen = F.min(axis=0), []
    for _ in range(k):
        hv = hypervolumes(np.concatenate([np.repeat(F[chosen][None], len(F), 0), F[:, None]], axis=1), ref)
        hv[chosen] = -np.inf
        chosen.append(int(np.argmax(hv)))
    r = Y.min(axis=0)
    return pareto.hypervolume(Y[chosen], r) / pareto.hypervolume(Y, r)


@dataclass
class Outcome:
    """One search of a problem whose every lattice point is known."""
    fraction: float  # HV / grid HV (the grid's reference)
    latent: float  # the same on the noise-free values (NaN where unknown)
    evaluations: int
    stop_at: int | None  # evaluations the early stop would have made (None: it would not have stopped)
    kept: float  # HV fraction of the early-stopped search / of the full one


def search_known(W: np.ndarray, Y: np.ndarray, space: SearchSpace, budget: int, seed: int, batch: int,
                 hv_noise, F: np.ndarray | None = None, ref: np.ndarray | None = None,
                 acquisition: str = ACQUISITION, radius: int = NEIGHBOURHOOD) -> tuple[Outcome, np.ndarray]:
    """The search on a lattice whose z-scores `Y` are known (a stored grid or an emulated problem), the early stop
    recorded, not applied (`search_front(early_stop=False)`: the stopped search is the full one's first points).
    HVs w.r.t. `ref` (default the grid's per-value minimum). Returns the outcome and the grid rows evaluated."""
    key = {tuple(np.round(w, 6)): i for i, w in enumerate(W)}
    result = search_front(lambda X: Y[[key[tuple(np.round(x, 6))] for x in X]], space, budget, seed=seed,
                          batch=batch, hv_noise=hv_noise, early_stop=False, acquisition=acquisition, radius=radius)
    idx = [key[tuple(np.round(x, 6))] for x in result.weights]
    ref = Y.min(axis=0) if ref is None else ref
    full = pareto.hypervolume(Y[idx], ref)
    stop = result.stop_point()
    kept = pareto.hypervolume(Y[idx[:stop]], ref) / full if stop is not None else 1.0
    latent = np.nan if F is None else pareto.hypervolume(F[idx], F.min(axis=0)) / pareto.hypervolume(F, F.min(axis=0))
    return Outcome(full / pareto.hypervolume(Y, ref), latent, len(idx), stop, kept), np.array(idx)


def early_stop_summary(outcomes: list[Outcome], budget: int) -> str:
    stops = [o.stop_at if o.stop_at is not None else o.evaluations for o in outcomes]
    return (f"early stop: {sum(o.stop_at is not None for o in outcomes)}/{len(outcomes)} stopped, evaluations saved "
            f"mean {budget - np.mean(stops):.1f} of {budget} (at {stops}), HV kept mean "
            f"{np.mean([o.kept for o in outcomes]):.3f} min {np.min([o.kept for o in outcomes]):.3f}")


def emulated_set(label: str, seeds: range, W: np.ndarray, Z: np.ndarray, Wf: np.ndarray, space: SearchSpace,
                 fraction: float, batch: int, acquisition: str = ACQUISITION, radius: int = NEIGHBOURHOOD) -> None:
    """Search the problems of `seeds` drawn around (W, Z) on the lattice Wf and print one line for the set."""
    budget = max(int(round(fraction * len(Wf))), 1)
    outs, ceilings = [], []
    for s in tqdm(seeds, desc=f"emulated {label}", leave=False):
        F, Y, sd = emulate(W, Z, Wf, s)

        def noise(Wx: np.ndarray, Zx: np.ndarray, ref: np.ndarray, sd: np.ndarray = sd) -> float:
            return hv_parametric_sd(Zx[pareto.front_indices(Zx)], sd, ref, seed=0)

        outs.append(search_known(Wf, Y, space, budget, seed=s, batch=batch, hv_noise=noise, F=F,
                                 acquisition=acquisition, radius=radius)[0])
        ceilings.append(greedy_ceiling(F, Y, budget))
    fr = np.array([o.fraction for o in outs])
    worst = seeds[int(np.argmin(fr))]
    print(f"emulated {label} (problem seeds {seeds.start}-{seeds.stop - 1}, {len(Wf)}-point lattice, budget "
          f"{budget}): HV/grid mean {fr.mean():.3f} worst {fr.min():.3f} (seed {worst}); per seed "
          f"{np.round(fr, 3).tolist()}; noise-free mean {np.mean([o.latent for o in outs]):.3f} worst "
          f"{np.min([o.latent for o in outs]):.3f}; ceiling mean {np.mean(ceilings):.3f} worst "
          f"{np.min(ceilings):.3f}; {early_stop_summary(outs, budget)}")


def stored_grid(ws: Workspace, method: str, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], int]:
    """The method's stored candidates on the lattice [0, C]^n at `step` (the latest of each weight vector): weights,
    z-scores, the base model's z-scores, their candidate ids and the base's id. Exits when a lattice point is
    missing (run the sweep at that step first)."""
    table = candidate_table(ws)
    rows = table[table["method"] == method].sort_values("id")
    lattice = SearchSpace(n_values=len(ws.value_names), C=float(ws.manifest.C), step=step).grid()
    W = np.array(rows["weights"].tolist(), dtype=float)
    at = {tuple(np.round(w, 6)): i for i, w in enumerate(W)}  # the latest row of each weight vector
    missing = [w for w in lattice if tuple(np.round(w, 6)) not in at]
    if missing:
        sys.exit(f"{ws.root}: {len(missing)} of the {len(lattice)} lattice points of {method} at step {step:g} are not "
                 f"stored (e.g. {missing[0].tolist()}); run `python -m mva_core sweep --method {method} --grid "
                 f"0:{ws.manifest.C:g}:{step:g}` first or drop --reuse-grid")
    pick = [at[tuple(np.round(w, 6))] for w in lattice]
    zc = [f"z_{v}" for v in ws.value_names]
    Z = rows[zc].to_numpy(dtype=float)[pick]
    base = table[table["method"] == "base"].sort_values("id")
    return lattice, Z, base[zc].to_numpy(dtype=float), rows["id"].to_numpy()[pick].astype(int).tolist(), \
        int(base["id"].iloc[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="data/demo")
    ap.add_argument("--method", default="mva")
    ap.add_argument("--step", type=float, default=0.1)
    ap.add_argument("--reuse-grid", action="store_true", help="answer the grid from the workspace's stored sweep")
    ap.add_argument("--fraction", type=float, default=0.2, help="adaptive evaluations / grid evaluations")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--emulate", type=int, default=0,
                    help="also search K problems drawn around the grid with the tuned-on seeds and K held-out ones")
    ap.add_argument("--emulate-step", type=float, default=None, help="the emulated problems' lattice (default --step)")
    ap.add_argument("--tune-seed", type=int, default=0, help="first problem seed the search was tuned on")
    ap.add_argument("--problem-seed", type=int, default=1000,
                    help="first held-out problem seed (never used while tuning the search)")
    ap.add_argument("--acquisition", default=ACQUISITION, choices=ACQUISITIONS,
                    help="ehvi (the search's default) or mean (the search before issue 29: the predicted mean's gain)")
    ap.add_argument("--radius", type=int, default=NEIGHBOURHOOD,
                    help="picks among the lattice points this many steps from the measured front (0: anywhere, the "
                         "search before issue 29 item 5)")
    ap.add_argument("--batch", type=int, default=1, help="points per surrogate fit (the grid is generated 8 per call)")
    args = ap.parse_args()
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        if args.reuse_grid:  # the stored results, read from a copy (the shipped store is never opened for writing)
            shutil.copytree(args.workspace, Path(tmp) / "grid", ignore=shutil.ignore_patterns("exports"))
            grid_ws = Workspace(Path(tmp) / "grid")
            Wg, Zg, Zb, ids, base_id = stored_grid(grid_ws, args.method, args.step)
            runs = grid_ws.store.runs()
            runs = runs[(runs["kind"] == "sweep") & (runs["method"] == args.method) & runs["finished"].notna()]
            grid_s = float((runs["finished"] - runs["started"]).sum())
            print(f"# grid read from the store ({len(Wg)} points); its recorded sweep time: {grid_s:.0f} s; the "
                  "searches answer from it (greedy decoding: the same answers the engine gives)")
        else:
            grid_ws = fresh(Path(args.workspace), Path(tmp) / "grid")
            t0 = time.perf_counter()
            groups = method_groups(grid_ws, args.method, args.step)
            evaluate_base(grid_ws, groups[0][0].base)
            sweep_groups(args.method, groups, chunk=8)
            grid_s = time.perf_counter() - t0
            Zg, Zb = z_of(grid_ws, args.method)
            table = candidate_table(grid_ws)
            Wg = np.array(table[table["method"] == args.method].sort_values("id")["weights"].tolist(), dtype=float)
        space = SearchSpace(n_values=len(grid_ws.value_names), C=float(grid_ws.manifest.C), step=args.step)
        n_grid = len(Zg)
        budget = max(int(round(args.fraction * n_grid)), 1)
        searches = []  # (z of the evaluated points, seconds, early-stop outcome or None)
        if args.reuse_grid:
            every = np.concatenate([Zg, Zb])
            ref = pareto.reference_point(every[pareto.finite_rows(every)])
            R = prompt_rewards(grid_ws, ids)  # (K, P, V): the bootstrap of the HV's noise
            Rb = prompt_rewards(grid_ws, [base_id])[0]
            key = {tuple(np.round(w, 6)): i for i, w in enumerate(Wg)}

            def noise(W: np.ndarray, Z: np.ndarray, r: np.ndarray) -> float:
                front = [key[tuple(np.round(w, 6))] for w in W[pareto.front_indices(Z)]]
                return hv_bootstrap_sd(R[front], Rb, r)

            for seed in range(args.seeds):
                t0 = time.perf_counter()
                outcome, idx = search_known(Wg, Zg, space, budget, seed, args.batch, noise, ref=ref,
                                            acquisition=args.acquisition, radius=args.radius)
                searches.append((Zg[idx], time.perf_counter() - t0, outcome))
        else:
            for seed in range(args.seeds):
                ws = fresh(Path(args.workspace), Path(tmp) / f"search{seed}")
                t0 = time.perf_counter()
                search_method(ws, args.method, budget, step=args.step, seed=seed, batch=args.batch,
                              radius=args.radius)
                searches.append((z_of(ws, args.method)[0], time.perf_counter() - t0, None))
            every = np.concatenate([Zg, Zb, *[z for z, _, _ in searches]])
            ref = pareto.reference_point(every[pareto.finite_rows(every)])
        hv_grid = pareto.hypervolume(Zg, ref)
        print(f"# {args.method} on {args.workspace}: grid step {args.step} = {n_grid} candidates in {grid_s:.0f} s; "
              f"adaptive budget {budget} (batch {args.batch}, {args.acquisition}, radius {args.radius}); shared ref "
              f"{np.round(ref, 3).tolist()}")
        print(f"{'run':12s} {'HV':>8s} {'HV/grid':>8s} {'evals':>6s} {'seconds':>8s} {'stop at':>8s} {'HV kept':>8s}")
        print(f"{'grid':12s} {hv_grid:8.4f} {1.0:8.3f} {n_grid:6d} {grid_s:8.0f}")
        fractions, curves = [], {"grid": hypervolume_history(Zg, ref)}
        for seed, (z, seconds, outcome) in enumerate(searches):
            hv = pareto.hypervolume(z, ref)
            fractions.append(hv / hv_grid)
            curves[f"seed {seed}"] = hypervolume_history(z, ref)
            stop = "" if outcome is None else f"{outcome.stop_at or '-':>8} {outcome.kept:8.3f}"
            print(f"{f'adaptive s{seed}':12s} {hv:8.4f} {hv / hv_grid:8.3f} {len(z):6d} {seconds:8.0f} {stop}")
        if searches and searches[0][2] is not None:
            print(f"# {early_stop_summary([o for _, _, o in searches], budget)}")
        if args.emulate:
            step = args.emulate_step or args.step
            fine = SearchSpace(n_values=space.n_values, C=space.C, step=step)
            Wf = fine.grid()
            emulated_set("tuned-on", range(args.tune_seed, args.tune_seed + args.emulate), Wg, Zg, Wf, fine,
                         args.fraction, args.batch, args.acquisition, args.radius)
            emulated_set("held-out", range(args.problem_seed, args.problem_seed + args.emulate), Wg, Zg, Wf, fine,
                         args.fraction, args.batch, args.acquisition, args.radius)
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
