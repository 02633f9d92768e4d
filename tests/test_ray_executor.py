"""The Ray executor (issue 14 item 8): `init` → `sweep --executor ray` → `results --csv` on a real local Ray started
by the run (2 actors), against the local executor on a copy of the same workspace: the same candidates, responses
and scores, bit for bit; the store is written by the driver alone; a rerun generates nothing."""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stdout

import pytest
import pandas as pd

from mva_core.cli import main
from mva_core.workspace import Workspace
from tests.tiny import make_tiny_workspace


def results(root) -> pd.DataFrame:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["results", "--workspace", str(root)]) == 0
    return pd.read_csv(io.StringIO(out.getvalue()))


@pytest.mark.slow
def test_ray_sweep_equals_local_sweep(tmp_path, capsys):
    import ray

    local = tmp_path / "local"
    make_tiny_workspace(local, n_prompts=3)
    remote = tmp_path / "remote"
    shutil.copytree(local, remote)
    grid = ["--method", "mva-no-hsic", "--grid", "0:1:0.5", "--chunk", "2"]  # 9 candidates in 5 chunks
    assert main(["sweep", "--workspace", str(local), *grid]) == 0
    try:
        assert main(["sweep", "--workspace", str(remote), *grid, "--executor", "ray", "--workers", "2"]) == 0
        assert "9 candidates of mva-no-hsic" in capsys.readouterr().out
        assert main(["sweep", "--workspace", str(remote), *grid, "--executor", "ray"]) == 0  # all stored already
        assert "0 generated, 9 answered from the store" in capsys.readouterr().out
    finally:
        ray.shutdown()
    a, b = results(local), results(remote)
    key = ["method", "w_warmth", "w_brevity"]
    pd.testing.assert_frame_equal(a.drop(columns="id").sort_values(key).reset_index(drop=True),
                                  b.drop(columns="id").sort_values(key).reset_index(drop=True), check_exact=True)
    ra, rb = Workspace(local).store, Workspace(remote).store

    def texts(store):
        cand = store.candidates()
        resp = store.responses(cand["id"].tolist()).merge(cand[["id", "weights"]], left_on="candidate_id", right_on="id")
        return sorted((tuple(w), j, r) for w, j, r in zip(resp["weights"], resp["prompt_idx"], resp["response"]))

    assert texts(ra) == texts(rb) and len(texts(ra)) == (9 + 1) * 3  # the grid and the base model, 3 prompts each
