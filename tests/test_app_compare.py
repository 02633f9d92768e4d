"""AppTest of the Compare page on a tiny workspace swept for mva-no-hsic (which also gives soup and the
dpo-<value> points): the metrics table equals an independent computation (pymoo HV, brute-force fronts),
and the reference point is shared and editable."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from pymoo.indicators.hv import HV

from mva_core.sweep import evaluate_base, method_groups, sweep_groups
from tests.apptest import open_page, plotly_array
from tests.tiny import make_tiny_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_tiny_workspace(tmp_path_factory.mktemp("cmpws"))
    groups = method_groups(ws, "mva-no-hsic", step=0.5)
    evaluate_base(ws, groups[0][0].base)
    sweep_groups("mva-no-hsic", groups)
    return ws


def brute(F):
    """Indices of rows no other row dominates (maximisation), and the HV above ref by pymoo directly."""
    return [i for i in range(len(F)) if not any((F[j] >= F[i]).all() and (F[j] > F[i]).any() for j in range(len(F)))]


@pytest.mark.slow
def test_compare_table_matches_independent_metrics(ws, monkeypatch):
    served = record_downloads(monkeypatch)
    at = open_page(monkeypatch, ws.root, "pages/compare.py")
    assert set(at.multiselect(key="compare_methods").value) == {"mva-no-hsic", "soup", "dpo-warmth", "dpo-brevity"}
    got = at.dataframe[0].value.set_index("method")
    # independently, from the stored per-prompt scores: z = (mean − base mean) / base sd per value
    cands = ws.store.candidates()
    hashes = json.loads(cands.loc[cands["method"] == "mva-no-hsic", "vector_hashes"].iloc[0])
    base_id = cands.loc[cands["method"] == "base", "id"].iloc[0]
    base_rows = ws.store.responses([int(base_id)])
    mu = np.array([base_rows[s].mean() for s in ("warmth", "brevity")])
    sd = np.array([base_rows[s].std(ddof=0) for s in ("warmth", "brevity")])
    sd = np.where(sd > 0, sd, 1.0)  # the documented rule for a value the base never varies on
    grid = cands[cands["vector_hashes"] == json.dumps(hashes)]
    Z = {int(r.id): (np.array([ws.store.responses([int(r.id)])[s].mean() for s in ("warmth", "brevity")]) - mu) / sd
         for r in grid.itertuples()}
    W = {int(r.id): tuple(r.weights) for r in grid.itertuples()}
    members = {"mva-no-hsic": list(Z), "soup": [i for i in Z if abs(sum(W[i]) - 1) < 1e-9],
               "dpo-warmth": [i for i in Z if W[i] == (1.0, 0.0)], "dpo-brevity": [i for i in Z if W[i] == (0.0, 1.0)]}
    ref = np.min(np.stack(list(Z.values()) + [np.zeros(2)]), axis=0)  # base (z = 0) is a compared candidate too
    for m, ids in members.items():
        F = np.stack([Z[i] for i in ids])
        assert got.loc[m, "candidates"] == len(ids)
        assert got.loc[m, "front size"] == len(brute(F)), m
        better = F[(F > ref).all(axis=1)]
        want = HV(ref_point=-ref)(-better) if len(better) else 0.0
        assert got.loc[m, "hypervolume"] == pytest.approx(want, rel=1e-6, abs=1e-9), m
    assert [at.number_input(key=k).value for k in [n.key for n in at.number_input]] == pytest.approx(ref, abs=1e-4)
    # MIP: mean over the 11 preference vectors of max over the brute-force front of p·z
    P = np.stack([np.arange(11) / 10, 1 - np.arange(11) / 10], axis=1)
    for m, ids in members.items():
        F = np.stack([Z[i] for i in ids])
        fr = F[brute(F)]
        assert got.loc[m, "MIP"] == pytest.approx(np.mean([max(p @ f for f in fr) for p in P]), rel=1e-6), m
        for j, v in enumerate(("warmth", "brevity")):
            assert got.loc[m, f"best {v}"] == pytest.approx(F[:, j].max(), rel=1e-6)
    assert got["CRD"].isna().all()  # greedy sweeps: one response per prompt, no per-sample rewards
    assert any("CRD empty" in c.value and "decoded greedily" in c.value for c in at.caption)

    # win rates at p = (0.5, 0.5) (the default): each method's front candidate maximising p·z, and per value the
    # share of prompts on which its reward beats the base model's (ties half), counted here with a loop
    wins = next(d.value for d in at.dataframe if "win_warmth" in d.value.columns).set_index("method")
    assert at.selectbox(key="compare_win_p").value == 5
    for m, ids in members.items():
        F = np.stack([Z[i] for i in ids])
        best = max((ids[k] for k in brute(F)), key=lambda i: (0.5 * Z[i].sum(), -i))
        assert wins.loc[m, "id"] == best, m
        rows = ws.store.responses([best])
        for v in ("warmth", "brevity"):
            want = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(rows[v], base_rows[v])])
            assert wins.loc[m, f"win_{v}"] == pytest.approx(want), (m, v)

    # the CSV download carries the same table plus the reference point used
    csv = pd.read_csv(io.StringIO(download_data(at, served))).set_index("method")
    assert set(csv.index) == set(members)
    for m in members:
        assert csv.loc[m, "hypervolume"] == pytest.approx(got.loc[m, "hypervolume"], rel=1e-9)
        assert csv.loc[m, "front size"] == got.loc[m, "front size"]
    assert [csv[f"ref {v}"].iloc[0] for v in ("warmth", "brevity")] == pytest.approx(ref, abs=1e-4)

    # the chart: grid methods as front lines, single-model methods as markers with symbols of their own
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = {t.get("name"): t for t in spec["data"]}
    assert traces["mva-no-hsic"]["mode"] == "lines+markers" and traces["soup"]["mode"] == "lines+markers"
    assert traces["dpo-warmth"]["mode"] == "markers" and traces["dpo-brevity"]["mode"] == "markers"
    assert traces["dpo-warmth"]["marker"]["symbol"] != traces["dpo-brevity"]["marker"]["symbol"]
    assert "base model" in traces and "reference point" in traces
    front_xy = sorted(zip(plotly_array(traces["mva-no-hsic"]["x"]), plotly_array(traces["mva-no-hsic"]["y"])))
    F = np.stack([Z[i] for i in members["mva-no-hsic"]])
    assert np.allclose(front_xy, sorted(map(tuple, F[brute(F)])))
    # per-value bars (Fig.4): one bar per (method, value) at the method's best z
    bars = json.loads(at.get("plotly_chart")[1].proto.spec)["data"]
    assert sorted(t["name"] for t in bars) == sorted(members)
    for t in bars:
        ys = dict(zip(t["x"], plotly_array(t["y"])))
        F = np.stack([Z[i] for i in members[t["name"]]])
        assert ys["warmth"] == pytest.approx(F[:, 0].max(), rel=1e-6)
        assert ys["brevity"] == pytest.approx(F[:, 1].max(), rel=1e-6)

    # a lower reference point adds volume: for one point f, HV = Π (f − ref)
    for n, v in zip(at.number_input, ref):
        n.set_value(float(v) - 1.0)
    at.run()
    after = at.dataframe[0].value.set_index("method")
    f = Z[members["dpo-warmth"][0]]
    assert after.loc["dpo-warmth", "hypervolume"] == pytest.approx(float(np.prod(f - (ref - 1.0))), rel=1e-5)
    for m, ids in members.items():
        F = np.stack([Z[i] for i in ids])
        want = HV(ref_point=-(ref - 1.0))(-F[brute(F)])
        assert after.loc[m, "hypervolume"] == pytest.approx(want, rel=1e-5), m
        assert after.loc[m, "hypervolume"] > got.loc[m, "hypervolume"]
    # a reference above every candidate: no method dominates any volume
    for n, v in zip(at.number_input, ref):
        n.set_value(10.0)
    at.run()
    assert (at.dataframe[0].value["hypervolume"] == 0).all()



@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_compare_one_method_and_empty_choice(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, "pages/compare.py")
    at.multiselect(key="compare_methods").set_value(["soup"]).run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["method"]) == ["soup"]
    at.multiselect(key="compare_methods").set_value([]).run()
    assert any("Choose at least one method" in i.value for i in at.info)


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_compare_across_workspaces(ws, tmp_path, monkeypatch):
    other = make_tiny_workspace(tmp_path / "second")
    groups = method_groups(other, "mva-no-hsic", step=1.0)
    evaluate_base(other, groups[0][0].base)
    sweep_groups("mva-no-hsic", groups)
    monkeypatch.setenv("MVA_WORKSPACE_ROOTS", str(tmp_path))  # other workspaces open only under the allowed roots
    at = open_page(monkeypatch, ws.root, "pages/compare.py")
    at.text_area(key="compare_other_ws").set_value(f"{other.root}\n{tmp_path / 'missing'}\n/etc").run()
    assert not at.exception, at.exception
    got = at.dataframe[0].value.set_index("method")
    assert got.loc["mva-no-hsic @ second", "candidates"] == 4  # the 2 x 2 grid of step 1, written out: 4 points
    here = ws.root.name
    assert got.loc[f"mva-no-hsic @ {here}", "candidates"] == 9 and "soup @ second" in got.index
    assert not any(m.startswith("base") for m in got.index)
    assert any("z-scores are per workspace" in c.value for c in at.caption)
    names = [t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]]
    assert f"base model @ {here}" in names and "base model @ second" in names
    assert any("missing" in e.value and "not an MVA workspace" in e.value for e in at.error)
    assert any(e.value.startswith("/etc: workspace '/etc'") and "is outside the directories this app may open"
               in e.value for e in at.error)


def record_downloads(monkeypatch) -> dict[str, bytes]:
    """What every st.download_button serves, by file id, captured as AppTest's in-memory media storage stores it."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    served: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def load_and_get_id(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        served[file_id] = path_or_data if isinstance(path_or_data, bytes) else open(path_or_data, "rb").read()
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", load_and_get_id)
    return served


