"""Issue 16 item 3: sampled decoding (num_samples responses per prompt, each seeded by its candidate, prompt and
sample), per-prompt means for s(w) with the per-sample scores kept, and CRD (MI-EPO) from the samples.

CRD is checked against a hand-worked case and, on a real sampled sweep of a tiny model, against a computation from
the raw SQLite rows with a hand-written 2×2 determinant; reproducibility against a second, fresh run."""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from mva_core.cli import main
from mva_core.config import ConfigError, DecodingConfig
from mva_core.generate import RowSampler, generate_responses, generate_samples
from mva_core.pareto import crd, preference_vectors
from mva_core.store import Store
from mva_core.sweep import Evaluator
from mva_core.workspace import DEMO_WORKSPACE, Workspace
from tests.tiny import make_tiny_workspace

SCORERS = ("civility", "brevity")  # of the values warmth, brevity
SAMPLED = DecodingConfig(max_new_tokens=8, batch_size=5, do_sample=True, num_samples=3, temperature=1.0, seed=7)


# ---- CRD: a hand-worked case ----
def test_crd_by_hand():
    # p1: the corners of a 2×2 square: var x = var y = 4/3 (deviations ±1, 4 rows, /3), cov = 0 -> det = 16/9
    # p2: three points on a line y = x: Cov is singular -> det = 0.   CRD = (16/9 + 0) / 2 = 8/9
    square = np.array([[0, 0], [2, 0], [0, 2], [2, 2]], dtype=float)
    line = np.array([[0, 0], [1, 1], [2, 2]], dtype=float)
    assert crd([square, line]) == pytest.approx(8 / 9, abs=1e-12)
    # one objective: det of a 1×1 covariance is the variance: values 1, 2, 3, 6 -> mean 3, SS = 4+1+0+9 = 14, /3
    assert crd([np.array([[1.0], [2.0], [3.0], [6.0]])]) == pytest.approx(14 / 3)


def test_num_samples_needs_sampling_and_old_keys_stay():
    with pytest.raises(ConfigError, match="num_samples=4 with do_sample=false.*set do_sample=true"):
        DecodingConfig(num_samples=4)
    with pytest.raises(ConfigError, match="num_samples=0"):
        DecodingConfig(do_sample=True, num_samples=0)
    # The shipped demo's candidates were keyed by a decoding fingerprint from before num_samples existed: the
    # default (1) must not change it, or every stored candidate would be generated again.
    manifest = json.loads((DEMO_WORKSPACE / "workspace.json").read_text())
    con = sqlite3.connect(f"file:{DEMO_WORKSPACE / 'mva.sqlite'}?mode=ro&immutable=1", uri=True)  # writes no -shm
    (stored,) = con.execute("SELECT decoding FROM candidates WHERE method='base'").fetchone()
    con.close()
    assert DecodingConfig.from_dict(manifest["decoding"]).fingerprint() == stored


# ---- the sampler: one seeded stream per row, the right distribution ----
def test_row_sampler_draws_from_the_tempered_nucleus():
    probs = torch.tensor([0.6, 0.25, 0.1, 0.05])
    n = 4000
    scores = probs.log().repeat(n, 1)  # (n, 4) the same logits in every row
    out = RowSampler(range(n), temperature=1.0, top_p=1.0)(torch.zeros(n, 1, dtype=torch.long), scores)
    drawn = out.argmax(dim=1)
    assert torch.isinf(out).sum() == n * 3  # every row keeps exactly its drawn token
    freq = torch.bincount(drawn, minlength=4).double() / n
    assert torch.allclose(freq, probs.double(), atol=0.03), freq  # 4000 draws: sd of a share <= 0.008
    # top_p = 0.8: the smallest set with mass >= 0.8 is {0.6, 0.25}, renormalised
    out = RowSampler(range(n), temperature=1.0, top_p=0.8)(torch.zeros(n, 1, dtype=torch.long), scores)
    freq = torch.bincount(out.argmax(dim=1), minlength=4).double() / n
    assert freq[2:].sum() == 0 and freq[0] == pytest.approx(0.6 / 0.85, abs=0.03)
    # temperature 0.5: probabilities squared and renormalised
    out = RowSampler(range(n), temperature=0.5, top_p=1.0)(torch.zeros(n, 1, dtype=torch.long), scores)
    freq = torch.bincount(out.argmax(dim=1), minlength=4).double() / n
    assert torch.allclose(freq, probs.double() ** 2 / (probs.double() ** 2).sum(), atol=0.03), freq
    # a row's draw depends on its seed only, not on the rows beside it
    alone = RowSampler([123], 1.0, 1.0)(torch.zeros(1, 1, dtype=torch.long), scores[:1]).argmax(dim=1)
    beside = RowSampler([5, 123, 9], 1.0, 1.0)(torch.zeros(3, 1, dtype=torch.long), scores[:3]).argmax(dim=1)
    assert alone.item() == beside[1].item()


