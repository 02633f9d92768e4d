"""AppTest of the Diagnostics page on a tiny workspace: the heatmaps show cosines and HSIC computed here from the
adapter files, the interference matrix appears on button press and matches a second implementation, training
curves show a stored run (and a hint to train when there is none)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mva_core.data import write_jsonl
from mva_core.hsic import hsic
from tests.apptest import open_page
from tests.test_diagnostics import PAIRS, Reference, np_deltas, one_thread  # noqa: F401 (autouse fixture)
from tests.tiny import make_tiny_workspace

METHOD = "mva-no-hsic"
PAGE = "pages/diagnostics.py"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("diagws")
    ws = make_tiny_workspace(root, method=METHOD)
    for v, pairs in PAIRS.items():
        write_jsonl(root / "pairs" / f"{v}.jsonl", pairs)
    return ws


def chart(at, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert len(found) == 1, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def z_of(trace: dict) -> np.ndarray:
    z = trace["z"]
    if isinstance(z, dict):  # plotly's base64 encoding of a numpy array
        import base64
        flat = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"])
        return flat.reshape([int(s) for s in str(z["shape"]).split(",")]) if "shape" in z else flat
    return np.array(z, dtype=float)


def test_cosine_and_hsic_heatmaps(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, PAGE)
    dirs = ws.vector_dirs(METHOD)
    dense = [np_deltas(d) for d in dirs]
    # cosine heatmap: rows = blocks, columns = "warmth · brevity · <module>"
    trace = chart(at, "diag_cosine_plot")["data"][0]
    z = z_of(trace)
    for r, block in enumerate(trace["y"]):
        for c, col in enumerate(trace["x"]):
            module = next(m for m in dense[0] if m.split(".")[2] == block and m.endswith("." + col.split(" · ")[-1]))
            X, Y = dense[0][module], dense[1][module]
            assert z[r, c] == pytest.approx(float((X * Y).sum() / np.linalg.norm(X) / np.linalg.norm(Y)), abs=1e-9)
    assert len(trace["x"]) == 3 and len(trace["y"]) == 2  # q/v/down_proj × 2 blocks
    # HSIC heatmap, both sample modes, vs hsic() per layer on samples read from the files
    raw = [load_file(str(d / "adapter_model.safetensors")) for d in dirs]
    for mode in ("lora_A", "delta"):
        at.radio(key="diag_hsic_mode").set_value(mode).run()
        assert not at.exception, at.exception
        trace = chart(at, "diag_hsic_plot")["data"][0]
        assert trace["x"] == ["warmth", "brevity"] == trace["y"]

        def samples(i, m):
            if mode == "lora_A":
                return raw[i][f"base_model.model.{m}.lora_A.weight"]
            return torch.tensor(dense[i][m], dtype=torch.float32)

        want = [[sum(float(hsic(samples(i, m), samples(j, m))) for m in dense[0]) for j in range(2)] for i in range(2)]
        np.testing.assert_allclose(z_of(trace), want, rtol=1e-5)


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_interference_on_button(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, PAGE)
    assert not [c for c in at.get("plotly_chart") if c.proto.id.endswith("diag_interference_plot")]
    at.slider(key="diag_n_pairs").set_value(3).run()  # every pair of both values is used
    at.button(key="diag_interference_go").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    z = z_of(chart(at, "diag_interference_plot")["data"][0])
    ref = Reference(str(ws.root / "base"), ws.vector_dirs(METHOD))
    g = [ref.grad([1.0 if k == i else 0.0 for k in range(2)], PAIRS[v])[0] for i, v in enumerate(["warmth", "brevity"])]
    cos = float(g[0] @ g[1] / g[0].norm() / g[1].norm())
    np.testing.assert_allclose(z, [[1.0, cos], [cos, 1.0]], atol=2e-5)
    # a composed point at w = 0 is the base model: every DPO loss is log 2
    at.radio(key="diag_interference_at").set_value("composed").run()
    at.button(key="diag_interference_go").click().run()
    losses = next(d.value for d in at.dataframe if "DPO loss" in d.value.columns)["DPO loss"].to_numpy()
    np.testing.assert_allclose(losses, [np.log(2)] * 2, rtol=1e-6)
    assert any(c.value.endswith("Cached for the next visit (keyed by the vectors' content).") for c in at.caption)
    # issue 31 item 6: the same vectors, pairs and settings again (a new session) are answered from the cache
    at = open_page(monkeypatch, ws.root, PAGE)
    at.slider(key="diag_n_pairs").set_value(3).run()
    at.button(key="diag_interference_go").click().run()
    assert any("Answered from the cache" in c.value for c in at.caption)
    np.testing.assert_allclose(z_of(chart(at, "diag_interference_plot")["data"][0]), z, rtol=1e-12)


def test_training_curves_hint_then_stored_run(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, PAGE)
    assert any("python -m mva_core train" in i.value for i in at.info)
    run = ws.store.start_run("train", {"method": "mva", "alpha": 10.0}, "mva")
    ws.store.finish_run(run, "done", {
        "warmth": {"losses": [0.69, 0.5], "reward_accuracies": [0.0, 1.0], "hsic_terms": [], "ortho_terms": None,
                   "seconds_per_step": 1.0},
        "brevity": {"losses": [0.7, 0.6], "reward_accuracies": [0.5, 0.5], "hsic_terms": [0.4, 0.1],
                    "ortho_terms": None, "seconds_per_step": 1.0}})
    at = open_page(monkeypatch, ws.root, PAGE)
    assert not any("python -m mva_core train" in i.value for i in at.info)
    assert at.selectbox(key="diag_run").value == run
    data = chart(at, "diag_curves_plot")["data"]
    by = {(t["name"], t["meta"]): z_of({"z": t["y"]}) for t in data}
    np.testing.assert_allclose(by[("warmth", "dpo_part")], [0.69, 0.5])  # no earlier vector: the loss is all DPO
    np.testing.assert_allclose(by[("brevity", "dpo_part")], [0.7 - 10 * 0.4, 0.6 - 10 * 0.1])
    np.testing.assert_allclose(by[("brevity", "weighted_penalty")], [4.0, 1.0])
    np.testing.assert_allclose(by[("brevity", "penalty_term")], [0.4, 0.1])  # the HSIC term
    assert ("warmth", "penalty_term") not in by  # the first value has no earlier vector, so no term


def test_no_vectors_says_how_to_train(tmp_path, monkeypatch):
    from mva_core.workspace import Manifest, ValueSpec, Workspace

    Workspace.create(tmp_path, Manifest(base="x", values=[ValueSpec("warmth", "warmth")]))
    at = open_page(monkeypatch, tmp_path, PAGE)
    assert any("python -m mva_core train" in w.value for w in at.warning)


def test_cosine_scale_follows_the_data_unless_fixed(ws, monkeypatch):
    """Issue 31 item 6 (after issue 17 item 3): the layer-cosine heatmap was blank until "zoom" was ticked; by
    default its colours span ± the largest |cosine| shown (and say so), ±1 on request."""
    at = open_page(monkeypatch, ws.root, PAGE)
    trace = chart(at, "diag_cosine_plot")["data"][0]
    assert trace["zmax"] == pytest.approx(np.nanmax(np.abs(z_of(trace)))) and trace["zmin"] == -trace["zmax"]
    assert trace["zmax"] < 1.0
    assert any(c.value.startswith("Colour scale ±") for c in at.caption)
    at.toggle(key="diag_cosine_fixed").set_value(True).run()
    trace = chart(at, "diag_cosine_plot")["data"][0]
    assert (trace["zmin"], trace["zmax"]) == (-1.0, 1.0)


def test_hsic_colours_span_the_data_with_the_null_marked(ws, monkeypatch):
    """Issue 31 item 6: 1.31 … 1.37 rendered in one colour on a 0 … max scale. The colours span the values and
    the pair's permutation-null mean, which is a labelled tick on the colour bar."""
    from mva_core.diagnostics import hsic_null_table, load_method_vectors

    at = open_page(monkeypatch, ws.root, PAGE)
    trace = chart(at, "diag_hsic_plot")["data"][0]
    H = z_of(trace)
    null = hsic_null_table(load_method_vectors(ws, METHOD), mode="lora_A", kernel="gaussian")
    level = float(null["null_mean"].iloc[0])
    lo, hi = min(H.min(), level), max(H.max(), level)
    assert trace["zmin"] == pytest.approx(lo - 0.05 * (hi - lo)) and trace["zmax"] == pytest.approx(hi + 0.05 * (hi - lo))
    bar = trace["colorbar"]
    k = next(i for i, t in enumerate(bar["ticktext"]) if t.startswith("◀ null warmth · brevity"))
    assert bar["tickvals"][k] == pytest.approx(level)


