"""The shipped demo workspace (data/demo) is complete, consistent with its provenance, and shows a front."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from mva_core import pareto
from mva_core.demo import DEMO_METHOD, DEMO_GRID_STEP
from mva_core.results import candidate_table, summarise
from mva_core.vectors import load_value_vectors
from mva_core.workspace import DEMO_WORKSPACE, Workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "ws"
    shutil.copytree(DEMO_WORKSPACE, root)  # never write into the shipped copy
    return Workspace(root)


def test_demo_files_match_provenance():
    prov = json.loads((DEMO_WORKSPACE / "PROVENANCE.json").read_text())
    assert prov["command"].startswith("python -m mva_core demo build") and "seed" in prov
    for rel, digest in prov["files"].items():
        assert hashlib.sha256((DEMO_WORKSPACE / rel).read_bytes()).hexdigest()[:16] == digest, rel
    size = sum(p.stat().st_size for p in DEMO_WORKSPACE.rglob("*") if p.is_file())
    assert size < 50 * 2**20, f"demo workspace is {size / 2**20:.1f} MB; keep it under 50 MB"


def test_demo_has_a_full_grid_and_a_front(ws):
    vectors = load_value_vectors(ws.vector_dirs(DEMO_METHOD))
    assert [v.value for v in vectors] == ws.value_names
    table = candidate_table(ws)
    grid = ws.space(step=DEMO_GRID_STEP).grid()
    cands = table[table["method"] == DEMO_METHOD]
    got = {tuple(np.round(w, 6)) for w in cands["weights"]}
    assert {tuple(np.round(w, 6)) for w in grid} <= got
    assert (table["method"] == "base").sum() == 1
    zc = [f"z_{v}" for v in ws.value_names]
    # the stored front agrees with an independent brute-force dominance check
    F = cands[zc].to_numpy(dtype=float)
    brute = {i for i in range(len(F)) if not any((F[j] >= F[i]).all() and (F[j] > F[i]).any() for j in range(len(F)))}
    assert set(np.flatnonzero(cands["on_front"].to_numpy())) == brute
    summary, ref = summarise(table, ws.value_names)
    assert summary[0].method == DEMO_METHOD and summary[0].hypervolume > 0
    assert np.allclose(ref, pareto.reference_point(table[zc].to_numpy(dtype=float)))
