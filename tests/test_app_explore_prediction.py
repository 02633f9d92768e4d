"""The prediction stays visible (issue 31 item 2): after Evaluate, the surrogate's prediction made before the
measurement (with its ±1 sd) stays beside the measured point until a slider moves; the session's track record lists
predicted vs measured; at a stored grid point the stored point is shown, not "predicted … not generated".
AppTest on a tiny workspace; the prediction is checked against a GP fitted here on the candidates stored before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mva_core.results import candidate_table
from mva_core.surrogate import fit_surrogate
from mva_core.sweep import Evaluator, evaluate_base
from mva_core.workspace import Workspace
from tests.apptest import open_page, plotly_array
from tests.tiny import make_tiny_workspace

GRID = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0], [0.25, 0.75], [0.75, 0.25]]
METHOD = "mva-no-hsic"


@pytest.fixture()
def ws_root(tmp_path):
    ws = make_tiny_workspace(tmp_path, n_prompts=2)
    ev = Evaluator(ws, METHOD)
    evaluate_base(ws, ev.base)
    ev.evaluate(GRID)
    return tmp_path


def traces(at) -> dict[str, dict]:
    spec = json.loads(next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-explore_plot")).proto.spec)
    return {t.get("name"): t for t in spec["data"]}


def xy(trace) -> list[float]:
    return [float(plotly_array(trace["x"])[0]), float(plotly_array(trace["y"])[0])]


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_the_prediction_stays_beside_the_measured_point_until_a_slider_moves(ws_root, monkeypatch):
    ws = Workspace(ws_root)
    table = candidate_table(ws)
    mine = table[(table["method"] == METHOD) & table["finite"]]
    model = fit_surrogate(mine[["w_warmth", "w_brevity"]].to_numpy(dtype=float),
                          mine[["z_warmth", "z_brevity"]].to_numpy(dtype=float), ["w_warmth", "w_brevity"])
    w = [0.8, 0.15]
    mean, sd = model.predict([w])
    at = open_page(monkeypatch, ws_root)
    at.slider(key="w_warmth").set_value(w[0])
    at.slider(key="w_brevity").set_value(w[1]).run()
    assert xy(traces(at)["predicted (surrogate)"]) == pytest.approx(mean[0], abs=1e-6)
    at.button(key="explore_evaluate").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    t = traces(at)
    # the measured point, and beside it the prediction made before it existed (not the refitted surrogate's)
    after = candidate_table(Workspace(ws_root))
    measured = after[(after["method"] == METHOD) & np.isclose(after["w_warmth"], 0.8) & np.isclose(after["w_brevity"], 0.15)]
    assert len(measured) == 1
    assert xy(t["your point"]) == pytest.approx(measured[["z_warmth", "z_brevity"]].to_numpy()[0], abs=1e-9)
    kept = t["predicted before measuring"]
    assert xy(kept) == pytest.approx(mean[0], abs=1e-6)
    assert plotly_array(kept["error_x"]["array"])[0] == pytest.approx(sd[0][0], abs=1e-6)
    assert plotly_array(kept["error_y"]["array"])[0] == pytest.approx(sd[0][1], abs=1e-6)
    assert "predicted (surrogate)" not in t  # a stored point at the sliders is shown, not predicted
    segment = t["prediction → measured"]
    assert plotly_array(segment["x"]).tolist() == pytest.approx([mean[0][0], measured["z_warmth"].iloc[0]])
    # the track record: one row, predicted vs measured per value
    record = next(d.value for d in at.dataframe if "warmth predicted" in d.value.columns)
    assert len(record) == 1 and int(record["candidate"].iloc[0]) == int(measured["id"].iloc[0])
    for k, v in enumerate(["warmth", "brevity"]):
        assert record[f"{v} predicted"].iloc[0] == pytest.approx(mean[0][k], abs=1e-6)
        assert record[f"{v} measured"].iloc[0] == pytest.approx(measured[f"z_{v}"].iloc[0], abs=1e-9)
        assert record[f"{v} error"].iloc[0] == pytest.approx(measured[f"z_{v}"].iloc[0] - mean[0][k], abs=1e-6)
        assert bool(record[f"{v} within 2 sd"].iloc[0]) == (abs(measured[f"z_{v}"].iloc[0] - mean[0][k]) <= 2 * sd[0][k])
    # another run at the same sliders keeps it, and logs nothing twice
    at.run()
    assert "predicted before measuring" in traces(at)
    assert len(next(d.value for d in at.dataframe if "warmth predicted" in d.value.columns)) == 1
    # a slider moves: the comparison is over, the live prediction is back; the record stays
    at.slider(key="w_brevity").set_value(0.3).run()
    t = traces(at)
    assert "predicted before measuring" not in t and "predicted (surrogate)" in t
    assert len(next(d.value for d in at.dataframe if "warmth predicted" in d.value.columns)) == 1


def test_a_stored_grid_point_is_shown_not_predicted(ws_root, monkeypatch):
    table = candidate_table(Workspace(ws_root))
    row = table[(table["method"] == METHOD) & np.isclose(table["w_warmth"], 0.25) & np.isclose(table["w_brevity"], 0.75)]
    at = open_page(monkeypatch, ws_root)
    at.slider(key="w_warmth").set_value(0.25)
    at.slider(key="w_brevity").set_value(0.75).run()
    t = traces(at)
    assert "predicted (surrogate)" not in t
    assert xy(t["stored at these weights"]) == pytest.approx(row[["z_warmth", "z_brevity"]].to_numpy()[0], abs=1e-9)
    assert any(c.value.startswith(f"At the sliders: stored candidate #{int(row['id'].iloc[0])}") for c in at.caption)
    # Evaluate there answers from the store: the surrogate was fitted on that point, so no "prediction" is logged
    at.button(key="explore_evaluate").click().run()
    assert "predicted before measuring" not in traces(at)
    assert not [d for d in at.dataframe if "warmth predicted" in d.value.columns]