@pytest.mark.slow
def test_demo_opens_on_the_chosen_methods_curves_with_the_twin_overlaid(tmp_path, monkeypatch):
    """Issue 17 item 3: mva's curves (saved in its vectors' metadata, not in a stored run) are offered and opened
    when mva is chosen; mva-no-hsic's HSIC term is drawn dotted beside mva's."""
    import json as _json
    import shutil

    from mva_core.workspace import DEMO_WORKSPACE

    root = tmp_path / "demo"
    shutil.copytree(DEMO_WORKSPACE, root)
    at = open_page(monkeypatch, root, PAGE)
    at.selectbox(key="diag_method").set_value("mva").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="diag_run").value == "vectors:mva"
    data = chart(at, "diag_curves_plot")["data"]
    meta = _json.loads((root / "vectors" / "mva" / "brevity" / "mva_vector.json").read_text())
    solid = next(t for t in data if t["name"] == "brevity" and t["meta"] == "penalty_term")
    np.testing.assert_allclose(z_of({"z": solid["y"]}), meta["hsic_terms"])
    # issue 31 item 6: the DPO part of the demo's mva run starts at log 2, its total (≈ 13.97) is not drawn
    dpo = next(t for t in data if t["name"] == "brevity" and t["meta"] == "dpo_part")
    assert z_of({"z": dpo["y"]})[0] == pytest.approx(np.log(2), abs=1e-5)
    assert not [t for t in data if t["meta"] == "loss"]
    twin = _json.loads((root / "vectors" / "mva-no-hsic" / "brevity" / "mva_vector.json").read_text())
    dotted = next(t for t in data if t.get("line", {}).get("dash") == "dot" and t["name"].startswith("brevity"))
    np.testing.assert_allclose(z_of({"z": dotted["y"]}), twin["hsic_terms"])


