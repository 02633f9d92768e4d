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
from typing import Iterator, Sequence

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
              timeout: float = 90.0, launcher: Sequence[str] = (sys.executable, "-m", "streamlit"),
              ) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run app.py` on `workspace`, bound to `address`, its output in `log`; yields (url on loopback,
    process) once its health check answers, and stops it on exit. `env` adds to (or, with "", removes from) the
    environment; `launcher` is what runs Streamlit's command line (a wrapper that measures the server)."""
    port = free_port()
    full = {**os.environ, "MVA_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1", **(env or {})}
    full = {k: v for k, v in full.items() if v != ""}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*launcher, "run", "app.py", "--server.headless", "true", "--server.port", str(port),
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


def your_point(page) -> dict | None:
    """The Explore chart's 'your point' marker read from the live DOM ({x, y, hover}); None when not drawn, and
    {"count": -1} when the chart is not there yet."""
    return page.evaluate("""() => {
        const plot = document.querySelector('.js-plotly-plot');
        if (!plot || !plot._fullData) return {count: -1};
        const t = plot._fullData.find(d => d.name === 'your point');  // _fullData: arrays decoded
        if (!t || !t.x.length) return null;
        return {count: t.x.length, x: t.x[0], y: t.y[0], hover: t.hovertext ? t.hovertext[0] : ''};
    }""")


def your_point_count(page) -> int:
    """Number of 'your point' markers in the rendered Plotly figure (-1: no chart yet)."""
    point = your_point(page)
    return 0 if point is None else point["count"]


def set_weights(page, moves: tuple[int, ...]) -> tuple[float, ...]:
    """Move each weight slider by `moves` steps of 0.05 with the keyboard and return the weights set; a key press
    lost while the page reruns (the previous slider's change) is made up until the slider shows the wanted value."""
    thumbs = page.locator('[data-testid="stSlider"] input[type="range"]')
    wants = [float(thumbs.nth(i).input_value()) + 0.05 * n for i, n in enumerate(moves)]
    for i, (n, want) in enumerate(zip(moves, wants)):
        thumbs.nth(i).focus()
        for _ in range(abs(n)):
            page.keyboard.press("ArrowRight" if n > 0 else "ArrowLeft")
        for _ in range(40):
            page.wait_for_timeout(500)  # the rerun the slider triggered settles
            now = float(thumbs.nth(i).input_value())
            if abs(now - want) < 1e-6:
                break
            thumbs.nth(i).focus()
            page.keyboard.press("ArrowRight" if now < want else "ArrowLeft")
    got = tuple(round(float(thumbs.nth(i).input_value()), 6) for i in range(len(moves)))
    assert got == tuple(round(w, 6) for w in wants), (got, wants)
    return got
