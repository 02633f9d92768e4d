"""Hypothesis fuzz (issue #6): random weight vectors through both compositions (merged == weight-batched,
a mixed batch == each row's merged model), and large/many-objective matrices through pareto.py against the
brute-force oracle of tests/test_pareto.py."""

from __future__ import annotations

import pytest
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from transformers import AutoModelForCausalLM

from mva_core.compose import WeightBatchedModel, merge
from mva_core.pareto import analyse, non_dominated_rank
from mva_core.vectors import load_value_vectors
from tests.test_pareto import oracle_ranks
from tests.tiny import make_tiny_llama, make_value_vector

C = 2.0
_SETUP: dict = {}


def setup(tmp_path_factory):
    if not _SETUP:
        root = tmp_path_factory.mktemp("fuzz")
        make_tiny_llama(root / "base")
        dirs = [make_value_vector(root / "base", root / f"v{i}", f"v{i}", seed=20 + i, r=2 + i) for i in range(3)]
        base = AutoModelForCausalLM.from_pretrained(root / "base").eval()
        vectors = load_value_vectors(dirs)
        _SETUP.update(base=base, vectors=vectors, wbs={n: WeightBatchedModel(base, vectors[:n]) for n in (1, 2, 3)})
    return _SETUP


weight = st.one_of(st.just(0.0), st.just(C), st.floats(0.0, C, allow_nan=False))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 3), data=st.data())
@pytest.mark.slow
def test_random_weights_merged_equals_weight_batched(tmp_path_factory, n, data):
    s = setup(tmp_path_factory)
    rows = data.draw(st.integers(1, 3))
    W = np.array([[data.draw(weight) for _ in range(n)] for _ in range(rows)])
    ids = torch.randint(3, 400, (rows, 9), generator=torch.Generator().manual_seed(rows * 10 + n))
    batched = s["wbs"][n].logits(ids, W)  # a mixed batch: each row its own weights
    for b in range(rows):
        with torch.no_grad():
            merged = merge(s["base"], s["vectors"][:n], W[b].tolist())(ids[b:b + 1]).logits
        torch.testing.assert_close(batched[b:b + 1], merged, atol=5e-5, rtol=1e-4)


_VALUES = [0.0, 1.0, 2.0, 3.0] * 8 + [np.nan, np.inf, -np.inf]


@settings(max_examples=6, deadline=None)
@given(F=st.integers(1, 5).flatmap(lambda m: st.integers(0, 2000).flatmap(
    lambda n: hnp.arrays(np.float64, (n, m), elements=st.sampled_from(_VALUES)))))
def test_large_matrices_match_oracle(F):
    expected = oracle_ranks(F)
    rank = non_dominated_rank(F)
    assert [None if np.isnan(r) else int(r) for r in rank] == expected
    excluded = [i for i in range(len(F)) if not np.isfinite(F[i]).all()]
    if len(excluded) < len(F):
        res = analyse(F)
        assert res.excluded == excluded and res.pareto == [i for i, r in enumerate(expected) if r == 0]