# ---- Issue 27 item 1d: HSIC per pair and layer beside its null; the penalty's share of the loss ----

def test_layer_null_heatmap_against_shuffles_done_here(ws, monkeypatch):
    """Each cell's HSIC, null mean and p (hover data) and null-sd distance (colour) against shuffles done here: θⱼ's
    rows permuted with the page's generator (seed 0) and HSIC recomputed from the samples read off the files."""
    at = open_page(monkeypatch, ws.root, PAGE)
    at.select_slider(key="diag_layer_perms").set_value(50).run()
    assert not at.exception, at.exception
    raw = [load_file(str(d / "adapter_model.safetensors")) for d in ws.vector_dirs(METHOD)]
    for estimator in ("biased", "unbiased"):
        at.radio(key="diag_hsic_estimator").set_value(estimator).run()
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
        trace = chart(at, "diag_layer_null_plot")["data"][0]
        assert sorted(trace["x"]) == ["warmth · brevity · down_proj", "warmth · brevity · q_proj",
                                      "warmth · brevity · v_proj"]
        assert trace["y"] == ["0", "1"]
        z, custom = z_of(trace), z_of({"z": trace["customdata"]}).reshape(2, 3, 3)
        for r, block in enumerate(trace["y"]):
            for c, col in enumerate(trace["x"]):
                module = col.split(" · ")[-1]
                key = next(k for k in raw[0] if f"layers.{block}." in k and f"{module}.lora_A" in k)
                X, Y = raw[0][key], raw[1][key]  # rows of lora_A, (r, d_in)
                observed = float(hsic(X, Y, estimator=estimator))
                g = torch.Generator().manual_seed(0)
                null = np.array([float(hsic(X, Y[torch.randperm(len(Y), generator=g)], estimator=estimator))
                                 for _ in range(50)])
                np.testing.assert_allclose(custom[r, c, :2], [observed, null.mean()], rtol=1e-4, atol=1e-6)
                # p = (1 + #{null ≥ observed}) / 51; with r = 4 rows distinct shuffles can tie with the observed
                # value, and float32 rounding decides a tie either way
                ties = np.abs(null - observed) <= 1e-5
                assert (1 + np.sum((null > observed) & ~ties)) / 51 <= custom[r, c, 2] <= (1 + np.sum((null > observed) | ties)) / 51
                assert z[r, c] == pytest.approx((observed - null.mean()) / null.std(ddof=1), rel=1e-3, abs=1e-4)
    # the HSIC matrix follows the estimator too
    H = z_of(chart(at, "diag_hsic_plot")["data"][0])
    want = sum(float(hsic(raw[0][k], raw[1][k], estimator="unbiased")) for k in raw[0] if ".lora_A." in k)
    assert H[0, 1] == pytest.approx(want, rel=1e-4)


