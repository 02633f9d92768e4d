"""Each composition kind answers the questions callers ask it (issue 26 item 3), against hand-written expectations:
the grid it enumerates, its candidates' weight sets, whether a candidate carries a preference in its prompt, how a
row of weights becomes a candidate. No model is built: vectors are stand-ins with the fields the kinds read."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mva_core.config import ConfigError, WeightsError
from mva_core.kinds import (CONDITIONED, DECODE_TIME, EACH, EXTRAPOLATION, GRID_KINDS, KINDS, SIMPLEX, VERTICES, ComparedMethod,
                            SearchSpace, evaluated_as, get_kind)

BOX = [[0, 0], [0, .5], [0, 1], [.5, 0], [.5, .5], [.5, 1], [1, 0], [1, .5], [1, 1]]  # [0, 1]^2, step 0.5


def row(kind: str, dirs: tuple[Path, ...] = (Path("a"), Path("b")), vertex: int | None = None) -> ComparedMethod:
    return ComparedMethod("m", "m", kind, dirs, tuple(f"h{i}" for i in range(len(dirs))), vertex=vertex)


def vector(value: str, **meta: object) -> SimpleNamespace:
    return SimpleNamespace(value=value, meta=dict(meta))


def test_grid_kinds_enumerate_their_grid_for_two_values_step_half() -> None:
    assert GRID_KINDS == ["extrapolation", "simplex"]
    assert SearchSpace(n_values=2, C=1.0, step=0.5, kind=EXTRAPOLATION).grid().tolist() == BOX
    assert SearchSpace(n_values=2, C=1.0, step=0.5, kind=SIMPLEX).grid().tolist() == [[0, 1], [.5, .5], [1, 0]]
    assert SearchSpace(n_values=2, C=1.0, step=0.5, kind=EXTRAPOLATION).grid_size() == 9
    assert SearchSpace(n_values=2, C=1.0, step=0.5, kind=SIMPLEX).grid_size() == 3
    assert SearchSpace(n_values=2, C=1.0, step=0.3, kind=SIMPLEX).grid_size() == 0  # 0.3 does not divide 1


def test_each_kind_gives_its_weight_sets(tmp_path: Path) -> None:
    dirs = (Path("a"), Path("b"))
    [(d, W)] = row("extrapolation").weight_sets(C=1.0, step=0.5)
    assert d == dirs and W.tolist() == BOX
    [(_, W)] = row("extrapolation").weight_sets(C=2.0, step=1.0)  # C bounds the extrapolation grid: [0, 2]^2
    assert W.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0], [2, 1], [2, 2]]
    [(_, W)] = row("simplex").weight_sets(C=2.0, step=0.5)  # the simplex ignores C
    assert W.tolist() == [[0, 1], [.5, .5], [1, 0]]
    [(_, W)] = row("extrapolation").weight_sets(C=1.0, step=0.5, active=[1])  # value 0 stays at 0
    assert W.tolist() == [[0, 0], [0, .5], [0, 1]]
    [(_, W)] = row("vertices", vertex=1).weight_sets(C=1.0, step=0.5)
    assert W.tolist() == [[0, 1]]
    assert [(d, W.tolist()) for d, W in row("each").weight_sets(C=1.0, step=0.5)] == [((dirs[0],), [[1]]),
                                                                                    ((dirs[1],), [[1]])]
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "mva_vector.json").write_text(json.dumps({"values": ["warm", "short"]}))
    [(d, W)] = row("conditioned", dirs=(policy,)).weight_sets(C=1.0, step=0.5)
    assert d == (policy,) and W.tolist() == [[i / 10, (10 - i) / 10] for i in range(11)]  # MI-EPO's 11 p
    for kind in ("conditioned", "each", "vertices"):
        with pytest.raises(ConfigError, match="no weight grid"):
            list(row(kind, vertex=0).weight_sets(C=1.0, step=0.5, active=[0]))


def test_what_each_kind_answers() -> None:
    # kind: (has_grid, extrapolates, searchable, continuous, preference_in_prompt, several_models, one_vector_per_value)
    expected = {
        "extrapolation": (True, True, True, True, False, False, True),
        "simplex": (True, False, False, True, False, False, True),
        "decode-time": (True, True, True, True, False, False, True),
        "conditioned": (False, False, False, True, True, False, False),
        "each": (False, False, False, False, False, True, False),
        "vertices": (False, False, False, False, False, False, True),
    }
    assert list(KINDS) == list(expected)
    for name, answers in expected.items():
        k = get_kind(name)
        assert (k.has_grid, k.extrapolates, k.searchable, k.continuous, k.preference_in_prompt, k.several_models,
                k.one_vector_per_value) == answers, name
    assert [get_kind(n).sweep_kinds() for n in expected] == [GRID_KINDS, GRID_KINDS, ["decode-time"], ["conditioned"],
                                                             ["each"], ["vertices"]]
    assert [get_kind(n).bound(2.0) for n in expected] == [2.0, 1.0, 2.0, 1.0, 1.0, 1.0]
    # a decode-time candidate pays n + 1 rows per token; only it mixes at decoding, and its stored decoding says so
    assert [get_kind(n).rows_per_token(2) for n in expected] == [1, 1, 3, 1, 1, 1]
    assert [n for n in expected if get_kind(n).mixes_at_decoding] == ["decode-time"]
    assert DECODE_TIME.decoded_as("abc") == "abc|decode-time" and EXTRAPOLATION.decoded_as("abc") == "abc"
    assert DECODE_TIME.decodes("abc|decode-time") and not DECODE_TIME.decodes("abc")
    assert EXTRAPOLATION.decodes("abc") and not EXTRAPOLATION.decodes("abc|decode-time")
    assert SIMPLEX.constraint == "rows summing to 1" and EXTRAPOLATION.constraint == ""
    with pytest.raises(ConfigError, match="unknown; choose one of"):
        get_kind("soup")


def test_rows_per_method() -> None:
    dirs, hashes = (Path("a"), Path("b")), ("h0", "h1")
    assert [(r.name, r.vertex) for r in VERTICES.rows("dpo", dirs, hashes, ["warm", "short"])] == [
        ("dpo-warm", 0), ("dpo-short", 1)]
    for kind in (EXTRAPOLATION, SIMPLEX, CONDITIONED, EACH):
        assert kind.rows("m", dirs, hashes, ["warm", "short"]) == [ComparedMethod("m", "m", kind.name, dirs, hashes)]
    assert row("extrapolation").on_grid("simplex").kind is SIMPLEX
    assert row("each").on_grid("simplex").kind is EACH  # no grid to change


def test_how_a_row_of_weights_becomes_a_candidate() -> None:
    warm, short = vector("warm"), vector("short")
    policy = vector("all", conditioned=True)
    assert evaluated_as([warm, short], 2) is EXTRAPOLATION
    assert evaluated_as([warm], 2) is EACH
    assert evaluated_as([policy], 2) is CONDITIONED
    assert evaluated_as([warm, short], 2, DECODE_TIME) is DECODE_TIME  # mod: the same vectors, mixed per token
    assert evaluated_as([warm, short], 2, EXTRAPOLATION) is EXTRAPOLATION
    names = ("warm", "short")
    # one vector per value: the row is the weights, named after the values, in the workspace's box
    assert EXTRAPOLATION.row_names(names, [warm, short]) == names
    assert EXTRAPOLATION.preference([0.5, 1.5]) is None and EXTRAPOLATION.candidate_weights([0.5, 1.5]) == (0.5, 1.5)
    assert EXTRAPOLATION.candidate_values(names, [warm, short]) == names
    assert EXTRAPOLATION.row_space(2, 2.0) == SearchSpace(n_values=2, C=2.0, step=0.25, kind="extrapolation")
    assert EXTRAPOLATION.prompt_conditioning([warm, short]) is None
    # a conditioned policy: the row is the preference p in its prompt; the policy alone at weight 1
    assert CONDITIONED.row_names(names, [policy]) == names
    assert CONDITIONED.preference([0.25, 0.75]) == (0.25, 0.75)
    assert CONDITIONED.candidate_weights([0.25, 0.75]) == (1.0,)
    assert CONDITIONED.candidate_values(names, [policy]) == ("all",)
    assert CONDITIONED.row_space(2, 2.0) == SearchSpace(n_values=2, C=1.0, step=1.0, kind="simplex")
    # one model alone: weights per vector, named after it, bounded by max(1, C)
    assert EACH.row_names(names, [short]) == ("short",)
    assert EACH.preference([1.0]) is None and EACH.candidate_weights([1.0]) == (1.0,)
    assert EACH.row_space(1, 0.5) == SearchSpace(n_values=1, C=1.0, step=1.0)


def test_value_weights_a_candidate_stands_for(tmp_path: Path) -> None:
    assert EXTRAPOLATION.value_weights(row("extrapolation"), [["h0", "h1"]], [None], 2) is None
    assert VERTICES.value_weights(row("vertices", vertex=0), [["h0", "h1"]], [None], 2) is None
    got = CONDITIONED.value_weights(row("conditioned"), [["h0"]] * 3, [[0.2, 0.8], None, [1.0]], 2)
    assert got[0] == [0.2, 0.8] and np.isnan(got[1]).all() and np.isnan(got[2]).all()
    a, b = tmp_path / "a", tmp_path / "b"
    for d, meta in ((a, {"preference": [0.7, 0.3]}), (b, {})):
        d.mkdir()
        (d / "mva_vector.json").write_text(json.dumps(meta))
    got = EACH.value_weights(row("each", dirs=(a, b)), [["h0"], ["h1"]], [None, None], 2)
    assert got[0] == [0.7, 0.3] and np.isnan(got[1]).all() and len(got[1]) == 2


def test_search_space_holds_its_kind_and_stores_its_name() -> None:
    space = SearchSpace(n_values=2, C=1.0, step=0.5, kind="simplex")  # a name (JSON, --kind) is resolved once
    assert space.kind is SIMPLEX
    assert space.to_dict() == {"n_values": 2, "C": 1.0, "step": 0.5, "kind": "simplex"}
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert pickle.loads(pickle.dumps(space)).kind is SIMPLEX  # a Ray worker gets the registered object
    assert SearchSpace().fingerprint() == SearchSpace(kind="extrapolation").fingerprint()
    with pytest.raises(WeightsError, match="sum to"):
        space.check([0.5, 0.6])
    assert space.check([0.5, 0.5]).tolist() == [0.5, 0.5]
    SearchSpace(n_values=2, C=1.0, step=0.5).check([0.5, 0.6])  # the box takes it
    for bad in ("soup", "conditioned", EACH):
        with pytest.raises(ConfigError, match="choose 'extrapolation' or 'simplex'"):
            SearchSpace(kind=bad)  # type: ignore[arg-type]


def test_off_simplex_marks_rows_whose_weights_do_not_sum_to_one() -> None:
    from mva_core.kinds import off_simplex

    W = [[0.5, 0.5], [0.1, 0.2 + 0.7], [1.0, 1.0], [0.0, 0.0], [0.3, 0.7 + 2e-9], [np.nan, 1.0], [1.0]]
    assert off_simplex(W).tolist() == [False, False, True, True, True, False, False]