@pytest.fixture(scope="module")
def sampled_ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sampled") / "ws"
    # civility varies continuously on the tiny model's text (VADER warmth is 0 on most of it: a singular Cov)
    make_tiny_workspace(root, n_prompts=3, decoding=SAMPLED, scorers=SCORERS)
    return root


@pytest.mark.slow
def test_samples_do_not_depend_on_the_chunk(sampled_ws):
    """The weight-batched generation gives each (candidate, prompt, sample) the same response whichever candidates
    share its generate call, and whatever the batch size."""
    ws = Workspace(sampled_ws)
    ev = Evaluator(ws, "mva-no-hsic")
    W = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [0.25, 0.75]])
    together = ev.generate(W)  # 4 × 3 × 3 rows in batches of 5: candidates mixed within a call
    alone = [ev.generate(W[k:k + 1])[0] for k in range(len(W))]  # one candidate at a time: other neighbours
    assert together == alone
    # the same candidates (same identities) in batches of 2 and of 36
    keys = [ev.spec(w, "").key for w in W]
    for batch_size in (2, 36):
        other = DecodingConfig(**{**SAMPLED.to_dict(), "batch_size": batch_size})
        assert generate_samples(ev.model, ev.base.tokenizer, ev.prompts, W, other, identities=keys) == together
    for cand in together:
        assert all(len(per_prompt) == 3 for per_prompt in cand)
        assert any(len(set(per_prompt)) > 1 for per_prompt in cand)  # samples of one prompt differ
    assert together[0] != together[1]  # candidates draw their own streams
    # greedy generation is unchanged: one response per prompt, and refuses a sampled multi-response config
    with pytest.raises(ConfigError, match="generate_samples"):
        generate_responses(ev.model, ev.base.tokenizer, ev.prompts, W[:1], SAMPLED)


def stored_samples(root: Path) -> list[tuple]:
    con = sqlite3.connect(root / "mva.sqlite")
    rows = con.execute("SELECT c.key, s.prompt_idx, s.sample_idx, s.response FROM samples s "
                       "JOIN candidates c ON c.id = s.candidate_id ORDER BY c.key, s.prompt_idx, s.sample_idx").fetchall()
    con.close()
    return rows


def compare_json(root: Path) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["compare", "--workspace", str(root), "--json"]) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def swept(sampled_ws) -> Path:
    assert main(["sweep", "--workspace", str(sampled_ws), "--method", "mva-no-hsic", "--grid", "0:1:0.5"]) == 0
    return sampled_ws


