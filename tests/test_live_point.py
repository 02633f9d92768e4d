"""Any-time evaluation of an off-grid point (issue 31 item 1): the point after the first batch of prompts with its
bootstrap interval, tightening batch by batch, stored when all prompts are done; stopped early it stays partial."""

import threading

import numpy as np
import pytest

from mva_core.config import DecodingConfig
from mva_core.data import write_jsonl
from mva_core.generate import Cancelled
from mva_core.live import evaluate_anytime, paired_z
from mva_core.metrics import prompt_rewards
from mva_core.results import load_table
from mva_core.sweep import Evaluator
from mva_core.workspace import Workspace
from tests.apptest import open_page, plotly_array
from tests.tiny import make_tiny_workspace

N_PROMPTS = 16
# sampled decoding: the tiny model's rewards then vary from prompt to prompt (greedy, its base std is ~0)
DECODING = DecodingConfig(max_new_tokens=10, batch_size=16, do_sample=True, temperature=1.0)


def live_workspace(root) -> Workspace:
    make_tiny_workspace(root, n_prompts=4, scorers=("civility", "brevity"), decoding=DECODING)
    write_jsonl(root / "prompts" / "validation.jsonl",
                [{"prompt": f"Question {i}: tell me something about topic {i}, please."} for i in range(N_PROMPTS)])
    return Workspace(root)


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("livews")
    live_workspace(root)
    return root


def test_paired_z_by_hand():
    base_all = np.array([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0], [2.0, 2.0]])  # mean (2, 2), population std (√.5, √2)
    cand = np.array([[2.0, 1.0], [3.0, 5.0]])  # on prompts 0 and 1
    z, low, high = paired_z(cand, base_all[:2], base_all, n_resamples=2000)
    # paired differences (1, 1) and (0, 3) in std units: z = mean = (0.5/√.5, 2/√2)
    assert z == pytest.approx([0.5 / np.sqrt(0.5), 2.0 / np.sqrt(2.0)])
    # two prompts: a resample's mean is one difference or their mean, so the interval spans the two differences
    assert low == pytest.approx([0.0, 1.0 / np.sqrt(2.0)]) and high == pytest.approx([1.0 / np.sqrt(0.5), 3.0 / np.sqrt(2.0)])
    # every prompt done: the estimate is the table's z, (mean cand − mean base) / std base
    cand_all = np.array([[2.0, 1.0], [3.0, 5.0], [1.0, 4.0], [2.0, 2.0]])
    z_all, _, _ = paired_z(cand_all, base_all, base_all)
    assert z_all == pytest.approx((cand_all.mean(0) - base_all.mean(0)) / base_all.std(0))


def test_anytime_point_tightens_and_the_final_one_is_the_stored_candidate(ws_root):
    ws = Workspace(ws_root)
    ev = Evaluator(ws, "mva-no-hsic")
    points = []
    final = evaluate_anytime(ev, [0.8, 0.3], prompts_per_batch=4, on_point=points.append)
    assert [p.n_done for p in points] == [4, 8, 12, 16] and [p.partial for p in points] == [True] * 3 + [False]
    assert points[0].tokens_per_s is not None and points[0].eta_s > 0  # measured after the first batch
    # the first estimate, by hand from the stored per-prompt rewards of the prompts it had (the seeded order)
    first = np.random.default_rng(0).permutation(N_PROMPTS)[:4]
    R = prompt_rewards(ws, [final.candidate_id])[0]
    base = load_table(ws).base_id()
    B = prompt_rewards(ws, [base])[0]
    assert points[0].z == pytest.approx(((R[first] - B[first]) / B.std(axis=0)).mean(axis=0))
    # it tightens: the final interval (16 prompts) is narrower than the first (4) on every value
    assert (final.width < points[0].width).all()
    # stored once, with the z-scores of the candidate table
    row = load_table(ws).frame.set_index("id").loc[final.candidate_id]
    assert final.z == pytest.approx([row["z_warmth"], row["z_brevity"]])
    stored = ws.store.candidates("mva-no-hsic")
    assert stored["source"].tolist() == ["live"] and len(stored) == 1
    # again: answered from the store at once, one point
    again = []
    assert evaluate_anytime(ev, [0.8, 0.3], on_point=again.append).candidate_id == final.candidate_id
    assert len(again) == 1 and not again[0].partial


def test_stopped_early_the_point_stays_partial_and_nothing_is_stored(tmp_path):
    ws = live_workspace(tmp_path / "ws")
    ev = Evaluator(ws, "mva-no-hsic")
    cancel, points = threading.Event(), []

    def stop_after_first(point):
        points.append(point)
        cancel.set()

    with pytest.raises(Cancelled):
        evaluate_anytime(ev, [0.2, 0.9], prompts_per_batch=4, on_point=stop_after_first, cancel=cancel)
    assert len(points) == 1 and points[0].partial and points[0].n_done == 4
    assert ws.store.candidates("mva-no-hsic").empty  # only the base model is stored; no front sees the point


def test_explore_page_shows_the_point_before_all_prompts_and_it_tightens(ws_root, monkeypatch):
    at = open_page(monkeypatch, ws_root)
    at.slider(key="w_warmth").set_value(0.35)
    at.slider(key="w_brevity").set_value(0.65)
    at.button(key="explore_evaluate").click().run()
    assert not at.exception, at.exception
    trace = at.session_state["explore_live_trace"]
    done = [n for n, *_ in trace]
    assert done[0] < N_PROMPTS and done[-1] == N_PROMPTS and done == sorted(done)  # shown before all were done
    width = lambda entry: np.subtract(entry[4], entry[3])  # noqa: E731  (high − low per value)
    assert (width(trace[-1]) < width(trace[0])).all()  # tightened
    cid = at.session_state["explore_candidate"]
    frame = load_table(Workspace(ws_root)).frame
    row = frame[(frame["id"] == cid) & (frame["method"] == "mva-no-hsic")].iloc[0]  # also a soup point (sums to 1)
    assert trace[-1][2] == pytest.approx([row["z_warmth"], row["z_brevity"]])
    assert not at.session_state["explore_live"].partial


def test_explore_page_marks_a_stopped_point_partial_and_keeps_it_off_the_front(ws_root, monkeypatch):
    ws = Workspace(ws_root)
    cancel, points = threading.Event(), []
    with pytest.raises(Cancelled):
        evaluate_anytime(Evaluator(ws, "mva-no-hsic"), [0.5, 0.5], prompts_per_batch=4,
                         on_point=lambda p: (points.append(p), cancel.set()), cancel=cancel)
    before = len(ws.store.candidates())
    monkeypatch.setenv("MVA_WORKSPACE", str(ws_root))
    from streamlit.testing.v1 import AppTest
    from tests.apptest import APP

    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["explore_live"] = points[0]  # what the page keeps when Cancel stopped it after one batch
    at.run()
    assert not at.exception, at.exception
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    partial = next(t for t in spec["data"] if t.get("name", "").startswith("partial point"))
    assert "4 of 16 prompts" in partial["name"]
    assert plotly_array(partial["x"]).tolist() == pytest.approx([points[0].z[0]])
    assert len(Workspace(ws_root).store.candidates()) == before  # not stored
