"""`report` (issue 28 item 1) on a tiny workspace with mva, mva-no-hsic and an α = 1 run under an unrelated dir
name: Table 1's numbers against a brute-force recomputation from the stored per-prompt scores (pymoo HV, loops over
fronts and resamples), the α runs identified from mva_vector.json, what lacks listed with its commands, the CLI
writing an offline HTML (no script fetched) and the markdown, the Paper page, and `make_missing` training ortho."""

import json
import re
import shutil

import numpy as np
import pytest
from pymoo.indicators.hv import HV

from mva_core.cli import main
from mva_core.data import write_jsonl
from mva_core.report import alpha_runs, build_report, front_mask, make_missing
from mva_core.report_render import fmt, to_html
from mva_core.sweep import evaluate_base, method_groups, sweep_groups
from mva_core.workspace import Workspace
from tests.apptest import open_page
from tests.tiny import make_tiny_workspace, make_value_vector

VALUES = ("warmth", "brevity")
SCORERS = ("civility", "brevity")  # civility varies on the tiny model's text (VADER's warmth is mostly 0 there)
TINY_TRAIN = {"max_steps": 2, "lora_r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
              "per_device_batch_size": 2, "max_length": 64, "learning_rate": 1e-3, "seed": 0, "checkpoint_every": 10}


