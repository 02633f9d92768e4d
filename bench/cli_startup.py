"""CLI start-up: `python bench/cli_startup.py [--repeat 5]`.

Times `python -m mva_core --help` and `python -m mva_core <command> --help` for every command (median of
`--repeat` fresh processes), against the interpreter alone (`python -c pass`) in the same run. Target (issue 26
item 7): under 1 s each. Prints `name  ours  baseline  ratio` in seconds, ratio = ours / baseline.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mva_core.cli import COMMANDS  # noqa: E402  (light: only the parser's modules)

TARGET_S = 1.0


def median_seconds(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    baseline = median_seconds([sys.executable, "-c", "pass"], args.repeat)
    print(f"{'name':<22}{'ours':>8}{'baseline':>10}{'ratio':>8}  under {TARGET_S:g} s")
    for cmd in ["", *COMMANDS]:
        ours = median_seconds([sys.executable, "-m", "mva_core", *([cmd] if cmd else []), "--help"], args.repeat)
        print(f"{(cmd or '(top)') + ' --help':<22}{ours:>8.2f}{baseline:>10.2f}{ours / baseline:>8.1f}  "
              f"{'yes' if ours < TARGET_S else 'no'}")


if __name__ == "__main__":
    main()
