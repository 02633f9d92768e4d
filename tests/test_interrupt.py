"""Interruptions and concurrency through the real CLI: a `sweep` killed with SIGKILL mid-run resumes without
lost or duplicated candidates, and two `sweep` processes on one workspace at once leave a consistent store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


import pytest

from tests.tiny import make_tiny_workspace

ROOT = Path(__file__).resolve().parent.parent
GRID = "0:1:0.25"  # 25 candidates for two values


def sweep_cmd(ws: Path, grid: str = GRID, chunk: int = 2) -> list[str]:
    return [sys.executable, "-m", "mva_core", "sweep", "--method", "mva-no-hsic", "--grid", grid, "--chunk", str(chunk),
            "--workspace", str(ws)]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def count(ws: Path) -> int:
    try:
        with sqlite3.connect(ws / "mva.sqlite", timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM candidates WHERE method != 'base'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def check_store(ws: Path, expected: int) -> None:
    with sqlite3.connect(ws / "mva.sqlite") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = [k for (k,) in con.execute("SELECT key FROM candidates")]
        assert len(keys) == len(set(keys))
        assert con.execute("SELECT COUNT(*) FROM candidates WHERE method != 'base'").fetchone()[0] == expected
        # every candidate has all its responses (a candidate and its responses are one transaction)
        n_prompts = con.execute("SELECT COUNT(*) FROM responses WHERE candidate_id = 1").fetchone()[0]
        per = [n for (n,) in con.execute("SELECT COUNT(*) FROM responses GROUP BY candidate_id")]
        assert n_prompts > 0 and set(per) == {n_prompts}


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume(tmp_path):
    ws = tmp_path / "ws"
    make_tiny_workspace(ws)
    proc = subprocess.Popen(sweep_cmd(ws), cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and count(ws) < 4 and proc.poll() is None:
        time.sleep(0.05)
    stored = count(ws)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < stored < 25, f"kill came too late or too early ({stored} stored)"
    stored = count(ws)  # what survived the kill
    check_store(ws, stored)
    again = subprocess.run(sweep_cmd(ws), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    check_store(ws, 25)
    assert f"{25 - stored} generated, {stored} answered from the store" in again.stdout, again.stdout


@pytest.mark.slow
def test_two_concurrent_sweeps_share_one_store(tmp_path):
    ws = tmp_path / "ws"
    make_tiny_workspace(ws)
    # overlapping grids: step 0.25 (25 points) and step 0.5 (9 points, all of them in the first)
    procs = [subprocess.Popen(sweep_cmd(ws, g, chunk=3), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for g in (GRID, "0:1:0.5")]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    check_store(ws, 25)


@pytest.mark.slow
def test_sigkill_mid_search_then_resume(tmp_path):
    """`search` killed with SIGKILL as its first candidates are stored (typically before they are scored: that state
    once made the rerun fail, its surrogate seeing no finite point): the rerun adopts the run, scores and keeps what
    was stored and spends only the rest of the budget (no duplicates, every candidate complete)."""
    ws = tmp_path / "ws"
    make_tiny_workspace(ws)
    cmd = [sys.executable, "-m", "mva_core", "search", "--method", "mva-no-hsic", "--budget", "9", "--batch", "3",
           "--workspace", str(ws)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and count(ws) < 1 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = count(ws)
    assert 1 <= stored < 9, f"kill came too late or too early ({stored} stored)"
    check_store(ws, stored)
    again = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    check_store(ws, 9)
    with sqlite3.connect(ws / "mva.sqlite") as con:
        runs = con.execute("SELECT id, status FROM runs WHERE kind = 'search'").fetchall()
        owners = {r for (r,) in con.execute("SELECT DISTINCT run_id FROM candidates WHERE method != 'base'")}
    assert [s for _, s in runs] == ["done"] and owners == {runs[0][0]}  # the killed run was adopted, not duplicated
