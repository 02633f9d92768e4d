"""Two app sessions evaluating different weights at the same time (issue #6, item 3).

Two `AppTest` sessions of the Explore page run from two threads in one process, so they share the
`st.cache_resource` evaluator (one base model, one set of value vectors) exactly as two browser tabs on one
`streamlit run` server do. A barrier inside `row_weights` holds each session after it has set its weights until
the other has set its own: a per-session value kept anywhere shared (the model, a module global, the adapter
scaling) would then be read by the wrong session. Each session must end with its own candidate, whose responses
equal the merged model's at its weights (an independent path, no per-row weights at all), and the shared base
model and value vectors must hash the same before and after, and equal the weights on disk.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

import mva_core.generate
import mva_core.live
from mva_core.compose import merge
from mva_core.generate import generate_responses
from mva_core.models import load_base
from mva_core.sweep import Evaluator
from mva_core.vectors import load_value_vector
from mva_core.workspace import Workspace
from tests.apptest import APP, plotly_array
from tests.tiny import make_tiny_workspace

METHOD = "mva-no-hsic"
# Two points that give the tiny model different responses and different brevity scores (checked below).
WEIGHTS = {"a": (0.9, 0.2), "b": (0.2, 0.9)}


def tensors_hash(named) -> str:
    h = hashlib.sha256()
    for name, t in named:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def shared_state_hashes(ev: Evaluator) -> dict[str, str]:
    """Hashes of everything the sessions share: base weights, value vectors, the weight-batched view's factors."""
    vectors = [(f"{v.value}.{m}.{k}", t) for v in ev.vectors for m, layer in sorted(v.layers.items())
               for k, t in (("A", layer.A), ("B", layer.B), ("scaling", torch.tensor(layer.scaling)))]
    view = ev.model.model
    return {
        "base": tensors_hash(sorted(ev.base.model.state_dict().items())),
        "vectors": tensors_hash(vectors),
        "view": tensors_hash(sorted([*view.named_parameters(), *view.named_buffers()])),
    }


def brevity(responses: list[str]) -> float:
    """The brevity scorer computed by hand: mean of 1 / (1 + words / 20)."""
    return float(np.mean([1.0 / (1.0 + len(r.split()) / 20.0) for r in responses]))


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("concurrent_ws")
    make_tiny_workspace(root)
    return root


@pytest.fixture(scope="module")
def reference(ws_root) -> dict[str, list[str]]:
    """Responses per session weights from a merged model (W + Σ w_i ΔW_i in the weights), loaded afresh."""
    ws = Workspace(ws_root)
    base = load_base(ws.manifest.base)
    vectors = [load_value_vector(ws_root / "vectors" / METHOD / v) for v in ws.value_names]
    out = {}
    for name, w in WEIGHTS.items():
        out[name] = generate_responses(merge(base.model, vectors, w), base.tokenizer, ws.prompts(), None,
                                       ws.manifest.decoding)[0]
    return out