def test_curves_show_the_penalty_share_or_say_why_not(ws, monkeypatch):
    with_alpha = ws.store.start_run("train", {"method": "mva", "alpha": 10.0}, "mva")
    ws.store.finish_run(with_alpha, "done", {
        "warmth": {"losses": [0.6931, 0.69], "reward_accuracies": [0.5, 0.5], "hsic_terms": []},
        "brevity": {"losses": [13.970602, 13.857169], "reward_accuracies": [0.5, 1.0],
                    "hsic_terms": [1.3277454, 1.3159922]}})
    older = ws.store.start_run("train", {"method": "mva"}, "mva")  # recorded before α was
    ws.store.finish_run(older, "done", {"brevity": {"losses": [13.9, 13.8], "hsic_terms": [1.3, 1.3]}})
    at = open_page(monkeypatch, ws.root, PAGE)
    at.selectbox(key="diag_run").set_value(with_alpha).run()
    data = chart(at, "diag_curves_plot")["data"]
    by = {(t["name"], t["meta"]): z_of({"z": t["y"]}) for t in data}
    np.testing.assert_allclose(by[("brevity", "penalty_share")], [13.277454 / 13.970602, 13.159922 / 13.857169],
                               rtol=1e-9)
    assert ("warmth", "penalty_share") not in by
    assert any("brevity 95.0% → 95.0%" in c.value for c in at.caption)
    at.selectbox(key="diag_run").set_value(older).run()
    data = chart(at, "diag_curves_plot")["data"]
    assert not [t for t in data if t["meta"] == "penalty_share"]
    by = {(t["name"], t["meta"]): z_of({"z": t["y"]}) for t in data}
    np.testing.assert_allclose(by[("brevity", "loss")], [13.9, 13.8])  # no α: the total, labelled as such
    assert ("brevity", "dpo_part") not in by
    assert any("recorded no penalty weight" in c.value for c in at.caption)


def test_the_dpo_part_and_the_penalty_are_plotted_apart(ws, monkeypatch):
    """Issue 31 item 6: the panel under "DPO loss" showed MVA's total (≈ 13.8) beside a caption about log 2. The
    demo's first mva step: loss 13.970602 = L_DPO + 10 × 1.3277454, so L_DPO = log 2 (the adapter starts at 0)."""
    run = ws.store.start_run("train", {"method": "mva", "alpha": 10.0}, "mva")
    ws.store.finish_run(run, "done", {
        "warmth": {"losses": [0.6931472, 0.69], "reward_accuracies": [0.5, 0.5], "hsic_terms": []},
        "brevity": {"losses": [13.970602, 13.857169], "reward_accuracies": [0.5, 1.0],
                    "hsic_terms": [1.3277454, 1.3159922]}})
    at = open_page(monkeypatch, ws.root, PAGE)
    at.selectbox(key="diag_run").set_value(run).run()
    spec = chart(at, "diag_curves_plot")
    by = {(t["name"], t["meta"]): z_of({"z": t["y"]}) for t in spec["data"]}
    assert by[("brevity", "dpo_part")][0] == pytest.approx(np.log(2), abs=1e-5)
    np.testing.assert_allclose(by[("brevity", "weighted_penalty")], [13.277454, 13.159922], rtol=1e-7)
    assert ("brevity", "loss") not in by  # the total is not drawn where its split is known
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[0].startswith("DPO part L_DPO") and titles[1].startswith("penalty part α × Σⱼ HSIC")
