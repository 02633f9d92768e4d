"""What the pages used to compute themselves and now ask mva_core for (issue 13 item 5): several workspaces'
candidate tables merged into one comparison, the single-vector points (paper Fig.5), the methods with candidates,
and the finiteness test. Each checked against a table or answer written out by hand."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mva_core.pareto import is_finite
from mva_core.results import merge_workspace_tables, single_vector_points
from mva_core.table import methods_present

NAN, INF = float("nan"), float("inf")


class FakeWorkspace:
    """What merging reads of a workspace: its folder and its comparison rows (only their names matter)."""

    def __init__(self, root: Path, methods: list[str]):
        self.root = root
        self.rows = [SimpleNamespace(name=m) for m in methods]

    def compared_methods(self):
        return self.rows


def table(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "method", "z_a"])


# ---- methods_present ----

def test_methods_present_orders_rows_first_then_stale_by_name_without_bases():
    t = table([(1, "base", 0.0), (2, "zeta (old vectors)", 1.0), (3, "soup", 1.0), (4, "mva", 2.0),
               (5, "alpha (old vectors)", 0.5), (6, "base @ x", 0.0)])
    got = methods_present(t, ["mva", "mva-no-hsic", "soup"], base_methods=["base", "base @ x"])
    assert got == ["mva", "soup", "alpha (old vectors)", "zeta (old vectors)"]  # mva-no-hsic has no candidates
    assert methods_present(t[t["method"] == "base"], ["mva"]) == []
    assert methods_present(pd.DataFrame(), ["mva"]) == []


# ---- merge_workspace_tables ----

def test_one_workspace_is_left_as_it_is(tmp_path):
    ws = FakeWorkspace(tmp_path / "here", ["mva", "soup"])
    t = table([(1, "base", 0.0), (2, "mva", 1.0), (3, "soup", 2.0)])
    merged = merge_workspace_tables([(ws, t), (FakeWorkspace(tmp_path / "here" / ".." / "here", ["mva"]), t)])
    assert merged.table.equals(t)  # the same folder listed again counts once: nothing renamed, nothing added
    assert list(merged.methods) == ["mva", "soup"] and merged.methods["soup"] is ws.rows[1]
    assert merged.base_methods == ["base"]
    assert merged.present() == ["mva", "soup"]


def test_several_workspaces_are_renamed_by_folder(tmp_path):
    here = FakeWorkspace(tmp_path / "here", ["mva", "soup"])
    twin_a = FakeWorkspace(tmp_path / "a" / "run", ["mva"])  # two folders named "run": numbered by position
    twin_b = FakeWorkspace(tmp_path / "b" / "run", ["mva"])
    t_here = table([(1, "base", 0.0), (2, "mva", 1.0), (3, "soup", 2.0), (4, "old (old vectors)", 3.0)])
    t_a = table([(1, "base", 0.5), (2, "mva", 1.5)])
    t_b = table([])  # nothing stored there yet
    merged = merge_workspace_tables([(here, t_here), (twin_a, t_a), (twin_b, t_b)])

    expected = table([(1, "base @ here", 0.0), (2, "mva @ here", 1.0), (3, "soup @ here", 2.0),
                      (4, "old (old vectors) @ here", 3.0), (1, "base @ run (2)", 0.5), (2, "mva @ run (2)", 1.5)])
    pd.testing.assert_frame_equal(merged.table, expected, check_dtype=False)
    assert list(merged.methods) == ["mva @ here", "soup @ here", "mva @ run (2)", "mva @ run (3)"]
    assert merged.methods["mva @ run (2)"] is twin_a.rows[0]
    assert merged.base_methods == ["base @ here", "base @ run (2)", "base @ run (3)"]
    assert merged.present() == ["mva @ here", "soup @ here", "mva @ run (2)", "old (old vectors) @ here"]
    pd.testing.assert_frame_equal(merged.bases().reset_index(drop=True), expected.iloc[[0, 4]].reset_index(drop=True),
                                  check_dtype=False)
    # the comparison: the chosen methods, and every base model under the one name "base"
    got = merged.compared(["soup @ here", "mva @ run (2)"])
    want = table([(3, "soup @ here", 2.0), (2, "mva @ run (2)", 1.5), (1, "base", 0.0), (1, "base", 0.5)])
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


# ---- single_vector_points ----

def points(rows) -> pd.DataFrame:
    """(id, method, weights, finite) rows of a candidate table."""
    return pd.DataFrame(rows, columns=["id", "method", "weights", "finite"])


def test_single_vector_points_are_the_methods_one_hot_candidates():
    t = points([(1, "base", [], True), (2, "mva", [1.0, 0.0], True), (3, "mva", [0.0, 1.0], True),
                (4, "mva", [0.5, 0.5], True), (5, "mva", [1.0, 1.0], True), (6, "soup", [1.0, 0.0], True),
                (7, "dpo-a", [1.0], True)])  # both values have their own one-hot point: dpo-a is not needed
    got = single_vector_points(t, "mva", ["a", "b"])
    assert got[["id", "label"]].values.tolist() == [[2, "a"], [3, "b"]]
    # a method with no candidate yet (Explore before its first evaluation): only the dpo rows, and no error
    assert single_vector_points(t, "mi-epo", ["a", "b"])[["id", "label"]].values.tolist() == [[7, "dpo-a"]]


def test_single_vector_points_fall_back_to_the_dpo_rows():
    values = ["a", "b", "c"]
    t = points([(1, "mva", [0.0, 1.0, 0.0], True),   # b alone
                (2, "mva", [1.0, 0.0, 0.0], False),  # a alone, but a non-finite score: not a point
                (3, "mva", [0.0, 0.0, 2.0], True),   # c at weight 2: not "alone at weight 1"
                (4, "mva", [0.0, 1.0], True),        # weights of another length
                (5, "dpo-a", [1.0], True), (6, "dpo-b", [1.0], True), (7, "dpo-c", [1.0], False),
                (8, "mva-no-hsic", [0.0, 0.0, 1.0], True)])  # another method's one-hot point
    got = single_vector_points(t, "mva", values)
    # b from mva itself; a from dpo-a; c has neither (dpo-c is non-finite); dpo-b is not needed
    assert got[["id", "label"]].values.tolist() == [[1, "b"], [5, "dpo-a"]]
    assert single_vector_points(t, "soup", values)[["id", "label"]].values.tolist() == [[5, "dpo-a"], [6, "dpo-b"]]


# ---- is_finite ----

@pytest.mark.parametrize("x, want", [
    (0, True), (-3, True), (2.5, True), (np.float64(1.0), True), (np.float32(-2.0), True), (np.int64(7), True),
    (NAN, False), (np.nan, False), (INF, False), (-INF, False), (np.float32("nan"), False), (None, False),
    ("3", False), (pd.NA, False), ([1.0], False),
])
def test_is_finite(x, want):
    assert is_finite(x) is want


@pytest.mark.slow
def test_win_rates_by_hand(tmp_path):
    """Issue 16 item 4: per value, the share of prompts where the candidate beats the base on the same prompt
    (ties half), computed here from the stored per-prompt scores with a plain loop."""
    from mva_core.metrics import win_rates
    from mva_core.sweep import Evaluator, evaluate_base
    from tests.tiny import make_tiny_workspace

    ws = make_tiny_workspace(tmp_path, n_prompts=4)
    ev = Evaluator(ws, "mva-no-hsic")
    base_id = evaluate_base(ws, ev.base)
    ids = ev.evaluate([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]).candidate_ids
    table = win_rates(ws, ids, base_id)
    base_rows = ws.store.responses([base_id])
    for cid in ids:
        rows = ws.store.responses([cid])
        for value, scorer in (("warmth", "warmth"), ("brevity", "brevity")):
            a, b = rows[scorer].tolist(), base_rows[scorer].tolist()
            want = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b)) / len(a)
            assert table.loc[table["id"] == cid, f"win_{value}"].iloc[0] == pytest.approx(want)
    # w = (0, 0) is the base model itself: every prompt ties
    assert table.loc[table["id"] == ids[2], ["win_warmth", "win_brevity"]].to_numpy().tolist() == [[0.5, 0.5]]
