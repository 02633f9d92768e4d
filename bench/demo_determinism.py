"""Determinism of the shipped demo, measured on its own parts (issue #27 item 6).

A second full `demo build` takes hours on 2 CPU cores; this checks the two things a rebuild redoes, on the real
demo, against what data/demo ships:

  * training: the first vector of `mva-no-hsic` (warmth: no earlier vector, so it depends on the pairs, the base,
    the training config and the seed only) trained again from seed 0 with the demo's config
    (`demo.demo_train_config`) into a temporary directory, its LoRA tensors compared with the shipped ones;
  * evaluation: `--candidates K` stored candidates of `--method` forgotten in a temporary copy of the workspace
    and swept again at their weights (the same chunk size as the build), their responses and per-prompt scores
    compared with the shipped ones, matched by content key.

Prints per part `identical` or the largest difference, the torch thread count (a matmul's reduction order may
depend on it: the shipped demo was built with torch's default on 2 cores) and the seconds taken. The shipped demo
is only read.

Usage: python bench/demo_determinism.py [--workspace data/demo] [--method mva] [--candidates 4] [--skip-training]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mva_core.demo import demo_train_config  # noqa: E402
from mva_core.diagnostics import load_preference_pairs  # noqa: E402
from mva_core.methods import train_method  # noqa: E402
from mva_core.models import load_base  # noqa: E402
from mva_core.store import SAMPLED_EVALUATION  # noqa: E402
from mva_core.sweep import method_groups, sweep_groups  # noqa: E402
from mva_core.workspace import DEMO_WORKSPACE, Workspace  # noqa: E402

ADAPTER = "adapter_model.safetensors"


def retrain_first_vector(ws: Workspace, seed: int) -> str:
    """Train mva-no-hsic's first value vector again; 'identical' or the largest absolute tensor difference."""
    first = ws.value_names[0]
    shipped = ws.root / "vectors" / "mva-no-hsic" / first
    pairs = load_preference_pairs(ws)
    base = load_base(ws.manifest.base)
    with tempfile.TemporaryDirectory() as tmp:
        train_method("mva-no-hsic", base, {first: pairs[first]}, Path(tmp), demo_train_config(seed))
        again, before = load_file(Path(tmp) / first / ADAPTER), load_file(shipped / ADAPTER)
    if sorted(again) != sorted(before):
        return f"different tensors: {sorted(set(again) ^ set(before))[:3]}"
    diff = max(float((again[k].double() - before[k].double()).abs().max()) for k in again)
    return "identical" if all(torch.equal(again[k], before[k]) for k in again) else f"max |Δ| = {diff:.3g}"


def stored(db: Path, keys: list[str]) -> dict[tuple, object]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    marks = ",".join("?" * len(keys))
    rows = con.execute(f"SELECT c.key, r.prompt_idx, r.response FROM responses r JOIN candidates c ON c.id = "
                       f"r.candidate_id WHERE c.key IN ({marks})", keys).fetchall()
    scores = con.execute(f"SELECT c.key, s.prompt_idx, s.scorer, s.value FROM scores s JOIN candidates c ON c.id = "
                         f"s.candidate_id WHERE c.key IN ({marks})", keys).fetchall()
    con.close()
    return {**{("response", k, j): r for k, j, r in rows}, **{("score", k, j, s): v for k, j, s, v in scores}}


def redecode(ws: Workspace, method: str, k: int) -> tuple[str, int]:
    """Forget k of `method`'s candidates in a copy, sweep them again; 'identical' or what differs."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "ws"
        shutil.copytree(ws.root, copy, symlinks=True)
        cw = Workspace(copy)
        cand = cw.store.candidates()
        mine = cand[(cand["method"] == method) & (cand["source"] != SAMPLED_EVALUATION)]
        picked = mine.iloc[np.linspace(0, len(mine) - 1, min(k, len(mine))).round().astype(int)]
        keys = [str(x) for x in picked["key"]]
        before = stored(copy / "mva.sqlite", keys)
        W = np.array([list(w) for w in picked["weights"]], dtype=float)
        cw.store.forget_candidates([int(i) for i in picked["id"]])
        groups = method_groups(cw, method, 0.25)
        ev = groups[0][0]
        sweep_groups(method, [(ev, W)], chunk=8)
        after = stored(copy / "mva.sqlite", keys)
    if after == before:
        return "identical", len(keys)
    differ = [key for key in before if after.get(key) != before[key]]
    return f"{len(differ)} of {len(before)} stored items differ (e.g. {differ[0]})", len(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default=str(DEMO_WORKSPACE))
    parser.add_argument("--method", default="mva")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    ws = Workspace(args.workspace)
    print(f"torch threads: {torch.get_num_threads()}")
    started = time.perf_counter()
    verdict, n = redecode(ws, args.method, args.candidates)
    print(f"redecode {args.method}: {n} candidates x {len(ws.prompts())} prompts: {verdict} "
          f"({time.perf_counter() - started:.0f} s)")
    if not args.skip_training:
        started = time.perf_counter()
        verdict = retrain_first_vector(ws, args.seed)
        print(f"retrain mva-no-hsic/{ws.value_names[0]} (seed {args.seed}): {verdict} "
              f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
