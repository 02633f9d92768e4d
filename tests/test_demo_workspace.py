"""The shipped demo workspace (data/demo) is complete, consistent with its provenance, and shows a front."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from mva_core import pareto
from mva_core.demo import DEMO_GRID_STEP, DEMO_METHOD, DEMO_METHODS
from mva_core.metrics import summarise
from mva_core.results import candidate_table
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
    # what ships: files, not the links to them (a run's first vector links mva-no-hsic's), nor training checkpoints
    size = sum(p.stat().st_size for p in DEMO_WORKSPACE.rglob("*")
               if p.is_file() and not p.is_symlink() and not any(q.suffix == ".partial" for q in p.parents))
    assert size < 25 * 2**20, f"demo workspace is {size / 2**20:.1f} MB; keep it under 25 MB (issue #28)"


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
    assert next(m for m in summary if m.method == DEMO_METHOD).hypervolume > 0
    assert np.allclose(ref, pareto.reference_point(table[zc].to_numpy(dtype=float)))


def test_every_demo_method_has_candidates(ws):
    table = candidate_table(ws)
    expected = {*DEMO_METHODS, "soup", *(f"dpo-{v}" for v in ws.value_names)}
    assert expected <= set(table["method"]), expected - set(table["method"])
    # one shared reference point: the per-value minimum over the union of every method's candidates
    zc = [f"z_{v}" for v in ws.value_names]
    summary, ref = summarise(table, ws.value_names)
    F = table[zc].to_numpy(dtype=float)
    assert np.allclose(ref, np.nanmin(F[np.isfinite(F).all(axis=1)], axis=0))
    for m in summary:  # each method's HV against that reference, recomputed with pymoo directly
        from pymoo.indicators.hv import HV

        Fm = table.loc[table["method"] == m.method, zc].to_numpy(dtype=float)
        better = Fm[(Fm > ref).all(axis=1)]
        want = HV(ref_point=-ref)(-better) if len(better) else 0.0
        assert m.hypervolume == pytest.approx(want, rel=1e-9, abs=1e-12), m.method


def test_single_vectors_raise_their_value_and_values_trade_off(ws):
    """Acceptance (issue #7): each value's vector alone at weight 1 raises that value's mean score over the base
    model on the validation prompts, and the numbers show a trade-off. Means computed here from the stored
    per-prompt scores, not from the candidate table."""
    cands = ws.store.candidates()
    vectors = {v.value: v.hash for v in load_value_vectors(ws.vector_dirs(DEMO_METHOD))}
    hashes = [vectors[v] for v in ws.value_names]

    def mean_scores(cid):
        r = ws.store.responses([int(cid)])
        return np.array([r[v.scorer].astype(float).mean() for v in ws.manifest.values])

    base = mean_scores(cands.loc[cands["method"] == "base", "id"].iloc[-1])
    lowered_other = False
    for i, value in enumerate(ws.value_names):
        onehot = [1.0 if j == i else 0.0 for j in range(len(hashes))]
        # the composed model's candidate (mod decodes from the same vectors and weights: its own candidate)
        row = cands[(cands["vector_hashes"] == json.dumps(hashes)) & cands["weights"].map(lambda w: list(w) == onehot)
                    & (cands["method"] == DEMO_METHOD)]
        assert len(row) == 1, f"no stored candidate for {value}'s vector alone"
        s = mean_scores(row["id"].iloc[0])
        assert s[i] > base[i], f"{value}'s vector at weight 1 does not raise {value}: {s[i]:.4f} <= base {base[i]:.4f}"
        lowered_other |= bool((np.delete(s, i) < np.delete(base, i)).any())
    table = candidate_table(ws)
    front = table[(table["method"] == DEMO_METHOD) & table["on_front"]]
    assert lowered_other or len(front) > 1
