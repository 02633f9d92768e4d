"""Interference (MVA Eq.10) cached per vector set (issue 31 item 6): a second call with the same vectors (by
content), pairs and settings is answered from the cache without one gradient, and equals a fresh computation; a
changed vector, pair set, point or pair count computes again. The cache is outside the workspace."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mva_core.diagnostics import interference
from mva_core.interference_cache import cached_interference, interference_cache_dir, interference_key
from mva_core.models import load_base
from mva_core.vectors import load_value_vector
from tests.test_diagnostics import PAIRS, one_thread  # noqa: F401 (autouse fixture)
from tests.tiny import make_tiny_llama, make_value_vector


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("icache")
    make_tiny_llama(root / "base")
    dirs = [make_value_vector(root / "base", root / v, v, seed=20 + i) for i, v in enumerate(["warmth", "brevity"])]
    return root, load_base(str(root / "base")), [load_value_vector(d) for d in dirs]


def test_second_call_is_answered_from_the_cache(parts, tmp_path):
    root, base, vectors = parts
    ticks: list[int] = []
    first, hit = cached_interference(base, vectors, PAIRS, n_pairs=3, cache_dir=tmp_path,
                                     progress=lambda s, d, t: ticks.append(d))
    assert not hit and ticks and len(list(tmp_path.glob("*.json"))) == 1
    ticks.clear()
    again, hit = cached_interference(base, vectors, PAIRS, n_pairs=3, cache_dir=tmp_path,
                                     progress=lambda s, d, t: ticks.append(d))
    assert hit and ticks == []  # no gradient taken
    fresh = interference(base, vectors, PAIRS, n_pairs=3)  # independent of the cache
    for name in ("dot", "cosine", "losses", "norms"):
        np.testing.assert_allclose(getattr(again, name), getattr(fresh, name), rtol=1e-12)
    assert (again.values, again.n_pairs, again.n_parameters, again.at) == (fresh.values, fresh.n_pairs,
                                                                          fresh.n_parameters, fresh.at)


def test_the_key_follows_content_not_paths(parts, tmp_path):
    root, base, vectors = parts
    key = interference_key(base.fingerprint, vectors, PAIRS, None, 3)
    # the same files elsewhere: the same key (vectors are keyed by content hash)
    copies = [load_value_vector(shutil.copytree(v.path, tmp_path / v.value)) for v in vectors]
    assert interference_key(base.fingerprint, copies, PAIRS, None, 3) == key
    other = load_value_vector(make_value_vector(root / "base", tmp_path / "retrained", "brevity", seed=99))
    changed = {
        "a retrained vector": interference_key(base.fingerprint, [vectors[0], other], PAIRS, None, 3),
        "another point": interference_key(base.fingerprint, vectors, PAIRS, [0.0, 0.0], 3),
        "more pairs": interference_key(base.fingerprint, vectors, PAIRS, None, 4),
        "other pairs": interference_key(base.fingerprint, vectors, {**PAIRS, "warmth": PAIRS["warmth"][:-1]}, None, 3),
        "another base": interference_key("0" * 16, vectors, PAIRS, None, 3),
    }
    assert len({key, *changed.values()}) == 1 + len(changed), changed


def test_cache_lives_outside_workspaces(monkeypatch, tmp_path):
    monkeypatch.delenv("MVA_INTERFERENCE_CACHE", raising=False)
    from pathlib import Path

    assert interference_cache_dir() == Path.home() / ".cache" / "mva_explorer" / "interference"
    monkeypatch.setenv("MVA_INTERFERENCE_CACHE", str(tmp_path))
    assert interference_cache_dir() == tmp_path
