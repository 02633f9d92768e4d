"""`init` makes a workspace from parts a user already has (plain PEFT LoRA dirs, no metadata of ours), and `results`
prints its candidate table (issue 14 item 4); both through `mva_core.cli.main`, checked against the store."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest

from mva_core.cli import main
from mva_core.scorers import ScoreNormaliser
from mva_core.workspace import Workspace
from tests.tiny import make_tiny_llama, make_value_vector


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    make_tiny_llama(root / "base")
    make_tiny_llama(root / "other", vocab_size=300)
    for i, value in enumerate(["warm", "short"]):
        d = make_value_vector(root / "base", root / "adapters" / value, value, seed=20 + i)
        (d / "mva_vector.json").unlink()  # a plain peft adapter, as trained elsewhere
    make_value_vector(root / "other", root / "adapters" / "alien", "alien", seed=3)
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Hi there", "Bake bread?"]))
    return root


def test_init_then_sweep_then_results(parts, tmp_path, capsys):
    ws_dir = tmp_path / "ws"
    code = main(["init", str(ws_dir), "--base", str(parts / "base"), "--value", "warm=warmth",
                 "--value", "short=brevity", "--vectors",
                 f"mine=warm:{parts / 'adapters' / 'warm'},short:{parts / 'adapters' / 'short'}",
                 "--prompts", str(parts / "prompts.jsonl")])
    assert code == 0, capsys.readouterr().err
    ws = Workspace(ws_dir)
    assert ws.value_names == ["warm", "short"] and ws.manifest.base == str(parts / "base")
    meta = json.loads((ws_dir / "vectors" / "mine" / "warm" / "mva_vector.json").read_text())
    assert meta["value"] == "warm" and meta["method"] == "mine" and meta["base_fingerprint"]
    assert [m.name for m in ws.compared_methods()] == ["mine"]
    manifest = json.loads((ws_dir / "workspace.json").read_text())
    manifest["decoding"]["max_new_tokens"] = 6
    (ws_dir / "workspace.json").write_text(json.dumps(manifest))
    # a START above 0 sweeps the lattice points from there on (each weight): here 4 of the 9, recorded as the run's
    # grid, which the comparison's design reads (mva_core.design)
    assert main(["sweep", "--workspace", str(ws_dir), "--method", "mine", "--grid", "0.5:1:0.5"]) == 0
    runs = ws.store.runs()
    assert sorted(map(tuple, json.loads(runs["config"].iloc[-1])["grid"])) == [(.5, .5), (.5, 1), (1, .5), (1, 1)]
    assert main(["sweep", "--workspace", str(ws_dir), "--method", "mine", "--grid", "0:1:0.5"]) == 0
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["results", "--workspace", str(ws_dir), "--method", "mine"]) == 0
    table = pd.read_csv(io.StringIO(out.getvalue()))
    assert list(table.columns) == ["id", "method", "w_warm", "w_short", "raw_warm", "raw_short", "z_warm", "z_short",
                                   "on_front", "p_front"]
    mine = table[table["method"] == "mine"]
    assert sorted(zip(mine["w_warm"], mine["w_short"])) == [(a, b) for a in (0, .5, 1) for b in (0, .5, 1)]
    # raw = the mean of the stored per-prompt scores; z against the base model's per-prompt scores
    cand = ws.store.candidates()
    base_id = int(cand.loc[cand["method"] == "base", "id"].iloc[0])
    base_rows = ws.store.responses([base_id])
    for _, row in mine.iterrows():
        rows = ws.store.responses([int(row["id"])])
        assert row["raw_short"] == pytest.approx(rows["brevity"].mean())
        want_z = ScoreNormaliser().fit(base_rows["brevity"].to_numpy()).transform(np.array([rows["brevity"].mean()]))[0]
        assert row["z_short"] == pytest.approx(want_z)


def test_init_refuses_what_it_cannot_use(parts, tmp_path, capsys):
    def err(*argv):
        code = main([str(a) for a in argv])
        return code, capsys.readouterr().err.strip().splitlines()[-1]

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.md").write_text("mine")
    code, line = err("init", taken, "--base", parts / "base", "--value", "warm=warmth")
    assert code == 2 and "not empty" in line and (taken / "notes.md").read_text() == "mine"
    code, line = err("init", tmp_path / "a", "--base", parts / "base", "--value", "warm=warmth",
                     "--vectors", f"mine=cold:{parts / 'adapters' / 'warm'}")
    assert code == 2 and "['cold'] are not values" in line
    code, line = err("init", tmp_path / "b", "--base", parts / "base", "--value", "alien=warmth",
                     "--vectors", f"mine=alien:{parts / 'adapters' / 'alien'}")
    assert code == 2 and "not on the loaded base" in line
    code, line = err("init", tmp_path / "c", "--base", parts / "base", "--value", "warm=sentiment")
    assert code == 2 and "unknown scorer 'sentiment'" in line
    code, line = err("init", tmp_path / "d", "--base", parts / "base", "--vectors", "mine")
    assert code == 2 and "METHOD=VALUE:DIR" in line
    assert not any((tmp_path / x).exists() for x in "abcd")
