"""CandidateTable (mva_core.table) on a hand-built store's worth of rows: the layout, z-scores against the base model
worked by hand, the per-method front, and the export format registry."""

import numpy as np
import pandas as pd
import pytest

from mva_core.atomic import ExportError
from mva_core.export import FORMATS, get_format
from mva_core.metrics import reference_point
from mva_core.table import BASE_METHOD, CandidateTable, methods_present


def built() -> CandidateTable:
    cand = pd.DataFrame({"id": [1, 2, 3, 4], "method": [BASE_METHOD, "m", "m", "n"],
                         "weights": [[], [1.0, 0.0], [0.5, 0.5], [0.0, 1.0]],
                         "w_a": [np.nan, 1.0, 0.5, 0.0], "w_b": [np.nan, 0.0, 0.5, 1.0]})
    raw = {"a": np.array([1.0, 3.0, 2.0, np.nan]), "b": np.array([0.0, 0.0, 1.0, 4.0])}
    # base per-prompt rewards: a = [0, 2] (mean 1, population sd 1), b = [1, 1] (sd 0 → 1)
    return CandidateTable.build(cand, ["a", "b"], raw, {"a": np.array([0.0, 2.0]), "b": np.array([1.0, 1.0])})


def test_layout_and_arrays_by_hand():
    t = built()
    assert t.results_columns() == ["id", "method", "w_a", "w_b", "raw_a", "raw_b", "z_a", "z_b", "on_front"]
    np.testing.assert_array_equal(t.z(), [[0.0, -1.0], [2.0, -1.0], [1.0, 0.0], [np.nan, 3.0]])
    np.testing.assert_array_equal(t.raw()[1], [3.0, 0.0])
    np.testing.assert_array_equal(t.weights()[2], [0.5, 0.5])
    assert t.finite().tolist() == [True, True, True, False]
    assert t.scores(t.frame.iloc[1]) == {"a": {"raw": 3.0, "z": 2.0}, "b": {"raw": 0.0, "z": -1.0}}


def test_rows_base_and_front():
    t = built()
    assert t.methods() == ["m", "n"] and t.base_id() == 1 and len(t.without_base()) == 3
    assert t.for_method("m").ids().tolist() == [2, 3]
    assert t.for_methods(["n"]).ids().tolist() == [1, 4]
    assert t.front("m").ids().tolist() == [2, 3]  # (2, −1) and (1, 0): neither dominates the other
    assert t.front("n").ids().tolist() == []  # its one candidate has a non-finite score
    assert t.take([3, 1]).ids().tolist() == [3, 1]
    assert methods_present(t, ["n", "m"]) == ["n", "m"]
    # ONE reference point: per-value minimum over every finite row, the base included
    np.testing.assert_array_equal(reference_point(t), [0.0, -1.0])
    np.testing.assert_array_equal(reference_point(t, ref=[5, 6]), [5.0, 6.0])


def test_empty_table():
    t = CandidateTable.of(pd.DataFrame(), ["a"])
    assert t.empty and t.base_id() is None and t.methods() == [] and t.z().shape == (0, 1)
    np.testing.assert_array_equal(reference_point(t), [0.0])


def test_format_registry():
    assert FORMATS == ("merged", "peft", "mergekit", "card", "csv")
    assert get_format("csv").table is not None and get_format("peft").model is not None
    with pytest.raises(ExportError, match=r"format 'gguf' is unknown; choose one of \['merged', 'peft'"):
        get_format("gguf")
