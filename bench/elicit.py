"""Find my weights by picking answers (issue 29 item 3): informative pair choice vs random pairs, with simulated users.

Each simulated user has hidden true weights (a direction u drawn uniformly: in angle for 2 values, on the simplex
for 3) and answers "which answer is better?" with noisy picks from the same Bradley–Terry / Davidson model the
posterior assumes (mva_core.elicit: β = 1 per z unit, tie propensity ν = 0.5). The questions are real: two of a
method's stored candidates answering one of the workspace's prompts, each response's rewards z-scored against the
base model (`elicit.per_prompt_z`; the shipped demos, opened read-only). For every user both strategies are run
on the same pick stream seed: "informative" asks the (pair, prompt) of largest expected information gain,
"random" a random one. After 5 and 10 picks: the angle between the posterior mean direction and the true one.

Prints, per workspace, `name  ours  baseline  ratio` rows (ours = informative, baseline = random) and the line

    angle_informative_5=… angle_informative_10=… angle_random_5=… angle_random_10=… users=N (degrees)

    python bench/elicit.py [--workspace data/demo] [--method mva] [--users 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mva_core.elicit import BETA, NU, Elicitation, angle_deg, per_prompt_z, simulate_pick  # noqa: E402
from mva_core.metrics import prompt_rewards  # noqa: E402
from mva_core.results import load_table  # noqa: E402
from mva_core.workspace import open_workspace  # noqa: E402

CHECKPOINTS = (5, 10)


def true_direction(rng: np.random.Generator, n_values: int) -> np.ndarray:
    """A user's hidden direction: uniform in angle on the quarter circle (2 values), uniform on the simplex (more)."""
    if n_values == 2:
        t = rng.uniform(0, np.pi / 2)
        return np.array([np.cos(t), np.sin(t)])
    p = rng.dirichlet(np.ones(n_values))
    return p / np.linalg.norm(p)


def run_user(Z: np.ndarray, u: np.ndarray, informative: bool, seed: int) -> dict[int, float]:
    """Angles (degrees) after each checkpoint for one user and one strategy."""
    e = Elicitation(Z)
    answers = np.random.default_rng(seed)  # the user's noise
    asks = np.random.default_rng(seed + 10_000)  # the random strategy's (and the sampled question set's) draws
    out = {}
    for n in range(1, max(CHECKPOINTS) + 1):
        a, b, j = e.next_pair(asks, informative=informative)
        e.answer(a, b, j, simulate_pick(answers, u, Z[a, j] - Z[b, j], BETA, NU))
        if n in CHECKPOINTS:
            out[n] = float(angle_deg(e.mean_direction(), u))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", action="append", default=None, help="default: data/demo and data/demo3")
    ap.add_argument("--method", default="mva")
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    workspaces = args.workspace or [str(root / "data" / "demo"), str(root / "data" / "demo3")]
    if args.users < 20:
        sys.exit("--users: use at least 20 simulated users")
    lines = []
    for path in workspaces:
        ws = open_workspace(path, read_only=True)
        table = load_table(ws)
        rows = table.for_method(args.method)
        ids = rows.ids()[rows.finite()].astype(int).tolist()
        Z = per_prompt_z(prompt_rewards(ws, ids), prompt_rewards(ws, [table.base_id()])[0])  # (K, P, V)
        rng = np.random.default_rng(args.seed)
        t0 = time.monotonic()
        angles = {s: {n: [] for n in CHECKPOINTS} for s in ("informative", "random")}
        for user in range(args.users):
            u = true_direction(rng, Z.shape[2])
            for strategy in angles:
                for n, a in run_user(Z, u, strategy == "informative", args.seed * 1000 + user).items():
                    angles[strategy][n].append(a)
        mean = {s: {n: float(np.mean(v)) for n, v in d.items()} for s, d in angles.items()}
        print(f"\n{Path(path).name}: {args.method}, {Z.shape[0]} candidates × {Z.shape[1]} prompts × {Z.shape[2]} "
              f"values, {args.users} users, β = {BETA}, ν = {NU} ({time.monotonic() - t0:.0f} s)")
        print(f"{'name':<28}{'ours (informative)':>20}{'baseline (random)':>20}{'ratio':>8}")
        for n in CHECKPOINTS:
            i, r = mean["informative"][n], mean["random"][n]
            print(f"{f'mean angle after {n} picks (°)':<28}{i:>20.1f}{r:>20.1f}{i / r:>8.2f}")
        line = (" ".join(f"angle_{s}_{n}={mean[s][n]:.1f}" for s in ("informative", "random") for n in CHECKPOINTS)
                + f" users={args.users} workspace={Path(path).name}")
        lines.append(line)
        print(line)
    print()
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
