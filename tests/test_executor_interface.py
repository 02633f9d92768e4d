"""One executor interface for sweep and search (issue 26 item 4), and an evaluation that returns its z-scores."""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stdout

import numpy as np
import pytest

from mva_core.cli import main
from mva_core.metrics import prompt_rewards
from mva_core.results import load_table
from mva_core.search import search_method
from mva_core.sweep import Evaluator, LocalExecutor, evaluate_base, sweep_groups
from mva_core.workspace import Workspace
from tests.test_live_point import live_workspace
from tests.tiny import make_tiny_workspace


def test_an_evaluation_returns_its_z_scores(tmp_path):
    ws = live_workspace(tmp_path / "ws")  # sampled decoding: rewards vary from prompt to prompt
    ev = Evaluator(ws, "mva-no-hsic")
    base = evaluate_base(ws, ev.base)
    res = ev.evaluate([[1.0, 0.0], [0.3, 0.9]])
    R, B = prompt_rewards(ws, res.candidate_ids), prompt_rewards(ws, [base])[0]  # (K, P, V), (P, V)
    by_hand = (R.mean(axis=1) - B.mean(axis=0)) / B.std(axis=0)  # z against the base, population std
    assert res.z() == pytest.approx(by_hand)


def test_sweep_and_search_take_the_same_executor(tmp_path):
    ws = make_tiny_workspace(tmp_path / "a", n_prompts=2)
    other = Workspace(shutil.copytree(tmp_path / "a", tmp_path / "b"))
    grid = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    default = sweep_groups("mva-no-hsic", [(Evaluator(ws, "mva-no-hsic"), grid)], chunk=2)
    local = sweep_groups("mva-no-hsic", [(Evaluator(other, "mva-no-hsic"), grid)], chunk=2, executor=LocalExecutor())
    assert default.generated == local.generated == 3
    texts = [sorted(w.store.responses(r.candidate_ids)["response"]) for w, r in ((ws, default), (other, local))]
    assert texts[0] == texts[1]
    result, run_id = search_method(ws, "mva-no-hsic", budget=5, step=0.5, batch=2, executor=LocalExecutor())
    assert run_id is not None and len(ws.store.candidates("mva-no-hsic")) == 3 + 5
    assert result.z[-1] == pytest.approx(load_table(ws).for_method("mva-no-hsic").by_id().z()[-1])


@pytest.mark.slow
def test_search_on_ray_equals_search_here(tmp_path):
    import ray

    make_tiny_workspace(tmp_path / "local", n_prompts=2)
    shutil.copytree(tmp_path / "local", tmp_path / "remote")
    args = ["--method", "mva-no-hsic", "--budget", "6", "--step", "0.5", "--batch", "3"]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["search", "--workspace", str(tmp_path / "local"), *args]) == 0
        try:
            assert main(["search", "--workspace", str(tmp_path / "remote"), *args, "--executor", "ray",
                         "--workers", "2"]) == 0
        finally:
            ray.shutdown()
    a, b = (Workspace(tmp_path / p).store for p in ("local", "remote"))
    ca, cb = a.candidates("mva-no-hsic"), b.candidates("mva-no-hsic")
    assert ca["weights"].tolist() == cb["weights"].tolist()  # the same points chosen in the same order
    assert a.responses(ca["id"].tolist())["response"].tolist() == b.responses(cb["id"].tolist())["response"].tolist()