@pytest.mark.slow
def test_two_sessions_evaluate_at_once_and_share_an_unchanged_model(ws_root, reference, monkeypatch):
    # the two weight points are distinguishable on this model: a leak would show in responses and scores
    assert reference["a"] != reference["b"]
    assert brevity(reference["a"]) != pytest.approx(brevity(reference["b"]), abs=1e-6)

    # AppTest swaps `config.get_option` per run with unittest.mock.patch; two overlapping runs restore it in the
    # wrong order, so put the real one back at the end of this test.
    monkeypatch.setattr(st_config, "get_option", st_config.get_option)
    monkeypatch.setenv("MVA_WORKSPACE", str(ws_root))

    # ---- Both sessions open the page (nothing evaluated yet) ----
    sessions = {name: AppTest.from_file(APP, default_timeout=300).run() for name in WEIGHTS}
    for name, at in sessions.items():
        assert not at.exception, at.exception
        assert at.selectbox(key="explore_method").value == METHOD
        at.slider(key="w_warmth").set_value(WEIGHTS[name][0])
        at.slider(key="w_brevity").set_value(WEIGHTS[name][1])

    # The evaluator both sessions will get from st.cache_resource (the key is (workspace, method)).
    from pages.shared import get_evaluator, get_workspace

    root_key = str(get_workspace(str(ws_root)).root)
    shared = get_evaluator(root_key, METHOD)
    before = shared_state_hashes(shared)
    on_disk = load_file(str(ws_root / "base" / "model.safetensors"))
    state = shared.base.model.state_dict()
    assert set(on_disk) <= set(state) and all(torch.equal(state[k], t) for k, t in on_disk.items())

    # ---- Record who evaluated what, when; hold each session until both have set their weights ----
    calls: list[dict] = []
    lock = threading.Lock()
    orig_generate_part = mva_core.live._generate_part  # Explore's any-time evaluation generates through it

    def recording_generate_part(ev, weights, *args, **kwargs):
        start = time.perf_counter()
        try:
            return orig_generate_part(ev, weights, *args, **kwargs)
        finally:
            with lock:
                calls.append(dict(thread=threading.get_ident(), evaluator=ev, start=start, end=time.perf_counter(),
                                  weights=tuple(float(x) for x in np.ravel(weights))))

    barrier = threading.Barrier(2, timeout=120)
    waited: set[int] = set()
    orig_row_weights = mva_core.generate.row_weights

    @contextlib.contextmanager
    def synced_row_weights(w):
        with orig_row_weights(w):
            if threading.get_ident() not in waited:  # each session's first batch: wait for the other one
                waited.add(threading.get_ident())
                barrier.wait()  # BrokenBarrierError (a script exception) if the two never overlap
            yield

    monkeypatch.setattr(mva_core.live, "_generate_part", recording_generate_part)
    monkeypatch.setattr(mva_core.generate, "row_weights", synced_row_weights)
    # Streamlit parses the page script on every run; two threads parsing at once can hit CPython 3.11's AST
    # recursion-depth race ("AST constructor recursion depth mismatch", python/cpython#106905). Parsing is
    # serialised here; the evaluations themselves still overlap (the barrier above checks it).
    compile_lock, plain_compile = threading.Lock(), builtins.compile

    def serial_compile(*args, **kwargs):
        with compile_lock:
            return plain_compile(*args, **kwargs)

    monkeypatch.setattr(builtins, "compile", serial_compile)

    # ---- Both sessions press Evaluate at once ----
    errors: dict[str, BaseException] = {}

    def press(name: str) -> None:
        try:
            sessions[name].button(key="explore_evaluate").click().run()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors[name] = exc

    threads = [threading.Thread(target=press, args=(name,)) for name in WEIGHTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=400)
    assert not any(t.is_alive() for t in threads), "a session never finished"
    assert not errors, errors
    for at in sessions.values():
        assert not at.exception, at.exception

    # they really ran at the same time, in two threads, on the one cached evaluator
    assert len(calls) == 2 and len({c["thread"] for c in calls}) == 2
    assert all(c["evaluator"] is shared for c in calls)
    assert max(c["start"] for c in calls) < min(c["end"] for c in calls), calls
    assert sorted(c["weights"] for c in calls) == sorted(WEIGHTS.values())

    # ---- The cached model was not changed by either session ----
    assert shared_state_hashes(shared) == before
    assert get_evaluator(root_key, METHOD) is shared
    state = shared.base.model.state_dict()
    assert all(torch.equal(state[k], t) for k, t in on_disk.items())

    # ---- The store holds exactly the two candidates, each with its own weights and responses (and the base
    # model's, which Explore evaluates first when it is missing: the any-time point is paired with it) ----
    ws = Workspace(ws_root)
    table = ws.store.candidates()
    assert sorted(table["source"]) == ["base", "live", "live"]
    table = table[table["source"] == "live"]
    by_weights = {tuple(r.weights): int(r.id) for r in table.itertuples()}
    assert set(by_weights) == set(WEIGHTS.values())
    for name, w in WEIGHTS.items():
        cid = by_weights[w]
        assert ws.store.responses([cid])["response"].tolist() == reference[name], name
        row = table[table["id"] == cid].iloc[0]
        assert row["s_brevity"] == pytest.approx(brevity(reference[name]), abs=1e-12)

    # ---- Each session shows its own point, scores and responses (also after the other's result landed) ----
    for name, at in sessions.items():
        cid = by_weights[WEIGHTS[name]]
        assert at.session_state["explore_candidate"] == cid, name
        at.run()
        assert not at.exception, at.exception
        assert at.session_state["explore_candidate"] == cid, name
        assert any(h.value == f"Your candidate #{cid}" for h in at.subheader), name
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)
        mine = next(t for t in spec["data"] if t.get("name") == "your point")
        assert len(plotly_array(mine["x"])) == 1 and mine["hovertext"][0].startswith(f"candidate {cid}<br>")
        plotted = [i for t in spec["data"] if t.get("name") in ("dominated", "Pareto front")
                   for i in plotly_array(t["customdata"]).tolist()]
        assert sorted(plotted) == sorted(by_weights.values())  # both sessions' points, one star each
        assert next(m for m in at.metric if m.label == "brevity").value == f"{brevity(reference[name]):.3f}"
        shown = next(d.value for d in at.dataframe if "response" in d.value.columns)
        assert shown["response"].tolist() == reference[name], name
