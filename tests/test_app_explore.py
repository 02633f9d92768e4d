"""AppTest of the Explore page on a tiny workspace: move sliders, evaluate, the point lands and is stored."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from mva_core.workspace import Workspace
from tests.apptest import APP, plotly_array
from tests.tiny import make_tiny_workspace


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("appws")
    make_tiny_workspace(root)
    return root


def test_explore_slider_evaluate_adds_point(ws_root, monkeypatch):
    monkeypatch.setenv("MVA_WORKSPACE", str(ws_root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    assert any("No candidates yet" in i.value for i in at.info)
    at.slider(key="w_warmth").set_value(0.8)
    at.slider(key="w_brevity").set_value(0.25)
    at.button(key="explore_evaluate").click().run()
    assert not at.exception, at.exception
    cid = at.session_state["explore_candidate"]
    table = Workspace(ws_root).store.candidates()
    row = table[table["id"] == cid].iloc[0]
    assert row["weights"] == [0.8, 0.25] and row["source"] == "live"
    assert row["s_warmth"] == row["s_warmth"] and row["s_brevity"] == row["s_brevity"]  # scored (not NaN)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t.get("name") for t in spec["data"]]
    assert "your point" in names and "Pareto front" in names
    mine = next(t for t in spec["data"] if t.get("name") == "your point")
    assert len(plotly_array(mine["x"])) == 1
    # Evaluating the same weights again is answered from the store.
    at.button(key="explore_evaluate").click().run()
    assert at.session_state["explore_candidate"] == cid
    assert len(Workspace(ws_root).store.candidates()) == len(table)


def test_explore_reports_missing_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("MVA_WORKSPACE", str(tmp_path / "nowhere"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("not an MVA workspace" in e.value for e in at.error)


def test_preference_highlight_single_vectors_and_detail(ws_root, monkeypatch):
    import numpy as np

    from mva_core.sweep import Evaluator

    Evaluator(Workspace(ws_root), "mva-no-hsic").evaluate([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0]])
    monkeypatch.setenv("MVA_WORKSPACE", str(ws_root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.selectbox(key="explore_method").set_value("mva-no-hsic").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    singles = next(t for t in spec["data"] if t.get("name") == "single vectors")
    assert sorted(singles["text"]) == ["brevity", "warmth"]  # (1,0) and (0,1), labelled by their value

    # p = (1, 0): the front candidate with the highest warmth z-score, found here from the store's raw means
    at.number_input(key="p_warmth").set_value(1.0).run()
    assert not at.exception, at.exception
    cands = Workspace(ws_root).store.candidates("mva-no-hsic")
    F = cands[["s_warmth", "s_brevity"]].to_numpy(dtype=float)
    front = [i for i in range(len(F)) if not any((F[j] >= F[i]).all() and (F[j] > F[i]).any() for j in range(len(F)))]
    best = max(front, key=lambda i: (F[i, 0], -i))
    # z is an increasing affine map of raw per value, so the argmax of p·z over the front is the raw argmax
    msg = next(i.value for i in at.info if i.value.startswith("Preference p"))
    assert f"#{int(cands['id'].iloc[best])}," in msg

    # the detail fallback (what a click on the chart opens) shows that candidate's scores and responses
    cid = int(cands["id"].iloc[best])
    at.selectbox(key="explore_detail").set_value(cid).run()
    assert not at.exception, at.exception
    assert any(e.label.startswith(f"Candidate #{cid} ") for e in at.expander)
    resp = Workspace(ws_root).store.responses([cid])
    shown = at.dataframe[0].value
    assert shown["response"].tolist() == resp["response"].tolist()
    assert np.isfinite(F).all()



def three_value_workspace(root):
    """The tiny workspace with a third value (civility) and its vector; the base model evaluated."""
    from mva_core.sweep import Evaluator, evaluate_base
    from mva_core.workspace import MANIFEST
    from tests.tiny import make_value_vector

    make_tiny_workspace(root)
    make_value_vector(root / "base", root / "vectors" / "mva-no-hsic" / "civility", "civility", seed=13,
                      method="mva-no-hsic")
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["values"].append({"name": "civility", "scorer": "civility"})
    (root / MANIFEST).write_text(json.dumps(manifest))
    ws = Workspace(root)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    return ws, ev


def test_three_values_get_3d_and_parallel_coordinates(tmp_path, monkeypatch):
    import numpy as np

    ws, ev = three_value_workspace(tmp_path / "ws3")
    root = ws.root
    ev.evaluate([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [1, 1, 1]])
    monkeypatch.setenv("MVA_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    assert [s.key for s in at.slider if s.key.startswith("w_")] == ["w_warmth", "w_brevity", "w_civility"]
    specs = {json.loads(c.proto.spec)["data"][0]["type"]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert "scatter3d" in specs and "parcoords" in specs
    par = specs["parcoords"]["data"][0]
    assert [d["label"] for d in par["dimensions"]] == ["warmth (z)", "brevity (z)", "civility (z)"]
    # red lines = the front, checked by brute force on the stored raw means (z is increasing in raw per value)
    cands = ws.store.candidates("mva-no-hsic")
    F = cands[["s_warmth", "s_brevity", "s_civility"]].to_numpy(dtype=float)
    front = [int(not any((F[j] >= F[i]).all() and (F[j] > F[i]).any() for j in range(len(F)))) for i in range(len(F))]
    assert sorted(plotly_array(par["line"]["color"]).tolist()) == sorted(front)
    assert len(plotly_array(par["dimensions"][0]["values"])) == len(F)
    assert np.isfinite(F).all()


def test_single_vectors_fall_back_to_dpo_rows(tmp_path, monkeypatch):
    """A method without its own one-hot candidates (here `mva`, swept only inside the square) gets the workspace's
    dpo-<value> points (mva-no-hsic's vectors alone at weight 1) as its Fig.5 reference points."""
    from mva_core.sweep import Evaluator, evaluate_base
    from tests.tiny import make_value_vector

    root = tmp_path / "wsmva"
    make_tiny_workspace(root)
    for i, v in enumerate(["warmth", "brevity"]):
        make_value_vector(root / "base", root / "vectors" / "mva" / v, v, seed=40 + i, method="mva")
    ws = Workspace(root)
    ind = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ind.base)
    ind.evaluate([[1.0, 0.0], [0.0, 1.0]])
    Evaluator(ws, "mva", base=ind.base).evaluate([[0.5, 0.5], [1.0, 0.5], [0.5, 1.0]])
    monkeypatch.setenv("MVA_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.selectbox(key="explore_method").set_value("mva").run()
    assert not at.exception, at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    singles = next(t for t in spec["data"] if t.get("name") == "single vectors")
    assert sorted(singles["text"]) == ["dpo-brevity", "dpo-warmth"]
    # their positions are those one-hot candidates' z-scores, computed here from the store: z = (mean − μ) / σ
    cands = ws.store.candidates()
    base_rows = ws.store.responses([int(cands.loc[cands["method"] == "base", "id"].iloc[0])])
    want = {}
    for r in cands[cands["method"] == "mva-no-hsic"].itertuples():
        z = []
        for s in ("warmth", "brevity"):
            sd = base_rows[s].std(ddof=0)
            z.append((ws.store.responses([int(r.id)])[s].mean() - base_rows[s].mean()) / (sd if sd > 0 else 1.0))
        want["dpo-warmth" if list(r.weights) == [1.0, 0.0] else "dpo-brevity"] = z
    for label, x, y in zip(singles["text"], plotly_array(singles["x"]), plotly_array(singles["y"])):
        assert [x, y] == pytest.approx(want[label], rel=1e-6, abs=1e-9)


def test_mixed_preference_picks_argmax_of_p_dot_z(ws_root, monkeypatch):
    """p = (0.3, 0.7) mixes the values, so the pick depends on the z scaling: computed here from the store."""
    import numpy as np

    from mva_core.sweep import Evaluator, evaluate_base

    ws = Workspace(ws_root)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    ev.evaluate([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0], [0.25, 0.75], [0.75, 0.25]])
    monkeypatch.setenv("MVA_WORKSPACE", str(ws_root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.selectbox(key="explore_method").set_value("mva-no-hsic").run()
    at.number_input(key="p_warmth").set_value(0.3)
    at.number_input(key="p_brevity").set_value(0.7).run()
    assert not at.exception, at.exception
    cands = ws.store.candidates()
    base_rows = ws.store.responses([int(cands.loc[cands["method"] == "base", "id"].iloc[0])])
    mine = cands[cands["method"] == "mva-no-hsic"]
    mu = np.array([base_rows[s].mean() for s in ("warmth", "brevity")])
    sd = np.array([base_rows[s].std(ddof=0) for s in ("warmth", "brevity")])
    sd = np.where(sd > 0, sd, 1.0)
    Z = np.stack([(np.array([ws.store.responses([int(i)])[s].mean() for s in ("warmth", "brevity")]) - mu) / sd
                  for i in mine["id"]])
    front = [i for i in range(len(Z)) if not any((Z[j] >= Z[i]).all() and (Z[j] > Z[i]).any() for j in range(len(Z)))]
    best = max(front, key=lambda i: (Z[i] @ np.array([0.3, 0.7]), -i))
    msg = next(i.value for i in at.info if i.value.startswith("Preference p"))
    assert f"#{int(mine['id'].iloc[best])}," in msg
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    ring = next(t for t in spec["data"] if t.get("name") == "preferred by p")
    assert [plotly_array(ring["x"])[0], plotly_array(ring["y"])[0]] == pytest.approx(Z[best], rel=1e-6, abs=1e-9)


def test_three_value_brush_filters_scatter_3d_and_parallel_coordinates(tmp_path, monkeypatch):
    """A brush on one value's z range greys the candidates outside it on the scatter and in 3-D, and shows as a
    constraint range on that axis of the parallel coordinates; the surrogate's prediction appears in 3-D."""
    import numpy as np

    ws, ev = three_value_workspace(tmp_path / "ws3")
    root = ws.root
    grid = [[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 0.5)]
    ev.evaluate(grid)
    monkeypatch.setenv("MVA_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    z = ws.store.candidates("mva-no-hsic")
    assert z["s_brevity"].std() > 0, "the tiny model's response lengths vary with the weights"
    brush = next(s for s in at.slider if s.key.startswith("brush_mva-no-hsic_brevity"))
    lo, hi = brush.value
    mid = round((lo + hi) / 2, 2)
    brush.set_value((lo, mid)).run()
    assert not at.exception, at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    scatter = next(sp for sp in specs if sp["data"][0]["type"] == "scatter")
    traces = {t.get("name"): t for t in scatter["data"]}
    inside = sum(len(plotly_array(traces[n]["x"])) for n in ("dominated", "Pareto front") if n in traces)
    out = len(plotly_array(traces["outside the brush"]["x"]))
    assert inside + out == len(z) and out > 0 and inside > 0
    assert all(y <= mid + 1e-9 for n in ("dominated", "Pareto front") if n in traces
               for y in plotly_array(traces[n]["y"])), "the scatter's y axis is brevity: inside points are <= mid"
    assert all(y > mid for y in plotly_array(traces["outside the brush"]["y"]))
    par = next(sp for sp in specs if sp["data"][0]["type"] == "parcoords")["data"][0]
    assert par["dimensions"][1]["constraintrange"] == [lo, mid]
    assert "constraintrange" not in par["dimensions"][0]
    three = next(sp for sp in specs if sp["data"][0]["type"] == "scatter3d")
    names3 = {t.get("name"): t for t in three["data"]}
    assert len(plotly_array(names3["outside the brush"]["x"])) == out
    assert "predicted (surrogate)" in names3  # 8 candidates: the GP is fitted and answers at the sliders
    assert np.isfinite(z[["s_warmth", "s_brevity", "s_civility"]].to_numpy(dtype=float)).all()
