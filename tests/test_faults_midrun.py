"""Faults in the middle of long work (issue 19 item 4), through `mva_core.cli.main` (the code path of
`python -m mva_core`) on tiny real models; docs/faults.md lists what each prints.

- A scorer that raises on its third call, i.e. on the third chunk of a sweep: a real `Scorer` subclass registered
  here (word count of the response), standing for a reward model whose server went away. The sweep stops with one
  line naming the scorer; the chunks before stay stored and scored, the third chunk's responses are stored; the
  rerun generates only what is missing and scores the rest.
- Out of memory in generation: a global torch forward pre-hook makes every embedding layer raise
  `torch.OutOfMemoryError` (or the CPU allocator's RuntimeError) for batches above 2 rows, as a GPU would. The
  rows of a generate call are halved until they fit and generation goes on; the user is told, and the responses
  equal those of a run made with 2 rows per call from the start (an independent run, no fault).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from mva_core import cli
from mva_core.errors import ResourceLimitError
from mva_core.generate import generate_responses
from mva_core.notices import notices_to
from mva_core.scorers import Scorer, get_scorer, register_scorer
from mva_core.sweep import Evaluator, evaluate_base
from mva_core.workspace import MANIFEST, Workspace
from tests.oom import cpu_oom, cuda_oom, memory_for_rows
from tests.tiny import make_tiny_workspace

FLAKY = "words-failing-third-call"
METHOD = "mva-no-hsic"


@register_scorer
class WordsFailingOnThirdCall(Scorer):
    """Words in the response; its third call raises, as a reward model behind a server that went away would."""

    name = FLAKY
    measures = "number of words of the response (a test scorer that fails on its third call)"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == 3:
            raise ConnectionError("reward server 10.0.0.7:8000 refused the connection\n(second line not shown)")
        return np.array([len(r.split()) for r in responses], dtype=np.float64)


def said(kind: str, err: str) -> list[str]:
    """The `kind: …` lines of stderr ("error", "warning"), cut from the progress bars around them."""
    return re.findall(rf"{kind}: [^\r\n\x1b]*", err)


def one_error_line(err: str) -> str:
    lines = said("error", err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_scorer_raising_on_the_third_chunk_stops_the_sweep_and_the_rerun_resumes(tmp_path, capsys):
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    manifest = json.loads((ws.root / MANIFEST).read_text())
    manifest["values"][1]["scorer"] = FLAKY  # brevity is measured by the flaky scorer
    (ws.root / MANIFEST).write_text(json.dumps(manifest))
    ws = Workspace(ws.root)
    evaluate_base(ws)  # the base model first, so the sweep's chunks are the scorer's calls 1, 2, 3, …
    get_scorer(FLAKY).calls = 0
    argv = ["sweep", "--workspace", str(ws.root), "--method", METHOD, "--grid", "0:1:0.5", "--chunk", "2"]

    # ---- 9 candidates in chunks of 2: the third chunk's scoring fails ----
    assert cli.main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == ("error: scorer 'words-failing-third-call' failed on 4 responses of 2 candidates (ConnectionError: "
                    "reward server 10.0.0.7:8000 refused the connection); their responses are stored and finished "
                    "chunks kept: fix the scorer (or the value's scorer in workspace.json) and run again to resume")
    table = ws.store.candidates()
    swept = table[table["method"] == METHOD]
    assert len(swept) == 6  # three chunks' responses are stored
    ids = sorted(int(i) for i in swept["id"])
    assert len(ws.store.scored(ids, FLAKY)) == 4 and len(ws.store.scored(ids, "warmth")) == 6
    runs = ws.store.runs()
    assert list(runs["status"]) == ["stopped"] and "ScorerFailedError" in json.loads(runs["log"].iloc[0])["error"]

    # ---- The rerun generates only the last two chunks and scores the third chunk's stored responses ----
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"9 candidates of {METHOD} in {ws.root}: 3 generated, 6 answered from the store" in out
    table = ws.store.candidates()
    swept = table[table["method"] == METHOD]
    assert len(swept) == 9 and swept["key"].is_unique
    ids = sorted(int(i) for i in swept["id"])
    assert len(ws.store.scored(ids, FLAKY)) == 9 and len(ws.store.scored(ids, "warmth")) == 9
    rows = ws.store.responses(ids)
    words = rows.groupby("candidate_id")["response"].apply(lambda r: np.mean([len(x.split()) for x in r]))
    stored = swept.set_index("id")[f"s_{FLAKY}"]
    assert np.allclose(stored.loc[words.index].to_numpy(), words.to_numpy())  # word counts, computed by hand
    runs = ws.store.runs()
    assert list(runs["status"]) == ["done"]  # the stopped run was taken over, not duplicated


# ---- Out of memory in generation (tests/oom.py) ----

@pytest.fixture(scope="module")
def tiny_ws(tmp_path_factory):
    return make_tiny_workspace(tmp_path_factory.mktemp("oom_ws"), n_prompts=3)


@pytest.mark.parametrize("error", [cuda_oom, cpu_oom], ids=["torch.OutOfMemoryError", "cpu-allocator"])
@pytest.mark.slow
def test_out_of_memory_halves_the_rows_and_goes_on(tiny_ws, error):
    ev = Evaluator(tiny_ws, METHOD)
    W = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.9]])  # 4 candidates x 3 prompts = 12 rows
    assert ev.decoding.batch_size == 8  # calls of 8 and 4 rows
    # independent reference: no fault, 2 rows per call from the start (the halves of the halves of 8 are those)
    reference = generate_responses(ev.model, ev.base.tokenizer, ev.prompts, W,
                                   replace(ev.decoding, batch_size=2))
    told: list[str] = []
    with memory_for_rows(2, error) as passed, notices_to(told.append):
        got = ev.generate(W)  # [candidate][prompt][sample]; greedy: one sample
    assert [[samples[0] for samples in cand] for cand in got] == reference
    assert passed and max(passed) == 2
    reason = str(error(8)).splitlines()[0]
    assert told == [
        f"out of memory generating 8 rows in one call ({reason}); going on with 4 rows per call (set "
        "decoding.batch_size to 4 in workspace.json to start there)",
        f"out of memory generating 4 rows in one call ({str(error(4)).splitlines()[0]}); going on with 2 rows per "
        "call (set decoding.batch_size to 2 in workspace.json to start there)"]


@pytest.mark.slow
def test_the_next_call_starts_at_the_rows_that_fit_and_tells_nothing_again(tiny_ws):
    """A sweep's next chunk on the same model does not run out of memory (and say so) again."""
    ev = Evaluator(tiny_ws, METHOD)
    W = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.9]])
    told: list[str] = []
    with memory_for_rows(2, cuda_oom) as passed, notices_to(told.append):
        first = ev.generate(W[:2])  # 6 rows in one call fail, 3 fail, then 1 per call: two notices
        n_told = len(told)
        passed.clear()
        second = ev.generate(W[2:])
    assert n_told == 2 and len(told) == n_told  # the second call told nothing
    assert passed and max(passed) <= 2  # and began at the rows that fit
    assert Evaluator(tiny_ws, METHOD).generate(W[:2]) == first  # a fresh evaluator (no fault) agrees
    assert len(second) == 2