def _set_meta(d, **fields):
    meta = json.loads((d / "mva_vector.json").read_text())
    meta.update(fields)
    (d / "mva_vector.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("reportws")
    ws = make_tiny_workspace(root, n_prompts=4, scorers=SCORERS)
    for i, v in enumerate(VALUES):  # MVA (α = 10) and an α = 1 run in a dir whose name says nothing
        _set_meta(make_value_vector(root / "base", root / "vectors" / "mva" / v, v, seed=20 + i, method="mva"),
                  alpha=10.0, train_config=TINY_TRAIN)
        _set_meta(make_value_vector(root / "base", root / "vectors" / "hsic-weak" / v, v, seed=30 + i, method="mva"),
                  alpha=1.0)
        write_jsonl(root / "pairs" / f"{v}.jsonl", [
            {"prompt": "How do I bake bread?", "chosen": "Mix flour and water, then bake.", "rejected": "No."},
            {"prompt": "Tell me a joke.", "chosen": "A cat sat on a mat.", "rejected": "I hate jokes, terrible."}])
    for method in ("mva-no-hsic", "mva"):  # hsic-weak stays unswept: Fig. 7 lists the sweep it lacks
        groups = method_groups(ws, method, step=0.5)
        evaluate_base(ws, groups[0][0].base)
        sweep_groups(method, groups)
    return ws


def independent(ws: Workspace):
    """From the store alone: per candidate (id, weights, vector hashes, raw means (V,), per-prompt rewards (P, V)),
    the base's per-prompt rewards and z of every candidate; the shared reference point."""
    cands = ws.store.candidates()
    base_id = int(cands.loc[cands["method"] == "base", "id"].iloc[-1])
    per_prompt = {int(i): ws.store.responses([int(i)]).sort_values("prompt_idx")[list(SCORERS)].to_numpy(float)
                  for i in cands["id"]}
    base = per_prompt[base_id]
    info = {int(r.id): (tuple(r.weights), r.vector_hashes, r.method) for r in cands.itertuples()}
    return info, per_prompt, base, base_id


def z_of(R, base):
    mu, sd = base.mean(axis=0), base.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (R.mean(axis=0) - mu) / sd


def brute_front(Z):
    return [i for i in range(len(Z)) if not any((Z[j] >= Z[i]).all() and (Z[j] > Z[i]).any() for j in range(len(Z)))]


def setting_ids(info, method, simplex):
    hashes = {h for w, h, m in info.values() if m == method}
    assert len(hashes) == 1
    return sorted(i for i, (w, h, m) in info.items() if h in hashes and (not simplex or abs(sum(w) - 1) < 1e-9))


@pytest.mark.slow  # the shared fixture sweeps 2 grids on the tiny model: 30-80 s on 2 shared cores
def test_table1_matches_brute_force(ws):
    report = build_report(ws, "W", n_resamples=1000, seed=0)
    info, per_prompt, base, base_id = independent(ws)
    Z_all = np.stack([z_of(per_prompt[i], base) for i in info])
    ref = np.minimum(Z_all.min(axis=0), 0.0)  # every candidate and the base (z = 0)
    assert report.ref == pytest.approx(ref)
    rows = {r.label: r for r in report.table1}
    assert list(rows) == ["Base", "w/o All", "w/o HSIC", "w/o Extrap.", "MVA"]
    want_sets = {"Base": [base_id], "w/o All": setting_ids(info, "mva-no-hsic", True),
                 "w/o HSIC": setting_ids(info, "mva-no-hsic", False), "w/o Extrap.": setting_ids(info, "mva", True),
                 "MVA": setting_ids(info, "mva", False)}
    assert len(want_sets["w/o HSIC"]) == 9 and len(want_sets["w/o Extrap."]) == 3  # grid 0, .5, 1; its simplex
    est = {}
    for label, ids in want_sets.items():
        Z = np.stack([z_of(per_prompt[i], base) for i in ids])
        front = brute_front(Z)
        raw = np.stack([per_prompt[ids[k]].mean(axis=0) for k in front]).mean(axis=0)
        better = Z[(Z > ref).all(axis=1)]
        hv = HV(ref_point=-ref)(-better) if len(better) else 0.0
        P = np.stack([np.arange(11) / 10, 1 - np.arange(11) / 10], axis=1)
        mip = np.mean([max(p @ z for z in Z) for p in P])
        row = rows[label]
        assert sorted(row.candidate_ids) == ids, label
        assert sorted(row.front_ids) == sorted(ids[k] for k in front), label
        assert row.hv.estimate == pytest.approx(hv, rel=1e-9, abs=1e-12), label
        assert row.mip.estimate == pytest.approx(mip, rel=1e-9, abs=1e-12), label
        assert [iv.estimate for iv in row.rewards] == pytest.approx(raw, rel=1e-9), label
        for iv in [row.hv, row.mip, *row.rewards]:
            assert iv.low <= iv.high + 1e-12
        est[label] = (hv, raw)
    for label, row in rows.items():  # full MVA − each setting
        if label == "MVA":
            assert row.diff_hv is None
            continue
        assert row.diff_hv.estimate == pytest.approx(est["MVA"][0] - est[label][0], abs=1e-12)
        assert [d.estimate for d in row.diff_rewards] == pytest.approx(est["MVA"][1] - est[label][1], abs=1e-12)

    # the paired interval of MVA − w/o Extrap. per value: a loop over the same seeded resamples of the prompts,
    # each recomputing z (against the base on those prompts), the front and the mean raw reward over it
    idx = np.random.default_rng(0).integers(0, base.shape[0], size=(1000, base.shape[0]))
    def summary(ids, rows_):
        Z = np.stack([z_of(per_prompt[i][rows_], base[rows_]) for i in ids])
        return np.stack([per_prompt[ids[k]][rows_].mean(axis=0) for k in brute_front(Z)]).mean(axis=0)
    diffs = np.stack([summary(want_sets["MVA"], r) - summary(want_sets["w/o Extrap."], r) for r in idx])
    for j in range(len(VALUES)):
        lo, hi = np.percentile(diffs[:, j], [2.5, 97.5])
        got = rows["w/o Extrap."].diff_rewards[j]
        assert (got.low, got.high) == pytest.approx((lo, hi), abs=1e-9)


def test_front_mask_matches_brute_force():
    rng = np.random.default_rng(3)
    Z = rng.integers(0, 4, size=(50, 7, 2)).astype(float)  # ties and duplicates on purpose
    Z[0, 2] = np.nan
    got = front_mask(Z)
    for n in range(len(Z)):
        finite = [k for k in range(7) if np.isfinite(Z[n, k]).all()]
        want = [finite[i] for i in brute_front(Z[n, finite])]
        assert np.flatnonzero(got[n]).tolist() == want


@pytest.mark.slow  # the shared fixture sweeps 2 grids on the tiny model: 30-80 s on 2 shared cores
def test_alpha_runs_fig5_fig6_and_what_lacks(ws):
    assert alpha_runs(ws) == {1.0: "hsic-weak", 10.0: "mva"}  # read from mva_vector.json, not from the dir name
    report = build_report(ws, "W", n_resamples=1000)
    assert [s.label for s in report.fig7.series] == ["α = 10 (mva)"] and not report.fig7.differences
    lacks = {m.item: m for m in report.missing}
    assert lacks["Fig. 7 (α = 1)"].commands == ["python -m mva_core sweep --workspace W --method hsic-weak --grid 0:1:0.5"]
    assert [(s.action, s.method) for s in lacks["Fig. 7 (α = 1)"].steps] == [("sweep", "hsic-weak")]
    assert "Fig. 7 (α = 50)" in lacks and "Fig. 4 (ortho)" in lacks and "MI-EPO table (policies)" in lacks
    a50 = lacks["Fig. 7 (α = 50)"]
    assert "--method mva" in a50.commands[0] and "--alpha 50" in a50.commands[0]
    assert "--out W/vectors/mva-alpha50" in a50.commands[0] and "--steps 2" in a50.commands[0]
    assert "--data warmth=W/pairs/warmth.jsonl" in a50.commands[0]
    assert a50.commands[1] == "python -m mva_core sweep --workspace W --method mva-alpha50 --grid 0:1:0.5"
    assert [(s.action, s.method, s.out, s.settings) for s in a50.steps][0] == ("train", "mva", "mva-alpha50",
                                                                              {"alpha": 50.0})
    assert not any(m.item.startswith("Table 1") for m in report.missing)
    # Fig. 5: the w = e_v candidate of mva and the dpo-<value> row (the mva-no-hsic vector at e_v)
    info, per_prompt, base, _ = independent(ws)
    for j, row in enumerate(report.fig5):
        e = tuple(float(k == j) for k in range(2))
        assert info[row.mva_id][0] == e and info[row.mva_id][2] == "mva"
        assert info[row.dpo_id][0] == e and info[row.dpo_id][2] == "mva-no-hsic"
        want = z_of(per_prompt[row.mva_id], base) - z_of(per_prompt[row.dpo_id], base)
        assert [d.estimate for d in row.diff] == pytest.approx(want, abs=1e-12)
    assert sorted(c.method for c in report.fig6) == ["hsic-weak", "mva", "mva-no-hsic"]
    assert all(len(c.frame) == 6 for c in report.fig6)  # 1 pair × 2 blocks × (q_proj, v_proj, down_proj)
    # off-simplex marks: the grid 0, .5, 1 has 3 of its 9 points on the simplex
    mva = next(s for s in report.fronts.series if s.name == "mva")
    assert mva.off_simplex.sum() == 6


@pytest.mark.slow
def test_cli_writes_offline_html_and_markdown(ws, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "--workspace", str(ws.root), "--out", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    tags = re.findall(r"<script\b[^>]*>", page, flags=re.I)
    assert tags and not any(re.search(r"\bsrc\s*=", t, flags=re.I) for t in tags)  # nothing fetched
    assert not re.search(r"<(link|img|iframe)\b[^>]*(href|src)\s*=\s*['\"]?https?:", page, flags=re.I)
    assert "Plotly" in page and page.count("plotly-graph-div") >= 4
    report = build_report(ws, str(ws.root))
    for row in report.table1:  # the markdown's Table 1: every setting with its intervals
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {row.label} |"))
        assert fmt(row.hv, 4) in line and all(fmt(iv) in line for iv in row.rewards)
    assert "| w/o HSIC |" in md and "| w/o Extrap. |" in md
    assert "Fig. 4 (ortho)" in md and f"--workspace {ws.root} --method ortho" in md
    assert "Fig. 7 (α = 50)" in md
    assert "Fig. 4 (ortho)" in page
    # a rerun replaces its own files; a file of those names it did not write is refused, nothing written
    assert main(["report", "--workspace", str(ws.root), "--out", str(out)]) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.md").write_text("my notes\n")
    capsys.readouterr()
    assert main(["report", "--workspace", str(ws.root), "--out", str(other)]) == 2
    assert "not written by `report`" in capsys.readouterr().err
    assert (other / "report.md").read_text() == "my notes\n" and not (other / "report.html").exists()
    assert not any(p.name.startswith(".report") for p in other.iterdir())


@pytest.mark.slow  # the shared fixture sweeps 2 grids on the tiny model: 30-80 s on 2 shared cores
def test_html_of_report_has_every_section(ws):
    page = to_html(build_report(ws, "W"))
    for title in ("Table 1", "Fig. 4", "Fig. 5", "Fig. 6", "Fig. 7", "MI-EPO", "What this workspace lacks"):
        assert f"<h2>{title}" in page


@pytest.mark.slow
def test_paper_page(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, "pages/paper.py")
    report = build_report(ws, str(ws.root))
    assert [h.value for h in at.header][:2] == ["Table 1: ablation", "Every compared method"]
    t1 = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert t1["setting"].tolist() == ["Base", "w/o All", "w/o HSIC", "w/o Extrap.", "MVA"]
    assert t1["HV"].tolist() == [fmt(r.hv, 4) for r in report.table1]
    lacks = next(d.value for d in at.dataframe if "lacks" in d.value.columns)
    assert "Fig. 4 (ortho)" in lacks["lacks"].tolist()
    assert any("Fig. 7 (α = 50)" in w.value for w in at.warning)
    assert at.get("plotly_chart") and len(at.get("plotly_chart")) >= 4


@pytest.mark.slow
def test_make_missing_trains_and_sweeps_ortho(ws, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(ws.root, root)
    copy = Workspace(root)
    report = build_report(copy, str(root))
    done = make_missing(copy, report.missing_for("Fig. 4"))
    assert done[0].startswith("trained ortho") and done[1].startswith("swept ortho")
    meta = json.loads((root / "vectors" / "ortho" / "warmth" / "mva_vector.json").read_text())
    assert meta["method"] == "ortho" and meta["steps"] == 2  # trained like the workspace's mva vectors
    after = build_report(copy, str(root))
    assert [s.name for s in after.fig4.series] == ["mva", "ortho"] and not after.missing_for("Fig. 4")
    assert after.fig4.differences[0][0] == "mva − ortho"
    done = make_missing(copy, after.missing_for("Fig. 7 (α = 1)"))  # the α = 1 run in its odd-named dir, swept
    assert done == ["swept hsic-weak at step 0.5: 9 candidates (9 generated)"]
    fig7 = build_report(copy, str(root)).fig7
    assert [s.label for s in fig7.series] == ["α = 1 (hsic-weak)", "α = 10 (mva)"]
    assert [d[0] for d in fig7.differences] == ["mva − hsic-weak"]


@pytest.mark.slow
def test_report_on_a_copy_of_the_shipped_demo(tmp_path):
    """Done means (issue 28): `report` on a copy of data/demo writes the HTML and the markdown with every table and
    figure; Table 1 has the w/o HSIC and w/o Extrap. rows with intervals. The shipped demo is only read."""
    from mva_core.workspace import DEMO_WORKSPACE
    root = tmp_path / "demo"
    shutil.copytree(DEMO_WORKSPACE, root)
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert main(["report", "--workspace", str(root), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    for label in ("Base", "w/o All", "w/o HSIC", "w/o Extrap.", "MVA"):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {label} |"))
        assert re.search(r"\d\.\d{4} \[-?\d\.\d{4}, -?\d\.\d{4}\]", line), line  # HV with its interval
    for title in ("## Table 1", "## Fig. 4", "## Fig. 5", "## Fig. 6", "## Fig. 7", "## MI-EPO"):
        assert title in md
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert not any(re.search(r"\bsrc\s*=", t) for t in re.findall(r"<script\b[^>]*>", page))
    after = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before  # nothing cached or written in the workspace


def test_cosine_scale_is_shared_by_every_map():
    """Fig. 6's colour scale: ± the largest |cosine| over every vector set (1 when none is defined)."""
    import pandas as pd

    from mva_core.report import CosineMap
    from mva_core.report_render import cosine_chart, cosine_scale
    def cm(name, cos):
        return CosineMap(name, name, pd.DataFrame({"pair": "a · b", "module": "q_proj", "block": ["0", "1"],
                                                   "cosine": cos}))
    maps = [cm("mva", [0.01, -0.02]), cm("mva-no-hsic", [0.3, np.nan])]
    assert cosine_scale(maps) == pytest.approx(0.3)
    assert cosine_scale([cm("x", [np.nan, np.nan])]) == 1.0 and cosine_scale([]) == 1.0
    trace = cosine_chart(maps[0], cosine_scale(maps)).data[0]
    assert (trace.zmin, trace.zmax) == (-0.3, 0.3)


def test_alpha_runs_compare_alpha_only(tmp_path):
    """Fig. 7's runs: `method` "mva" with an `alpha`, whatever the dir name, and the same other settings as
    vectors/mva (an HSIC-on-ΔW run is a variant, not another α); `mva` wins a tie; other methods never count."""
    from mva_core.workspace import Manifest, ValueSpec
    ws = Workspace.create(tmp_path, Manifest(values=[ValueSpec("warmth", "warmth"), ValueSpec("brevity", "brevity")]))
    runs = {"mva": {"alpha": 10.0, "hsic_mode": "lora_A"}, "z-copy": {"alpha": 10.0, "hsic_mode": "lora_A"},
            "weak": {"alpha": 1.0, "hsic_mode": "lora_A"}, "mva-delta": {"alpha": 50.0, "hsic_mode": "delta"},
            "strong": {"alpha": 50.0, "hsic_mode": "lora_A"}, "orth": {"alpha": 5.0, "method": "ortho"},
            "half": {"alpha": 2.0, "hsic_mode": "lora_A", "only": "warmth"}}
    for name, meta in runs.items():
        for v in ("warmth", "brevity")[:1 if meta.get("only") else 2]:
            d = tmp_path / "vectors" / name / v
            d.mkdir(parents=True)
            (d / "adapter_config.json").write_text("{}")
            (d / "mva_vector.json").write_text(json.dumps({"method": "mva", "value": v, **meta}))
    assert alpha_runs(ws) == {1.0: "weak", 10.0: "mva", 50.0: "strong"}


def test_cli_refuses_what_it_cannot_report(tmp_path, capsys):
    """No base-model candidate yet (nothing swept): one line naming the sweep that makes it, nothing written; too few
    resamples: refused before any work."""
    root = tmp_path / "fresh"
    make_tiny_workspace(root, n_prompts=4)
    out = tmp_path / "rep"
    assert main(["report", "--workspace", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no base-model candidate" in err and f"sweep --workspace {root} --method" in err
    assert not out.exists()
    assert main(["report", "--workspace", str(root), "--out", str(out), "--resamples", "10"]) == 2
    assert "--resamples 10" in capsys.readouterr().err


@pytest.mark.slow
def test_paper_page_axes_on_the_3_value_demo(tmp_path, monkeypatch):
    """On a copy of data/demo3 the front charts pick two of the three values; the first chart follows the choice."""
    from mva_core.workspace import REPO_ROOT
    root = tmp_path / "demo3"
    shutil.copytree(REPO_ROOT / "data" / "demo3", root)
    at = open_page(monkeypatch, root, "pages/paper.py")
    at.selectbox(key="paper_x").set_value(2).run()
    assert not at.exception
    layout = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
    assert (layout["xaxis"]["title"]["text"], layout["yaxis"]["title"]["text"]) == \
        ("relevance (z vs base)", "brevity (z vs base)")
