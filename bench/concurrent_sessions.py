"""N concurrent browser sessions on one `streamlit run app.py` server, each evaluating one point (issue 19 item 5).

One server bound to 127.0.0.1 (loopback only) on a copy of the demo workspace; N headless-Chromium contexts (N <= 16)
open Explore, each sets its own off-grid weights, and all press Evaluate at once. Measured per session: click ->
its point drawn. Baseline: one session evaluating alone on the same warm server. The server runs under a wrapper
that counts calls of `mva_core.models.load_base` (the model must load once, however many sessions) and its
resident memory is sampled every 0.25 s (it must stay bounded: the sessions share one model).

To keep it short on a small CPU the workspace copy evaluates `--prompts` of the demo's prompts with
`--new-tokens` each (default 4 x 24; the base model and the four grid corners are evaluated first so the chart
has points). Prints `name  ours  baseline  ratio` lines.

Usage: python bench/concurrent_sessions.py [--sessions 8] [--prompts 4] [--new-tokens 24] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_SESSIONS = 16


def serve(argv: list[str]) -> None:
    """The server side: count load_base calls into $MVA_BENCH_LOADS, then run Streamlit's command line."""
    import mva_core.models as models

    plain, log = models.load_base, os.environ["MVA_BENCH_LOADS"]

    def counted(*args, **kwargs):
        with open(log, "a") as f:
            f.write(json.dumps({"spec": str(args[0] if args else kwargs.get("spec")), "at": time.time()}) + "\n")
        return plain(*args, **kwargs)

    models.load_base = counted  # before the app imports it (pages.shared, mva_core.sweep bind it at import)
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *argv]
    streamlit_main()


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class MemorySampler:
    """Resident memory of a process and its children, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.25):
        import psutil

        self.proc, self.every, self.samples = psutil.Process(pid), every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        procs = [self.proc, *self.proc.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001 - a child that just ended
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.rss()))
            self._stop.wait(self.every)

    def peak(self, since: float, until: float | None = None) -> int:
        return max(r for t, r in self.samples if t >= since and (until is None or t <= until))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def prepare(src: Path, root: Path, n_prompts: int, new_tokens: int) -> None:
    """A copy of the workspace evaluating the first `n_prompts` prompts with `new_tokens` each; the base model and
    the four corners of the grid evaluated, so the Explore chart has points and z-scores."""
    from mva_core.data import load_prompts, write_jsonl
    from mva_core.sweep import Evaluator, evaluate_base
    from mva_core.workspace import MANIFEST, Workspace

    shutil.copytree(src, root)
    manifest = json.loads((root / MANIFEST).read_text())
    prompts = load_prompts(root / manifest["prompts"])[:n_prompts]
    write_jsonl(root / "prompts" / "bench.jsonl", [{"prompt": p} for p in prompts])
    manifest["prompts"] = "prompts/bench.jsonl"
    manifest.setdefault("decoding", {})["max_new_tokens"] = new_tokens
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    ws = Workspace(root)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    ev.evaluate([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        return serve(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8, help=f"concurrent browser sessions, 1..{MAX_SESSIONS}")
    ap.add_argument("--workspace", default=str(ROOT / "data" / "demo"))
    ap.add_argument("--prompts", type=int, default=4, help="prompts per evaluation (the demo's first N)")
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--alone", type=int, default=3, choices=[1, 2, 3], help="evaluations alone; baseline = median")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run")
    args = ap.parse_args()
    if not 1 <= args.sessions <= MAX_SESSIONS:
        sys.exit(f"--sessions {args.sessions}: choose 1..{MAX_SESSIONS} (the bench is bounded on purpose)")

    from playwright.sync_api import sync_playwright

    from mva_core.workspace import Workspace
    from tests.browser import CHROMIUM, CHROMIUM_ARGS, serve_app, set_weights, your_point

    started = time.time()
    print(f"# load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)",
          flush=True)
    deadline = started + args.timeout
    # distinct weights, off the demo's 0.25 grid and off the simplex: warmth 0.05 … 0.95, brevity 0.3
    warmth_moves = [-9, -7, -3, -1, 1, 3, 7, 9, -5, 5, -8, -6, -2, 2, 6, 8][:args.sessions]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        prepare(Path(args.workspace), tmp / "ws", args.prompts, args.new_tokens)
        print(f"# workspace copy ready ({args.prompts} prompts x {args.new_tokens} tokens, base + 4 corners "
              f"evaluated) in {time.time() - t0:.1f} s", flush=True)
        loads = tmp / "loads.jsonl"
        with serve_app(tmp / "ws", tmp / "server.log", env={"MVA_BENCH_LOADS": str(loads), "MVA_AUTH_TOKEN": ""},
                       launcher=(sys.executable, str(Path(__file__).resolve()), "--serve")) as (url, proc), \
                sync_playwright() as p:
            mem = MemorySampler(proc.pid)
            idle = mem.rss()
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

            def open_page():
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.goto(url, timeout=120_000)
                page.wait_for_selector(".js-plotly-plot", timeout=300_000)
                return page

            def drawn(page, weights: tuple[float, float]) -> bool:
                """The page's own point is drawn, at `weights` (another session's point would not be)."""
                point = your_point(page) or {}
                return point.get("count") == 1 and \
                    f"w_warmth = {weights[0]:.2f}<br>w_brevity = {weights[1]:.2f}" in point.get("hover", "")

            def evaluate_alone(page, moves: tuple[int, int]) -> float:
                weights = set_weights(page, moves)
                t = time.time()
                page.get_by_role("button", name="Evaluate").click()
                while not drawn(page, weights):
                    if time.time() > deadline:
                        sys.exit("the session evaluating alone did not finish within --timeout")
                    time.sleep(0.1)
                return time.time() - t

            # ---- Warm-up (loads the model), then one session alone on the warm server: the baseline ----
            solo = open_page()
            first = evaluate_alone(solo, (-6, 2))  # (0.2, 0.6)
            print(f"# first evaluation (model load included) {first:.1f} s", flush=True)
            warm_at = time.time()
            alones = [evaluate_alone(solo, moves) for moves in [(10, 0), (-2, 3), (-4, -4)][:args.alone]]
            alone = statistics.median(alones)  # (0.7, 0.6), (0.6, 0.75), (0.4, 0.55): off grid and simplex
            warm_rss = mem.rss()
            solo.context.close()
            print(f"# alone on the warm server: {' '.join(f'{x:.1f}' for x in alones)} s (median {alone:.1f})",
                  flush=True)

            # ---- N sessions, each its own weights, all pressing Evaluate at once ----
            pages = [open_page() for _ in range(args.sessions)]
            weights = [set_weights(page, (w, -4)) for page, w in zip(pages, warmth_moves)]
            print(f"# {args.sessions} sessions open at weights {weights}; all press Evaluate", flush=True)
            clicked, done = {}, {}
            burst = time.time()
            for i, page in enumerate(pages):
                page.get_by_role("button", name="Evaluate").click(no_wait_after=True)
                clicked[i] = time.time()
            while len(done) < len(pages) and time.time() < deadline:
                for i, page in enumerate(pages):
                    if i not in done and drawn(page, weights[i]):
                        done[i] = time.time()
                time.sleep(0.1)
            end = time.time()
            peak = mem.peak(burst, end)
            peak_warm = mem.peak(warm_at, burst)
            mem.stop()
            browser.close()
            # wait for the server to have written everything, then read the store
            ws = Workspace(tmp / "ws")
            live = ws.store.candidates()
            live = live[live["source"] == "live"]
            n_loads = len(loads.read_text().splitlines()) if loads.exists() else 0
        latencies = [done[i] - clicked[i] for i in sorted(done)]

    if len(done) < args.sessions:
        sys.exit(f"only {len(done)} of {args.sessions} sessions finished within --timeout {args.timeout:.0f} s")
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    mib = 2 ** 20
    print(f"# {args.sessions} sessions: all {len(done)} drew their point; {len(live)} live candidates stored "
          f"({1 + args.alone} alone + {args.sessions} concurrent expected); base model loaded {n_loads} time(s)")
    print(f"# latencies (s): {' '.join(f'{x:.1f}' for x in latencies)}; wall for all {end - burst:.1f} s; "
          f"whole bench {time.time() - started:.0f} s; load average now "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"# server memory (RSS, MiB): idle {idle / mib:.0f}, warm {warm_rss / mib:.0f} (peak {peak_warm / mib:.0f}),"
          f" peak with {args.sessions} sessions {peak / mib:.0f}")
    print(f"{'name':<44}{'ours':>10}{'baseline':>10}{'ratio':>8}")
    rows = [
        (f"latency p50, {args.sessions} at once vs alone (s)", p50, alone),
        (f"latency p95, {args.sessions} at once vs alone (s)", p95, alone),
        (f"throughput, {args.sessions} at once vs alone (pts/s)", args.sessions / (end - burst), 1 / alone),
        ("base model loads vs 1", n_loads, 1),
        (f"server peak RSS, {args.sessions} at once vs warm (MiB)", peak / mib, warm_rss / mib),
    ]
    for name, ours, base in rows:
        print(f"{name:<44}{ours:>10.2f}{base:>10.2f}{ours / base:>8.2f}")
    ok = n_loads == 1 and len(live) == args.sessions + 1 + args.alone
    print("# checks:", "all sessions complete, model loaded once, every point stored once" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
