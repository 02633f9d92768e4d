"""Pareto filter and metrics (MVA Eq.20 / Alg.1, MI-EPO MIP/CRD) against independent computations:
a brute-force dominance oracle, exact box-union hypervolumes, and hand-worked numbers."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mva_core.pareto import (
    ParetoError,
    analyse,
    best_for_preference,
    crd,
    finite_rows,
    front_indices,
    hypervolume,
    load_objectives_csv,
    mip,
    non_dominated_rank,
    preference_vectors,
    reference_point,
)

NAN, INF = float("nan"), float("inf")


# ---- Independent oracles (maximisation, written from the definitions) ----

def oracle_ranks(F: np.ndarray) -> list[int | None]:
    """Peel fronts: rank r = the remaining rows no remaining row dominates (all >=, one >). O(n^2) per peel."""
    F = np.asarray(F, dtype=float)
    ge = (F[:, None, :] >= F[None, :, :]).all(axis=2)  # ge[j, i]: row j >= row i in every objective
    gt = (F[:, None, :] > F[None, :, :]).any(axis=2)   # gt[j, i]: row j > row i in some objective
    dominates = ge & gt
    remaining = np.isfinite(F).all(axis=1)
    ranks: list[int | None] = [None] * F.shape[0]
    r = 0
    while remaining.any():
        front = remaining & ~dominates[remaining].any(axis=0)
        for i in np.flatnonzero(front):
            ranks[i] = r
        remaining &= ~front
        r += 1
    return ranks


def oracle_hv_2d(F: np.ndarray, ref: np.ndarray) -> float:
    """Union area of the rectangles [ref, s]: sort by x descending, sum strips of width dx, height max y so far."""
    pts = sorted((tuple(p) for p in F if np.isfinite(p).all() and p[0] > ref[0] and p[1] > ref[1]), reverse=True)
    area, ymax = 0.0, ref[1]
    for k, (x, y) in enumerate(pts):
        ymax = max(ymax, y)
        x_next = pts[k + 1][0] if k + 1 < len(pts) else ref[0]
        area += (x - x_next) * (ymax - ref[1])
    return area


def oracle_hv_grid(F: np.ndarray, ref: np.ndarray) -> float:
    """Union volume of the boxes [ref, s] in any dimension: cut space at every coordinate, add each grid cell
    whose upper corner some point weakly exceeds. Exact; cheap when coordinates take few values."""
    P = F[np.isfinite(F).all(axis=1)]
    cuts = [np.unique(np.concatenate([[ref[d]], P[:, d][P[:, d] > ref[d]]])) for d in range(F.shape[1])]
    vol = 0.0
    for cell in itertools.product(*[range(len(c) - 1) for c in cuts]):
        upper = np.array([cuts[d][k + 1] for d, k in enumerate(cell)])
        if (P >= upper).all(axis=1).any():
            vol += float(np.prod([cuts[d][k + 1] - cuts[d][k] for d, k in enumerate(cell)]))
    return vol


# ---- Front and ranks, by hand ----

def test_front_and_ranks_hand_example():
    F = np.array([[1, 3], [2, 2], [3, 1], [1, 1], [2, 2], [0, 0], [1, 2]], dtype=float)
    # front: the staircase (1,3),(2,2),(3,1) and the duplicate (2,2); (1,2) is beaten by (1,3); (1,1) by (1,2); (0,0) last
    assert front_indices(F).tolist() == [0, 1, 2, 4]
    assert non_dominated_rank(F).tolist() == [0, 0, 0, 2, 0, 3, 1]
    assert oracle_ranks(F) == [0, 0, 0, 2, 0, 3, 1]


def test_ties_duplicates_and_weak_dominance():
    # equal on every objective: neither dominates; equal on one and better on the other: dominates
    F = np.array([[1, 1], [1, 1], [1, 0]], dtype=float)
    assert front_indices(F).tolist() == [0, 1]
    assert non_dominated_rank(F).tolist() == [0, 0, 1]
    all_same = np.full((5, 3), 2.0)
    assert front_indices(all_same).tolist() == [0, 1, 2, 3, 4]


def test_one_point_empty_and_one_objective():
    assert front_indices(np.array([[0.3, -1.0]])).tolist() == [0]
    assert non_dominated_rank(np.array([[0.3, -1.0]])).tolist() == [0.0]
    empty = np.empty((0, 2))
    assert front_indices(empty).tolist() == []
    assert non_dominated_rank(empty).shape == (0,)
    assert hypervolume(empty, [0, 0]) == 0.0
    res = analyse(empty, ref=[0.0, 0.0])
    assert res.to_json_dict() == {"pareto": [], "rank": [], "hypervolume": 0.0, "ref": [0.0, 0.0], "excluded": []}
    with pytest.raises(ParetoError, match="reference point"):
        analyse(empty)
    # one objective: the front is every row holding the maximum
    one = np.array([[1.0], [3.0], [3.0], [2.0]])
    assert front_indices(one).tolist() == [1, 2]
    assert non_dominated_rank(one).tolist() == [2, 0, 0, 1]
    assert hypervolume(one, [0.5]) == pytest.approx(2.5)


def test_non_finite_rows_are_excluded_and_reported():
    F = np.array([[1, 2], [NAN, 3], [INF, 0], [2, 1], [-INF, 5], [0, 0]], dtype=float)
    assert finite_rows(F).tolist() == [True, False, False, True, False, True]
    rank = non_dominated_rank(F)
    assert np.isnan(rank[[1, 2, 4]]).all() and rank[[0, 3, 5]].tolist() == [0, 0, 1]
    res = analyse(F)
    # +inf would dominate (1,2)-(2,1) if it were kept; it is not
    assert res.pareto == [0, 3] and res.excluded == [1, 2, 4]
    assert res.rank == [0, None, None, 0, None, 1]
    assert res.ref == [0.0, 0.0]  # minimum over finite rows only
    # staircase (1,2),(2,1) over (0,0): 2*1 + 1*1 = 3 (x in [0,1]: height 2; x in [1,2]: height 1)
    assert res.hypervolume == pytest.approx(3.0)
    d = json.loads(json.dumps(res.to_json_dict()))
    assert d == {"pareto": [0, 3], "rank": [0, None, None, 0, None, 1], "hypervolume": 3.0,
                 "ref": [0.0, 0.0], "excluded": [1, 2, 4]}
    with pytest.raises(ParetoError, match="no candidate has all 2 objectives finite"):
        reference_point(np.array([[NAN, 1.0], [INF, 2.0]]))


# ---- Hypervolume, by hand ----

def test_hypervolume_2d_staircase_by_hand():
    # (1,3),(2,2),(3,1) over ref (0,0), as strips in x: [0,1] h=3 -> 3, [1,2] h=2 -> 2, [2,3] h=1 -> 1; total 6.
    # A dominated point (1,1) and a duplicate (2,2) add nothing.
    F = np.array([[1, 3], [2, 2], [3, 1], [1, 1], [2, 2]], dtype=float)
    assert hypervolume(F, [0, 0]) == pytest.approx(6.0)
    # ref (1,1): box of (2,2) is 1x1; (3,1) is not strictly above y=1 and (1,3) not strictly right of x=1,
    # so their boxes are flat: total 1
    assert hypervolume(F, [1, 1]) == pytest.approx(1.0)
    # a point not strictly better than ref in every objective contributes nothing
    assert hypervolume(np.array([[5.0, 0.0]]), [0, 0]) == 0.0
    assert hypervolume(np.array([[-1.0, 4.0]]), [0, 0]) == 0.0


def test_hypervolume_3d_boxes_by_hand():
    assert hypervolume(np.array([[2.0, 3.0, 4.0]]), [0, 0, 0]) == pytest.approx(24.0)
    # boxes 2x2x2 and 1x1x3 overlap in 1x1x2: 8 + 3 - 2 = 9
    F = np.array([[2, 2, 2], [1, 1, 3]], dtype=float)
    assert hypervolume(F, [0, 0, 0]) == pytest.approx(9.0)
    # shifted ref (0.5, 0, 1): 1.5*2*1 + 0.5*1*2 - 0.5*1*1 = 3.5
    assert hypervolume(F, [0.5, 0.0, 1.0]) == pytest.approx(3.5)


def test_default_reference_is_per_objective_minimum_and_extremes_add_nothing():
    F = np.array([[0, 2], [2, 0], [1, 1]], dtype=float)
    assert reference_point(F).tolist() == [0.0, 0.0]
    # (0,2) and (2,0) sit on the reference in one objective: zero-width boxes. Only (1,1) counts: 1.
    assert analyse(F).hypervolume == pytest.approx(1.0)
    assert analyse(F, ref=[-1, -1]).hypervolume == pytest.approx(6.0)
    # ref (-1,-1), strips in x: [-1,0] h=3 -> 3, [0,1] h=2 -> 2, [1,2] h=1 -> 1; total 6


def test_bad_reference_point():
    F = np.array([[1.0, 2.0]])
    with pytest.raises(ParetoError, match="one per objective"):
        hypervolume(F, [0.0])
    with pytest.raises(ParetoError, match="finite"):
        analyse(F, ref=[0.0, NAN])
    with pytest.raises(ParetoError, match="2-D array"):
        front_indices(np.array([1.0, 2.0]))


# ---- Random matrices against the oracle ----

_VALUES = [0.0, 1.0, 2.0, 3.0, 4.0] * 6 + [NAN, INF, -INF]  # small integer set: ties are frequent


@st.composite
def objective_matrices(draw):
    m = draw(st.integers(1, 4))
    n = draw(st.integers(0, 300))
    return draw(hnp.arrays(np.float64, (n, m), elements=st.sampled_from(_VALUES)))


@settings(max_examples=100, deadline=None)
@given(F=objective_matrices(), ref_shift=st.sampled_from([0.0, 0.5, 1.0]))
def test_random_matrices_match_oracle(F, ref_shift):
    n, m = F.shape
    expected = oracle_ranks(F)
    rank = non_dominated_rank(F)
    assert [None if np.isnan(r) else int(r) for r in rank] == expected
    assert front_indices(F).tolist() == [i for i, r in enumerate(expected) if r == 0]
    if m >= 2:  # every 2-D projection too, against the sort-and-sum area
        F2 = F[:, :2]
        kept = F2[np.isfinite(F2).all(axis=1)]
        if len(kept):
            assert analyse(F2).hypervolume == pytest.approx(oracle_hv_2d(F2, kept.min(axis=0)), abs=1e-9)
            ref2 = kept.min(axis=0) + ref_shift
            assert hypervolume(F2, ref2) == pytest.approx(oracle_hv_2d(F2, ref2), abs=1e-9)
    excluded = [i for i in range(n) if not np.isfinite(F[i]).all()]
    if len(excluded) == n:
        return
    res = analyse(F)
    assert res.rank == expected and res.excluded == excluded and res.pareto == [i for i, r in enumerate(expected) if r == 0]
    ref = np.array([min(F[i, d] for i in range(n) if i not in excluded) for d in range(m)])
    assert res.ref == ref.tolist()
    assert res.hypervolume == pytest.approx(oracle_hv_grid(F, ref), abs=1e-9)
    assert hypervolume(F, ref + ref_shift) == pytest.approx(oracle_hv_grid(F, ref + ref_shift), abs=1e-9)


def test_oracles_agree_with_each_other_on_hand_case():
    F = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    assert oracle_hv_2d(F, np.zeros(2)) == oracle_hv_grid(F, np.zeros(2)) == 6.0


# ---- MIP and CRD (MI-EPO) ----

def test_mip_hand_example():
    F = np.array([[1, 0], [0, 1], [0.6, 0.6], [0.2, 0.2]])
    P = np.array([[1, 0], [0, 1], [0.5, 0.5]])
    assert [best_for_preference(F, p) for p in P] == [0, 1, 2]
    # p=(1,0) -> 1; p=(0,1) -> 1; p=(.5,.5) -> (0.6,0.6) gives 0.6 > 0.5 -> mean = 2.6 / 3
    assert mip(F, P) == pytest.approx(2.6 / 3)


def test_best_for_preference_uses_front_and_ignores_non_finite():
    # (1,0) ties (1,1) under p=(1,0) but is dominated by it, so the user would pick (1,1)
    F = np.array([[1, 0], [1, 1], [NAN, 9]], dtype=float)
    assert best_for_preference(F, [1, 0]) == 1
    with pytest.raises(ParetoError, match="non-negative"):
        best_for_preference(F, [1, -1])
    with pytest.raises(ParetoError, match="objectives finite"):
        best_for_preference(np.array([[NAN, 1.0]]), [0.5, 0.5])


def test_crd_hand_covariance():
    # samples (1,2),(3,4),(5,0): means (3,2); deviations x=(-2,0,2), y=(0,2,-2);
    # var x = 8/2 = 4, var y = 8/2 = 4, cov = (0+0-4)/2 = -2; det = 4*4 - (-2)^2 = 12
    # samples (0,0),(1,1): var x = var y = cov = 0.5; det = 0
    assert crd([np.array([[1, 2], [3, 4], [5, 0]]), np.array([[0, 0], [1, 1]])]) == pytest.approx(6.0)
    # one objective: det of a 1x1 covariance is the variance, (0,2) -> 2
    assert crd([np.array([[0.0], [2.0]])]) == pytest.approx(2.0)
    with pytest.raises(ParetoError, match="at least 2"):
        crd([np.array([[1.0, 2.0]])])
    with pytest.raises(ParetoError, match="no reward samples"):
        crd([])


def test_preference_vectors():
    P2 = preference_vectors(2)
    assert P2.shape == (11, 2)
    assert P2[0].tolist() == [0.0, 1.0] and P2[1].tolist() == [0.1, 0.9] and P2[-1].tolist() == [1.0, 0.0]
    assert P2[7].tolist() == [0.7, 0.3]
    P3 = preference_vectors(3)
    assert P3.shape == (13, 3)
    for P in (P2, P3):
        assert np.allclose(P.sum(axis=1), 1.0) and (P >= 0).all()
        assert len({tuple(np.round(p, 9)) for p in P}) == len(P)
    # symmetric: permuting the values maps the set onto itself
    rows = {tuple(np.round(p, 9)) for p in P3}
    for perm in itertools.permutations(range(3)):
        assert {tuple(np.round(p[list(perm)], 9)) for p in P3} == rows
    for n in (1, 4):
        with pytest.raises(ParetoError, match="2 or 3 values"):
            preference_vectors(n)


# ---- CSV loader ----

def test_load_objectives_csv(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("name,help,harm\na,1.5,2\nb,,inf\nc,nan,-inf\nd,NaN,3\ne,-Infinity,1e1\n")
    F = load_objectives_csv(path, ["harm", "help"])
    assert F.shape == (5, 2)
    assert F[:, 0].tolist() == [2.0, INF, -INF, 3.0, 10.0]
    assert F[0, 1] == 1.5 and np.isnan(F[1:4, 1]).all() and F[4, 1] == -INF
    assert analyse(F).excluded == [1, 2, 3, 4]


def test_load_objectives_csv_errors(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("help,harm,note\n1,2,x\n3,oops,y\n4,5,z\n")
    with pytest.raises(ParetoError, match=r"no column 'safe'; available columns: help, harm, note"):
        load_objectives_csv(path, ["help", "safe"])
    with pytest.raises(ParetoError, match=r"column 'harm' .* data row 1 \(0-based\) is 'oops'"):
        load_objectives_csv(path, ["help", "harm"])
    with pytest.raises(ParetoError, match=r"column 'note' .* data row 0 \(0-based\) is 'x'"):
        load_objectives_csv(path, ["note"])
    with pytest.raises(ParetoError, match="missing.csv does not exist"):
        load_objectives_csv(tmp_path / "missing.csv", ["help"])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ParetoError, match="empty"):
        load_objectives_csv(tmp_path / "empty.csv", ["help"])
    (tmp_path / "bool.csv").write_text("help\nTrue\nFalse\n")
    with pytest.raises(ParetoError, match="not numeric"):
        load_objectives_csv(tmp_path / "bool.csv", ["help"])
