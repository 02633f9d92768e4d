"""One run context for every recorded run (issue 26 item 4): `with store.run(kind, config, method) as run:` marks the
run done with the log the block filled, or stopped with the error and why (asked for, or failed), and re-raises."""

from __future__ import annotations

import json

import pytest

from mva_core.generate import Cancelled
from mva_core.store import Store


def last_run(store: Store) -> dict:
    row = store.runs().iloc[-1]
    return {"status": row["status"], "kind": row["kind"], "method": row["method"], "log": json.loads(row["log"]) if isinstance(row["log"], str) else None}


def test_a_run_that_ends_is_done_with_its_log(tmp_path):
    store = Store(tmp_path / "mva.sqlite")
    with store.run("sweep", {"grid": [[0, 1]]}, "mva") as run:
        assert last_run(store)["status"] == "running"
        run.log["candidates"] = 3
    assert last_run(store) == {"status": "done", "kind": "sweep", "method": "mva", "log": {"candidates": 3}}


@pytest.mark.parametrize("exc, reason", [(Cancelled("stop asked"), "cancelled"), (KeyboardInterrupt(), "cancelled"),
                                         (RuntimeError("scorer died"), "failed")])
def test_a_run_that_raises_is_stopped_with_why(tmp_path, exc, reason):
    store = Store(tmp_path / "mva.sqlite")
    with pytest.raises(type(exc)):
        with store.run("search", {"budget": 4}, "mva") as run:
            run.log["evaluations"] = 2
            raise exc
    got = last_run(store)
    assert got["status"] == "stopped" and got["log"]["reason"] == reason and got["log"]["evaluations"] == 2
    assert got["log"]["error"] == repr(exc)


def test_an_adopted_run_is_the_stopped_one_taken_over(tmp_path):
    store = Store(tmp_path / "mva.sqlite")
    with pytest.raises(Cancelled):
        with store.run("sweep", {"grid": [[1, 0]]}, "mva", adopt=True) as first:
            raise Cancelled("stop")
    with store.run("sweep", {"grid": [[1, 0]]}, "mva", adopt=True) as second:
        pass
    assert second.id == first.id and len(store.runs()) == 1 and last_run(store)["status"] == "done"