def download_data(at, served: dict[str, bytes]) -> str:
    url = at.get("download_button")[0].proto.url  # /mock/media/<file id>.csv
    return served[url.rsplit("/", 1)[-1].split(".")[0]].decode()


@pytest.mark.slow
def test_three_value_fronts_are_said_to_be_projected(monkeypatch, tmp_path):
    """On the 3-value demo the chart shows two values of a front over three: the caption says its points are
    marked, not joined, and may look dominated in the projection (a 2-value workspace's says "Lines")."""
    import shutil

    from mva_core.workspace import REPO_ROOT
    root = tmp_path / "demo3"
    shutil.copytree(REPO_ROOT / "data" / "demo3", root, symlinks=True)
    at = open_page(monkeypatch, root, "pages/compare.py")
    captions = " ".join(c.value for c in at.caption)
    assert "the front of a grid method in all 3 values" in captions and "Lines: the front" not in captions


@pytest.mark.slow  # over 1.4 s (a page run and a 1000-resample bootstrap)
def test_the_paired_difference_reads_the_verdict_the_reports_use(ws, monkeypatch):
    """The page's ΔHV line ends with `PairDifference.verdict` of the same bootstrap (one rule for Compare, `compare`
    and the reports: a bound that reads ±0.0000 is "at the edge of noise", not "ahead")."""
    from mva_core.metrics import compare_with_intervals
    from mva_core.results import load_table

    at = open_page(monkeypatch, ws.root, "pages/compare.py")
    a, b = at.selectbox(key="compare_diff_a").value, at.selectbox(key="compare_diff_b").value
    methods = at.multiselect(key="compare_methods").value
    line = next(m.value for m in at.markdown if m.value.startswith(f"HV({a}) − HV({b})"))
    boot = compare_with_intervals(ws, load_table(ws), methods)
    assert line.endswith(f"**{boot.difference(a, b).verdict(a, b)}**.")
