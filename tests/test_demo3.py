"""The shipped 3-value demo (data/demo3, issue 15 item 3): complete, consistent with its provenance, small, with
mva's full [0, 1]^3 grid, mva-no-hsic's stored search run, and opened from the sidebar's "Shipped demos" into a
working copy whose Explore page shows three sliders, the 3-D front and the parallel coordinates."""

import hashlib
import json
import shutil

import pytest

import numpy as np
from streamlit.testing.v1 import AppTest

from mva_core.demo import DEMOS, working_copy
from mva_core.results import candidate_table
from mva_core.workspace import Workspace
from tests.apptest import APP

SPEC = DEMOS["demo3"]


def test_demo3_files_match_provenance_and_stay_small():
    prov = json.loads((SPEC.root / "PROVENANCE.json").read_text())
    for rel, digest in prov["files"].items():
        assert hashlib.sha256((SPEC.root / rel).read_bytes()).hexdigest()[:16] == digest, rel
    size = sum(p.stat().st_size for p in SPEC.root.rglob("*") if p.is_file())
    assert size < 50 * 2**20, f"demo3 is {size / 2**20:.1f} MB; keep it under 50 MB"


def test_demo3_has_three_values_a_full_grid_and_a_search_run(tmp_path):
    root = tmp_path / "demo3"
    shutil.copytree(SPEC.root, root)  # never write into the shipped copy
    ws = Workspace(root)
    assert ws.value_names == ["warmth", "brevity", "relevance"]
    table = candidate_table(ws)
    grid = {tuple(np.round(w, 6)) for w in ws.space(step=SPEC.grid_step).grid()}
    mva = {tuple(np.round(w, 6)) for w in table.loc[table["method"] == "mva", "weights"]}
    assert len(grid) == 125 and grid <= mva
    runs = ws.store.runs()
    search = runs[(runs["kind"] == "search") & (runs["method"] == "mva-no-hsic")]
    assert search["status"].tolist() == ["done"]
    assert len(json.loads(search["log"].iloc[0])["hv_history"]) >= 25
    assert (table["method"] == "soup").sum() >= 3 and table.loc[table["method"] == "mva", "on_front"].any()
    z = table.loc[table["method"] == "mva", ["z_warmth", "z_brevity", "z_relevance"]].to_numpy(dtype=float)
    assert np.isfinite(z).all() and (z.std(axis=0) > 0).all()  # every value moves with the weights


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_demo3_opens_from_the_sidebar(monkeypatch):
    copy = working_copy.__globals__["REPO_ROOT"] / "data" / "workspace-demo3"
    existed = copy.exists()
    monkeypatch.delenv("MVA_WORKSPACE", raising=False)
    try:
        at = AppTest.from_file(APP, default_timeout=180).run()
        assert not at.exception, at.exception
        picker = next(s for s in at.selectbox if s.key == "shipped_demo")
        assert "demo3: warmth, brevity, relevance" in picker.options
        picker.select("demo3").run()
        assert not at.exception, at.exception
        assert at.text_input(key="workspace").value == str(copy) and (copy / "workspace.json").is_file()
        assert [s.key for s in at.slider if s.key.startswith("w_")] == ["w_warmth", "w_brevity", "w_relevance"]
        kinds = {json.loads(c.proto.spec)["data"][0]["type"] for c in at.get("plotly_chart")}
        assert {"scatter", "scatter3d", "parcoords"} <= kinds
    finally:
        if not existed:
            shutil.rmtree(copy, ignore_errors=True)