@pytest.mark.slow
def test_out_of_memory_in_a_cli_sweep_is_told_and_the_sweep_finishes(tmp_path, capsys):
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=3)
    with memory_for_rows(4, cuda_oom):
        code = cli.main(["sweep", "--workspace", str(ws.root), "--method", METHOD, "--grid", "0:1:1", "--chunk", "4"])
    err = capsys.readouterr().err
    assert code == 0, err
    warnings = said("warning", err)
    assert warnings == ["warning: out of memory generating 8 rows in one call (CUDA out of memory. Tried to allocate "
                        "512 MiB (test: 8 rows)); going on with 4 rows per call (set decoding.batch_size to 4 in "
                        "workspace.json to start there)"]
    table = ws.store.candidates()
    assert (table["method"] == METHOD).sum() == 4 and table[["s_warmth", "s_brevity"]].notna().all().all()


def test_out_of_memory_on_a_single_row_stops_with_one_line(tmp_path, capsys):
    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=1)
    with memory_for_rows(0, cuda_oom):
        with pytest.raises(ResourceLimitError, match=r"out of memory generating a single row \(\d+ prompt tokens \+ 8 "
                                                     r"new\): CUDA out of memory"):
            Evaluator(ws, METHOD).generate(np.array([[0.5, 0.5]]))
        code = cli.main(["sweep", "--workspace", str(ws.root), "--method", METHOD, "--grid", "0:1:1"])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert re.fullmatch(r"error: out of memory generating a single row \(\d+ prompt tokens \+ 8 new\): CUDA out of "
                        r"memory\. Tried to allocate 64 MiB \(test: 1 rows\); lower decoding\.max_new_tokens in "
                        r"workspace\.json or use a smaller base model", line), line


def test_other_runtime_errors_are_not_taken_for_memory(tiny_ws):
    """A bug (here a shape error) keeps its traceback: it is neither halved nor turned into a message."""
    def shape_error(rows: int) -> Exception:
        return RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x32 and 48x32)")

    told: list[str] = []
    with memory_for_rows(2, shape_error), notices_to(told.append):
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            Evaluator(tiny_ws, METHOD).generate(np.array([[0.5, 0.5]] * 4))
    assert told == []


