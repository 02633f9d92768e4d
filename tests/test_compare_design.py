"""Compare's metrics are defined on each method's sweep design: points evaluated on Explore are drawn, labelled
"explored", and left out of HV / MIP unless included (issue 31 item 4)."""

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
from pymoo.indicators.hv import HV

from mva_core.cli import main
from mva_core.design import design_table, explored_mask
from mva_core.results import load_table
from mva_core.sweep import Evaluator, evaluate_base, sweep
from mva_core.workspace import Workspace
from tests.apptest import open_page, plotly_array
from tests.test_live_point import live_workspace

GRID = [[a, b] for a in (0, 0.5, 1) for b in (0, 0.5, 1)]
EXPLORED = [[0.8, 0.9], [0.3, 0.6], [1.0, 0.25]]  # off the grid, none on the simplex (not soup points)


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("designws")
    ws = live_workspace(root)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    ev.evaluate([[0.5, 1.0]], source="live")  # explored first, then a point of the sweep's grid: in the design
    sweep(ev, np.array(GRID, dtype=float))
    ev.evaluate(EXPLORED, source="live")
    return root


def hv_by_pymoo(Z: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of the maximised points Z above ref, by pymoo directly (it minimises: both negated)."""
    return float(HV(ref_point=-ref)(-Z))


def compare_json(root, *extra) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["compare", "--workspace", str(root), "--methods", "mva-no-hsic", "--json", *extra]) == 0
    return json.loads(out.getvalue())


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_explored_points_are_left_out_of_the_metrics_unless_included(ws_root):
    ws = Workspace(ws_root)
    table = load_table(ws)
    mine = table.for_method("mva-no-hsic")
    explored = explored_mask(ws, mine)
    assert sorted(np.round(mine.weights()[explored], 3).tolist()) == sorted(EXPLORED)  # [0.5, 1] is the grid's
    assert len(design_table(ws, table).for_method("mva-no-hsic")) == len(GRID)
    base_z = table.base().z()
    for extra, rows in (((), ~explored), (("--include-explored",), np.ones(len(mine), dtype=bool))):
        doc = compare_json(ws_root, *extra)
        Z = mine.z()[rows]
        ref = np.vstack([Z, base_z]).min(axis=0)  # the default reference: per-value min over candidates and base
        assert doc["ref"] == pytest.approx(ref.tolist())
        assert doc["methods"]["mva-no-hsic"]["hv"] == pytest.approx(hv_by_pymoo(Z, ref))
        assert doc["explored"] == {"candidates": 3, "included": bool(extra)}


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_compare_page_labels_explored_points_and_includes_them_on_request(ws_root, monkeypatch):
    at = open_page(monkeypatch, ws_root, "pages/compare.py")
    at.multiselect(key="compare_methods").set_value(["mva-no-hsic"]).run()
    assert not at.exception, at.exception

    def metrics_row():
        frame = at.dataframe[0].value
        return frame[frame["method"] == "mva-no-hsic"].iloc[0]

    def explored_trace():
        spec = json.loads(next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-compare_plot")).proto.spec)
        return next(t for t in spec["data"] if t.get("name", "").startswith("explored"))

    assert metrics_row()["candidates"] == len(GRID)
    assert explored_trace()["name"] == "explored (not in the metrics)" and len(plotly_array(explored_trace()["x"])) == 3
    hv_design = metrics_row()["hypervolume"]
    at.checkbox(key="compare_include_explored").check().run()
    assert not at.exception, at.exception
    assert metrics_row()["candidates"] == len(GRID) + 3
    assert explored_trace()["name"] == "explored (in the metrics)"
    ws = Workspace(ws_root)
    table = load_table(ws)
    Z, base_z = table.for_method("mva-no-hsic").z(), table.base().z()
    assert metrics_row()["hypervolume"] == pytest.approx(hv_by_pymoo(Z, np.vstack([Z, base_z]).min(axis=0)))
    assert hv_design == pytest.approx(compare_json(ws_root)["methods"]["mva-no-hsic"]["hv"])
