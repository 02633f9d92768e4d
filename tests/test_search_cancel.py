"""The adaptive search stops when asked and says how far it got; a search whose whole budget is stored records
nothing (issue 31 item 3)."""

import io
import json
import threading
from contextlib import redirect_stdout

import pytest

from mva_core.cli import main
from mva_core.generate import Cancelled
from mva_core.search import search_method
from mva_core.sweep import Evaluator, sweep
from mva_core.workspace import Workspace
from tests.apptest import open_page
from tests.tiny import make_tiny_workspace


def test_cancel_stops_within_one_decoding_step_and_resume_spends_what_is_left(tmp_path):
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    cancel = threading.Event()
    after = {"tokens": 0, "armed": False}

    def on_progress(stage, done, total):
        if stage == "evaluations" and done > 0:
            after["armed"] = True  # the seed design is stored: cancel during the next batch's generation
        elif stage == "generate" and after["armed"]:
            if cancel.is_set():
                after["tokens"] += 1
            cancel.set()

    with pytest.raises(Cancelled, match=r"search stopped after 4 of 9 evaluations; resume continues from there"):
        search_method(ws, "mva-no-hsic", budget=9, batch=3, progress=on_progress, cancel=cancel)
    assert after["tokens"] <= 1  # decoding stopped at the step after the one that saw the cancel
    runs = ws.store.runs()
    assert runs["status"].tolist() == ["stopped"] and json.loads(runs["log"].iloc[0])["reason"] == "cancelled"
    assert len(ws.store.candidates("mva-no-hsic")) == 4  # the seed design (n + 2 = 4 points) kept, nothing after
    result, run_id = search_method(Workspace(ws.root), "mva-no-hsic", budget=9, batch=3)
    assert run_id == int(runs["id"].iloc[0]) and len(Workspace(ws.root).store.candidates("mva-no-hsic")) == 9
    # the same search again: its whole budget is stored, so nothing is evaluated and no run is recorded
    again, none = search_method(Workspace(ws.root), "mva-no-hsic", budget=9, batch=3)
    assert none is None and "already stored" in again.nothing_new and f"run #{run_id}" in again.nothing_new
    assert len(again.weights) == 9
    assert len(Workspace(ws.root).store.runs()) == 1 and len(Workspace(ws.root).store.candidates("mva-no-hsic")) == 9


def test_a_search_of_a_lattice_already_swept_records_nothing(tmp_path):
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    sweep(Evaluator(ws, "mva-no-hsic"), [[a, b] for a in (0, 0.5, 1) for b in (0, 0.5, 1)])  # the 9-point lattice
    runs_before, cands_before = len(ws.store.runs()), len(ws.store.candidates())
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["search", "--workspace", str(ws.root), "--method", "mva-no-hsic", "--budget", "5",
                     "--step", "0.5"]) == 0
    assert "nothing to search: every one of the 9 lattice points" in out.getvalue()
    ws = Workspace(ws.root)
    assert len(ws.store.runs()) == runs_before and len(ws.store.candidates()) == cands_before


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_sweep_page_search_has_cancel_and_says_where_a_stopped_search_resumes(tmp_path, monkeypatch):
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    cancel = threading.Event()

    def stop_after_seed(stage, done, total):
        if stage == "evaluations" and done > 0:
            cancel.set()

    with pytest.raises(Cancelled):
        search_method(ws, "mva-no-hsic", budget=6, step=0.25, batch=4, progress=stop_after_seed, cancel=cancel)
    at = open_page(monkeypatch, ws.root, "pages/sweep.py")
    at.selectbox(key="sweep_method").set_value("mva-no-hsic").run()
    assert any("stopped by Cancel after 4 of 6 evaluations; resume continues from there" in w.value
               for w in at.warning), [w.value for w in at.warning]
    at.number_input(key="search_budget").set_value(6)
    at.number_input(key="search_batch").set_value(4).run()
    at.button(key="search_start").click().run()
    assert not at.exception, at.exception
    assert not any("stopped" in w.value for w in at.warning)  # resumed and done
    runs = Workspace(ws.root).store.runs()
    assert runs["status"].tolist() == ["done"] and len(Workspace(ws.root).store.candidates("mva-no-hsic")) == 6
    # pressed again with the same settings: nothing to do, said so, nothing recorded
    at.button(key="search_start").click().run()
    assert not at.exception, at.exception
    assert any("Nothing to search" in i.value and "already stored" in i.value for i in at.info)
    assert len(Workspace(ws.root).store.runs()) == 1


@pytest.mark.slow
def test_sweep_page_search_can_stop_early_and_says_why_it_ended(tmp_path, monkeypatch):
    """The Sweep page's early-stop box (issue 29 item 5) reaches the search: the run's config records it, and the
    page shows the stored stop reason with the evaluations left unspent."""
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    at = open_page(monkeypatch, ws.root, "pages/sweep.py")
    at.selectbox(key="sweep_method").set_value("mva-no-hsic").run()
    assert at.checkbox(key="search_early_stop").value is False  # off by default: the budget is what was asked
    at.number_input(key="search_budget").set_value(6)
    at.checkbox(key="search_early_stop").check().run()
    at.button(key="search_start").click().run()
    assert not at.exception, at.exception
    runs = Workspace(ws.root).store.runs().query("kind == 'search'")
    config, log = json.loads(runs["config"].iloc[-1]), json.loads(runs["log"].iloc[-1])
    assert config["early_stop"] is True
    shown = " ".join(c.value for c in at.caption)
    assert f"ended: {log['stop_reason']}" in shown
    assert (f"({log['saved']} evaluations of its budget left unspent)" in shown) == bool(log["saved"])