# ---- The app tells the same ----

@pytest.mark.slow
def test_app_shows_the_failing_scorer_then_resumes_and_tells_of_out_of_memory(tmp_path, monkeypatch):
    from tests.apptest import open_page

    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    manifest = json.loads((ws.root / MANIFEST).read_text())
    manifest["values"][1]["scorer"] = FLAKY
    (ws.root / MANIFEST).write_text(json.dumps(manifest))
    evaluate_base(Workspace(ws.root))
    get_scorer(FLAKY).calls = 0
    at = open_page(monkeypatch, ws.root, "pages/sweep.py")
    at.number_input(key="sweep_step").set_value(0.5).run()
    at.number_input(key="sweep_chunk").set_value(2).run()
    at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [
        "The sweep stopped: scorer 'words-failing-third-call' failed on 4 responses of 2 candidates (ConnectionError: "
        "reward server 10.0.0.7:8000 refused the connection); their responses are stored and finished chunks kept: "
        "fix the scorer (or the value's scorer in workspace.json) and run again to resume. Finished chunks are "
        "stored; press Resume to continue."]
    assert len(Workspace(ws.root).store.candidates(METHOD)) == 6

    # Resume, now short of memory: 2 candidates x 2 prompts = 4 rows per call do not fit, 2 do
    at.run()
    assert at.button(key="sweep_start").label.startswith("Resume")
    with memory_for_rows(2, cuda_oom):
        at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception
    assert at.session_state["sweep_last"]["generated"] == 3
    assert [w.value for w in at.warning] == [
        "out of memory generating 4 rows in one call (CUDA out of memory. Tried to allocate 256 MiB (test: 4 rows)); "
        "going on with 2 rows per call (set decoding.batch_size to 2 in workspace.json to start there)"]
    cands = Workspace(ws.root).store.candidates(METHOD)
    assert len(cands) == 9 and cands[["s_warmth", f"s_{FLAKY}"]].notna().all().all()


def test_explore_tells_of_out_of_memory(tmp_path, monkeypatch):
    from tests.apptest import open_page

    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=4)
    at = open_page(monkeypatch, ws.root)
    at.slider(key="w_warmth").set_value(0.9).run()
    with memory_for_rows(2, cuda_oom):
        at.button(key="explore_evaluate").click().run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [
        "out of memory generating 4 rows in one call (CUDA out of memory. Tried to allocate 256 MiB (test: 4 rows)); "
        "going on with 2 rows per call (set decoding.batch_size to 2 in workspace.json to start there)"]
    assert at.session_state["explore_candidate"] in set(Workspace(ws.root).store.candidates(METHOD)["id"])


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_a_search_stopped_by_a_scorer_shows_its_front_and_hypervolume_so_far(tmp_path, monkeypatch):
    """The Sweep page's search draws its hypervolume curve as batches are stored: stopped in its second batch by a
    failing scorer, the page still shows the curve of the seed design (the store's) with the error."""
    from mva_core.search import stored_history
    from tests.apptest import open_page, plotly_array

    ws = make_tiny_workspace(tmp_path / "ws", n_prompts=2)
    manifest = json.loads((ws.root / MANIFEST).read_text())
    manifest["values"][1]["scorer"] = FLAKY
    (ws.root / MANIFEST).write_text(json.dumps(manifest))
    evaluate_base(Workspace(ws.root))  # the scorer's first call
    get_scorer(FLAKY).calls = 1
    at = open_page(monkeypatch, ws.root, "pages/sweep.py")
    at.selectbox(key="sweep_method").set_value(METHOD).run()
    at.number_input(key="search_budget").set_value(8)
    at.number_input(key="search_batch").set_value(4).run()  # batches of 4 (the default is 1)
    at.button(key="search_start").click().run()  # the seed design's 4 points scored (call 2); the next batch's fail
    assert not at.exception, at.exception
    assert [e.value for e in at.error][0].startswith("The search stopped: scorer 'words-failing-third-call' failed")
    live = [c for c in at.get("plotly_chart") if "-search_live_" in c.proto.id]
    assert live, [c.proto.id for c in at.get("plotly_chart")]
    hv, _ = stored_history(Workspace(ws.root), METHOD)  # 8 stored: the failed batch's 4 wait unscored
    shown = plotly_array(json.loads(live[-1].proto.spec)["data"][0]["y"]).tolist()
    assert len(hv) == 8 and shown == pytest.approx(hv[:4])