@pytest.mark.slow
def test_sampled_sweep_gives_crd_and_reruns_identically(swept, tmp_path):
    sampled_ws = swept
    fresh = tmp_path / "again"
    shutil.copytree(sampled_ws, fresh)
    (fresh / "mva.sqlite").unlink()
    # the rerun on a fresh store, in other chunks: byte-identical responses
    assert main(["sweep", "--workspace", str(fresh), "--method", "mva-no-hsic", "--grid", "0:1:0.5",
                 "--chunk", "2"]) == 0
    first = stored_samples(sampled_ws)
    assert len(first) == (9 + 1) * 3 * 3 and first == stored_samples(fresh)  # 9 candidates + base, 3 prompts × 3

    doc = compare_json(sampled_ws)
    m = doc["methods"]["mva-no-hsic"]
    assert isinstance(m["crd"], float) and m["crd_why"] is None and m["crd_samples_per_preference"] == 9
    assert m["crd"] > 1e-6  # both values vary over the samples: a non-degenerate covariance
    assert m["crd"] == pytest.approx(crd_from_sqlite(sampled_ws, "mva-no-hsic"), rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_page_cli_and_report_show_one_crd(swept, monkeypatch):
    """One computation (results.crd_by_method) behind the Compare page, `compare --json` and `demo report`."""
    from mva_core.demo import demo_report
    from tests.apptest import open_page

    doc = compare_json(swept)
    at = open_page(monkeypatch, swept, "pages/compare.py")
    table = next(d.value for d in at.dataframe if "CRD" in d.value.columns).set_index("method")
    report = {row[0]: (row[1], row[2]) for row in
              re.findall(r"^\| (\S+) \| \d+ \| \d+ \| .*\| (\S+) \[([^|]+)\] \|$", demo_report(Workspace(swept)),
                         re.M)}
    assert set(table.index) == set(doc["methods"]) == set(report)
    for name, m in doc["methods"].items():
        assert isinstance(m["crd"], float), name
        assert table.loc[name, "CRD"] == pytest.approx(m["crd"], rel=1e-12)
        assert float(report[name][0]) == pytest.approx(m["crd"], rel=1e-3)
        assert [float(x) for x in report[name][1].split(",")] == pytest.approx(m["crd_ci"], rel=1e-3)
        assert table.loc[name, "CRD 95% CI"] == "[{:.4g}, {:.4g}]".format(*m["crd_ci"])


def crd_from_sqlite(root: Path, method: str, prompts: np.ndarray | None = None) -> float:
    """CRD recomputed from the raw rows: per-prompt means -> z against the base -> s(p) by brute force (the front by
    pairwise dominance, then p·z maximised) -> the chosen candidate's samples in z -> 2×2 det by hand. `prompts`
    (indices, repeats allowed): on those prompts only, as one bootstrap resample."""
    con = sqlite3.connect(root / "mva.sqlite")
    cands = {cid: (m, json.loads(w)) for cid, m, w in con.execute("SELECT id, method, weights FROM candidates")}
    samples: dict[int, dict[str, np.ndarray]] = {}
    for cid, j, k, scorer, value in con.execute("SELECT candidate_id, prompt_idx, sample_idx, scorer, value "
                                                "FROM sample_scores"):
        samples.setdefault(cid, {}).setdefault(scorer, np.zeros((3, 3)))[j, k] = value
    con.close()
    if prompts is not None:
        samples = {c: {v: rows[prompts] for v, rows in per.items()} for c, per in samples.items()}
    values = list(SCORERS)  # the scorers of warmth and brevity
    (base,) = [c for c, (m, _) in cands.items() if m == "base"]
    base_means = np.stack([samples[base][v].mean(axis=1) for v in values], axis=1)  # (P, V)
    mu, sd = base_means.mean(axis=0), base_means.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    ids = [c for c, (m, _) in cands.items() if m == method]
    z = {c: (np.array([samples[c][v].mean() for v in values]) - mu) / sd for c in ids}
    front = [c for c in ids if not any((z[d] >= z[c]).all() and (z[d] > z[c]).any() for d in ids)]
    dets = []
    for p in preference_vectors(2):
        best = max(front, key=lambda c: (float(p @ z[c]), -c))  # ties: the lowest id, as pareto does
        x, y = ((samples[best][v].reshape(-1) - mu[i]) / sd[i] for i, v in enumerate(values))
        cxx, cyy = np.sum((x - x.mean()) ** 2) / (len(x) - 1), np.sum((y - y.mean()) ** 2) / (len(y) - 1)
        cxy = np.sum((x - x.mean()) * (y - y.mean())) / (len(x) - 1)
        dets.append(cxx * cyy - cxy ** 2)
    return float(np.mean(dets))


@pytest.mark.slow
def test_crd_interval_resamples_the_prompts_as_a_brute_force_does(swept):
    """Each resample and each left-out prompt (the jackknife): z-scores, fronts and each p's choice recomputed on
    those prompts, then their samples; the BCa interval from Efron's formulas over those brute-force values."""
    from mva_core.bootstrap import resample_indices
    from mva_core.metrics import crd_interval, preference_choice, prompt_rewards
    from mva_core.results import candidate_table
    from tests.test_bootstrap import bca_by_hand

    ws = Workspace(swept)
    table = candidate_table(ws)
    group = table[table["method"] == "mva-no-hsic"]
    P = preference_vectors(2)
    chosen = [preference_choice(group, ws.value_names, p) for p in P]
    base = prompt_rewards(ws, table.loc[table["method"] == "base", "id"].tolist())[0]
    estimate = crd_from_sqlite(swept, "mva-no-hsic")
    got = crd_interval(ws, group, P, chosen, base, estimate, n_resamples=60, seed=3)
    want = np.array([crd_from_sqlite(swept, "mva-no-hsic", prompts=idx) for idx in resample_indices(3, 60, seed=3)])
    jackknife = np.array([crd_from_sqlite(swept, "mva-no-hsic", prompts=np.delete(np.arange(3), j)) for j in range(3)])
    assert got.estimate == estimate and got.method == "BCa"
    assert [got.low, got.high] == pytest.approx(bca_by_hand(want, jackknife, estimate), rel=1e-9)
    assert len(set(np.round(want, 9))) > 1  # the resamples differ: the interval has a width
    low, high = compare_json(swept)["methods"]["mva-no-hsic"]["crd_ci"]
    assert low < high


def test_greedy_workspace_has_no_crd_and_says_why(tmp_path):
    root = tmp_path / "ws"
    make_tiny_workspace(root, n_prompts=2)
    assert main(["sweep", "--workspace", str(root), "--method", "mva-no-hsic", "--grid", "0:1:1"]) == 0
    m = compare_json(root)["methods"]["mva-no-hsic"]
    assert m["crd"] is None and "decoded greedily" in m["crd_why"] and "do_sample=true" in m["crd_why"]
    assert stored_samples(root) == []  # greedy candidates store no samples



@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_sweep_samples_adds_a_sampled_evaluation_and_the_report_makes_it(tmp_path):
    """`sweep --samples N` (issue #28 item 2, a CLI for what `demo build` does): the greedy workspace's candidates
    decoded again with N samples per prompt, stored beside them; `report --train-missing`'s sampled-evaluation step
    (the report's CRD entry) decodes the very same candidates, and a library call stores the same samples."""
    from mva_core.metrics import crd_by_method, sample_rewards, sampled_twins
    from mva_core.report import Missing, Step, make_missing
    from mva_core.results import load_table
    from mva_core.sweep import sampled_decoding, sampled_evaluation

    root = tmp_path / "ws"
    make_tiny_workspace(root, n_prompts=2, scorers=SCORERS)
    assert main(["sweep", "--workspace", str(root), "--method", "mva-no-hsic", "--grid", "0:1:1"]) == 0
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["sweep", "--workspace", str(root), "--method", "mva-no-hsic", "--grid", "0:1:1",
                     "--samples", "1"]) != 0
    assert "--samples 1: CRD needs at least 2 sampled responses per prompt, e.g. --samples 3" in err.getvalue()
    twin = tmp_path / "twin"
    shutil.copytree(root, twin)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["sweep", "--workspace", str(root), "--method", "mva-no-hsic", "--grid", "0:1:1",
                     "--samples", "3"]) == 0
    assert "4 candidates of sampled evaluation (3 responses per prompt) of mva-no-hsic" in out.getvalue()
    ws = Workspace(root)
    greedy = [int(i) for i in load_table(ws).for_method("mva-no-hsic").ids()]
    twins = sampled_twins(ws, greedy)
    assert sorted(twins) == sorted(greedy)  # every greedy candidate has its sampled twin
    R = sample_rewards(ws, [twins[greedy[0]]])[twins[greedy[0]]]
    assert R.shape == (2, 3, 2)  # prompts x samples x values
    assert crd_by_method(ws, load_table(ws), ["mva-no-hsic"])["mva-no-hsic"].value is not None
    step = Missing("MI-EPO table (CRD)", "test", [], [Step("sample", "mva-no-hsic", step=1.0)])
    assert make_missing(ws, [step]) == [  # the CLI's candidates: the same keys, nothing to generate
        "sampled mva-no-hsic (3 responses per prompt) at step 1: 4 candidates (0 generated)"]
    lib = Workspace(twin)  # the library call, on the greedy twin, stores the same samples
    assert sampled_evaluation(lib, "mva-no-hsic", sampled_decoding(lib.manifest.decoding, 3), 1.0).generated == 4
    lib_twins = sampled_twins(lib, greedy)
    np.testing.assert_array_equal(sample_rewards(lib, [lib_twins[greedy[0]]])[lib_twins[greedy[0]]], R)

