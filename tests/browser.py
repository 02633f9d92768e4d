"""Shared real-browser plumbing: `streamlit run app.py` as a subprocess on a free port, and headless Chromium
(Debian's, driven by Playwright). Used by the browser tests and bench/concurrent_sessions.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(workspace: Path, log: Path, address: str = "127.0.0.1", env: dict[str, str] | None = None,
              timeout: float = 90.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run app.py` on `workspace`, bound to `address`, its output in `log`; yields (url on loopback,
    process) once its health check answers, and stops it on exit. `env` adds to (or, with "", removes from) the
    environment."""
    port = free_port()
    full = {**os.environ, "MVA_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1", **(env or {})}
    full = {k: v for k, v in full.items() if v != ""}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
             "--server.address", address, "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start (exit {proc.poll()}): {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
