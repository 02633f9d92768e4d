"""The shipped demo served: a request at a stored front candidate's weights, with the workspace's decoding (greedy,
48 new tokens, no system prompt: the defaults), returns the response the sweep stored for that prompt."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.test_serve import client, free_port, start_server, stop, wait_ready

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo"


@pytest.mark.slow
def test_demo_candidate_returns_stored_responses():
    from mva_core.results import load_table
    from mva_core.workspace import Workspace

    ws = Workspace(DEMO, read_only=True)
    front = load_table(ws, ["mva"]).for_method("mva").without_base().front()
    cid = int(front.ids()[len(front) // 2])  # a front point between the two ends
    stored = ws.store.responses([cid]).head(3)
    port = free_port()
    proc = start_server(DEMO, port, method="mva")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url, timeout=300)
        api, got = client(url, timeout=1200), {}  # 2 shared CPU cores: minutes under load

        def ask(k: int, prompt: str) -> None:  # at once: they decode in one batch
            got[k] = api.chat.completions.create(model=f"candidate-{cid}",
                                                 messages=[{"role": "user", "content": prompt}])

        threads = [threading.Thread(target=ask, args=(k, p)) for k, p in enumerate(stored["prompt"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == len(stored)
        for k, want in enumerate(stored["response"]):
            assert got[k].choices[0].message.content.strip() == want
    finally:
        stop(proc)
