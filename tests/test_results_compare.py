"""results.compare_table and results.best_per_value on hand-made candidate tables, checked against pymoo's HV
called directly, brute-force fronts and a brute-force MIP (loops over the preference vectors)."""

import numpy as np
import pandas as pd
import pytest
from pymoo.indicators.hv import HV

from mva_core.metrics import best_per_value, compare_table

VALUES = ["warmth", "brevity"]


def table_of(points: dict[str, list[tuple[float, float]]], base=(0.0, 0.0)) -> pd.DataFrame:
    rows, cid = [{"id": 0, "method": "base", "z_warmth": base[0], "z_brevity": base[1]}], 1
    for method, pts in points.items():
        for x, y in pts:
            rows.append({"id": cid, "method": method, "z_warmth": x, "z_brevity": y})
            cid += 1
    return pd.DataFrame(rows)


def brute_front(F):
    return [i for i in range(len(F)) if not any((F[j] >= F[i]).all() and (F[j] > F[i]).any() for j in range(len(F)))]


def pymoo_hv(F, ref):
    F = F[brute_front(F)]
    F = F[(F > ref).all(axis=1)]
    return HV(ref_point=-ref)(-F) if len(F) else 0.0


def brute_mip(F, P):
    front = F[brute_front(F)]
    return np.mean([max(p @ f for f in front) for p in P])


POINTS = {
    "grid": [(0.0, 2.0), (1.0, 1.5), (2.0, 0.5), (0.5, 0.5), (1.0, 1.0), (2.0, 0.5)],  # one duplicate
    "soup": [(0.2, 1.8), (1.2, 1.2), (1.9, 0.2)],
    "dpo-warmth": [(2.2, -0.4)],
}


def test_compare_table_matches_pymoo_and_brute_force():
    table = table_of(POINTS)
    got, ref = compare_table(table, VALUES)
    got = got.set_index("method")
    # shared default reference: the per-value minimum over every compared candidate, base included
    allF = table[["z_warmth", "z_brevity"]].to_numpy()
    assert ref == pytest.approx(allF.min(axis=0))
    assert ref == pytest.approx([0.0, -0.4])
    i = np.arange(11)
    P = np.stack([i / 10, 1 - i / 10], axis=1)
    for m, pts in POINTS.items():
        F = np.array(pts, dtype=float)
        assert got.loc[m, "candidates"] == len(F)
        assert got.loc[m, "front size"] == len(brute_front(F)), m
        assert got.loc[m, "hypervolume"] == pytest.approx(pymoo_hv(F, ref), rel=1e-9, abs=1e-12), m
        assert got.loc[m, "MIP"] == pytest.approx(brute_mip(F, P), rel=1e-9), m
        assert got.loc[m, "best warmth"] == pytest.approx(F[:, 0].max())
        assert got.loc[m, "best brevity"] == pytest.approx(F[:, 1].max())
    assert "base" not in got.index
    # hand-worked: the duplicate (2, 0.5) stays on the front twice; grid front = (0,2) (1,1.5) (2,.5) (2,.5)
    assert got.loc["grid", "front size"] == 4
    # staircase above ref (0, -0.4): (1-0)*(1.5+0.4) + (2-1)*(0.5+0.4) = 1.9 + 0.9; (0,2) adds nothing (x = ref)
    assert got.loc["grid", "hypervolume"] == pytest.approx(2.8)


def test_compare_table_explicit_reference_changes_hypervolume():
    table = table_of(POINTS)
    ref = np.array([-1.0, -1.0])
    got, used = compare_table(table, VALUES, ref)
    assert used == pytest.approx(ref)
    got = got.set_index("method")
    # one point f: HV = Π (f − ref)
    assert got.loc["dpo-warmth", "hypervolume"] == pytest.approx((2.2 + 1) * (-0.4 + 1))
    for m, pts in POINTS.items():
        assert got.loc[m, "hypervolume"] == pytest.approx(pymoo_hv(np.array(pts), ref))
    # a reference above every point of a method: nothing dominated
    got2, _ = compare_table(table, VALUES, np.array([3.0, 3.0]))
    assert (got2["hypervolume"] == 0).all()


def test_non_finite_candidates_are_excluded_and_counted():
    table = table_of({"grid": [(1.0, 1.0), (np.nan, 3.0), (0.5, 2.0)]})
    got, ref = compare_table(table, VALUES)
    row = got.set_index("method").loc["grid"]
    assert row["candidates"] == 3 and row["non-finite"] == 1 and row["front size"] == 2
    assert ref == pytest.approx([0.0, 0.0])  # NaN row ignored for the reference
    assert row["hypervolume"] == pytest.approx(pymoo_hv(np.array([(1.0, 1.0), (0.5, 2.0)]), ref))
    assert row["best brevity"] == pytest.approx(2.0)  # the NaN row's 3.0 does not count


def test_best_per_value_long_form_with_candidate_ids():
    table = table_of(POINTS)
    best = best_per_value(table, VALUES)
    assert list(best.columns) == ["method", "value", "z", "candidate"]
    assert len(best) == len(POINTS) * len(VALUES) and "base" not in set(best["method"])
    for m in POINTS:
        sub = table[table["method"] == m]
        for v in VALUES:
            row = best[(best["method"] == m) & (best["value"] == v)].iloc[0]
            top = sub[f"z_{v}"].max()
            assert row["z"] == pytest.approx(top)
            assert row["candidate"] == sub.loc[sub[f"z_{v}"] == top, "id"].min()  # ties: lowest id
    # the duplicate (2, 0.5) of "grid" is ids 3 and 6: the lowest wins
    assert best[(best["method"] == "grid") & (best["value"] == "warmth")]["candidate"].iloc[0] == 3


def test_empty_and_all_nan_method():
    table = table_of({"grid": [(np.nan, np.nan)], "soup": [(1.0, 1.0)]})
    best = best_per_value(table, VALUES)
    assert best[best["method"] == "grid"]["z"].isna().all()
    got, _ = compare_table(table, VALUES)
    row = got.set_index("method").loc["grid"]
    assert row["front size"] == 0 and row["hypervolume"] == 0 and np.isnan(row["MIP"])
