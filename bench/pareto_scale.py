"""Pareto filter at scale: `python bench/pareto_scale.py`.

Times `mva_core.pareto` (pymoo non-dominated sort + HV) on 10^4 random 2-D and 3-D candidates (target for
2-D: rank + hypervolume under 1 s; the baseline column there is that budget), and on 10^3 candidates against
a brute-force O(n^2) reference written here (front peeling; exact box-union HV after a brute-force front),
asserting they agree. Prints `name  ours  baseline  ratio` in seconds, ratio = baseline / ours.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mva_core.pareto import hypervolume, non_dominated_rank, reference_point  # noqa: E402

T = TypeVar("T")
TARGET_2D_S = 1.0  # DESIGN: a 10^4-candidate comparison must rank and score interactively


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def brute_dominated(F: np.ndarray, alive: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """dominated[i]: some alive row j has F[j] >= F[i] everywhere and > somewhere (maximisation), in row chunks."""
    G = F[alive]
    out = np.zeros(len(F), dtype=bool)
    for s in range(0, len(F), chunk):
        block = F[s:s + chunk]  # (c, m)
        ge = (G[:, None, :] >= block[None, :, :]).all(axis=2)  # (alive, c)
        gt = (G[:, None, :] > block[None, :, :]).any(axis=2)
        out[s:s + chunk] = (ge & gt).any(axis=0)
    return out


def brute_ranks(F: np.ndarray) -> np.ndarray:
    """Rank by peeling fronts with `brute_dominated`."""
    rank = np.full(len(F), -1)
    alive = np.ones(len(F), dtype=bool)
    r = 0
    while alive.any():
        front = alive & ~brute_dominated(F, alive)
        rank[front] = r
        alive &= ~front
        r += 1
    return rank


def brute_hv(front: np.ndarray, ref: np.ndarray) -> float:
    """Exact union volume of boxes [ref, s] over the (small) front: cut at every coordinate, sum covered cells."""
    P = front[(front > ref).all(axis=1)]
    cuts = [np.unique(np.concatenate([[ref[d]], P[:, d]])) for d in range(front.shape[1])]
    uppers = np.array(list(itertools.product(*[c[1:] for c in cuts])))  # (cells, m)
    widths = np.array(list(itertools.product(*[np.diff(c) for c in cuts]))).prod(axis=1)
    covered = np.zeros(len(uppers), dtype=bool)
    for p in P:
        covered |= (p >= uppers).all(axis=1)
    return float(widths[covered].sum())


def row(name: str, ours: float, baseline: float) -> None:
    print(f"{name:<28s}{ours:>10.4f}{baseline:>11.4f}{baseline / ours:>9.1f}")


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'name':<28s}{'ours':>10s}{'baseline':>11s}{'ratio':>9s}")
    for m in (2, 3):
        F = rng.random((10_000, m))
        ref = reference_point(F)
        (rank, hv), t = timed(lambda: (non_dominated_rank(F), hypervolume(F, ref)))
        row(f"rank+hv {m}d n=10000", t, TARGET_2D_S)
        if m == 2 and t >= TARGET_2D_S:
            print(f"  WARNING: 2-D rank+hv took {t:.3f} s, over the {TARGET_2D_S} s target")
        # exact HV of our front as a cross-check (the brute-force front is O(n^2): done at n=1000 below)
        assert np.isclose(hv, brute_hv(F[rank == 0], ref), rtol=1e-12, atol=1e-12)
    for m in (2, 3):
        F = rng.random((1_000, m))
        ours, t = timed(lambda: non_dominated_rank(F))
        ref_rank, t_bf = timed(lambda: brute_ranks(F))
        assert np.array_equal(ours.astype(int), ref_rank), "ranks differ from brute force"
        row(f"rank {m}d n=1000", t, t_bf)
        print(f"  {ref_rank.max() + 1} fronts, all ranks equal to brute force")
        ref = reference_point(F)
        hv, t = timed(lambda: hypervolume(F, ref))
        hv_bf, t_bf = timed(lambda: brute_hv(F[~brute_dominated(F, np.ones(len(F), dtype=bool))], ref))
        assert np.isclose(hv, hv_bf, rtol=1e-12, atol=1e-12), (hv, hv_bf)
        row(f"hv {m}d n=1000", t, t_bf)


if __name__ == "__main__":
    main()