# ---- the store: additive schema ----
def test_old_store_opens_unchanged_and_gains_the_sample_tables(tmp_path):
    old = tmp_path / "mva.sqlite"
    shutil.copy(DEMO_WORKSPACE / "mva.sqlite", old)
    con = sqlite3.connect(old)
    n, means = con.execute("SELECT COUNT(*) FROM candidates").fetchone()[0], dict(con.execute(
        "SELECT candidate_id, AVG(value) FROM scores WHERE scorer='warmth' GROUP BY candidate_id"))
    con.close()
    before = old.read_bytes()
    st = Store(old)
    table = st.candidates()
    assert len(table) == n
    assert np.allclose(table.set_index("id")["s_warmth"].loc[list(means)].to_numpy(), list(means.values()))
    assert st.samples(table["id"].tolist()[:5]).empty
    assert old.read_bytes() == before  # reading never writes (issue 25 item 10): the tables it lacks are not added
    st.start_run("probe", {})  # the first write adds them
    con = sqlite3.connect(old)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    assert {"samples", "sample_scores", "judge_verdicts"} <= tables
    con.close()


def test_read_only_store_lacking_only_the_judge_table_keeps_its_samples(swept, tmp_path):
    """A store with samples but from before judge verdicts, read-only: only the missing table is made (temporary,
    empty); the samples in the file stay visible, not shadowed by an empty temporary twin."""
    from tests.test_faults_workspace import in_mount_namespace

    root = tmp_path / "ws"
    shutil.copytree(swept, root)
    con = sqlite3.connect(root / "mva.sqlite")
    con.execute("DROP TABLE IF EXISTS judge_verdicts")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.commit()
    n = con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    con.close()
    script = ("from mva_core.store import Store; s = Store('$WS/mva.sqlite'); assert s.read_only; "
              "t = s.candidates(); print('samples', len(s.samples(t['id'].tolist())), "
              "'verdicts', len(s.judge_verdicts('judge:hf:x', 1, 1)))")
    proc = in_mount_namespace(f'mount --bind -o ro "$WS" "$WS"\n{sys.executable} -c "{script}"', {"WS": root})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"samples {n} verdicts 0" in proc.stdout and n > 0


def test_read_only_store_without_sample_tables_is_read_in_full(tmp_path):
    """A store written before sampled decoding, in a read-only workspace: read through its own file (temporary empty
    sample tables), not replaced by an empty in-memory store."""
    from tests.test_faults_workspace import in_mount_namespace

    root = tmp_path / "ws"
    make_tiny_workspace(root, n_prompts=2)
    assert main(["sweep", "--workspace", str(root), "--method", "mva-no-hsic", "--grid", "0:1:1"]) == 0
    con = sqlite3.connect(root / "mva.sqlite")
    con.execute("DROP TABLE samples")
    con.execute("DROP TABLE sample_scores")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.commit()
    n = con.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
    con.close()
    before = (root / "mva.sqlite").read_bytes()
    script = ("from mva_core.store import Store; s = Store('$WS/mva.sqlite'); assert s.read_only; "
              "t = s.candidates(); print('rows', len(t), 'samples', len(s.samples(t['id'].tolist())))")
    proc = in_mount_namespace(f'mount --bind -o ro "$WS" "$WS"\n{sys.executable} -c "{script}"', {"WS": root})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"rows {n} samples 0" in proc.stdout and n == 5
    assert (root / "mva.sqlite").read_bytes() == before
