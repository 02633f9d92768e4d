"""Training through the one executor interface (issue 26 item 4): `train --executor ray` runs the training job as a
Ray task on a real local Ray and gives the vectors the local executor gives, bit for bit (same seed, same torch thread
count); the run row is written by the driver alone; a failure inside the Ray job marks the run failed with the job's
message, which names the fix; a crashed Ray worker is an ExecutorError that says how to go on."""

from __future__ import annotations

import json
import os

import pytest

from mva_core.cli import main
from mva_core.executor import ExecutorError, RayExecutor
from mva_core.store import Store
from mva_core.sweep import LocalExecutor
from mva_core.vectors import load_value_vectors
from tests.test_cli_train import PAIRS
from tests.tiny import make_tiny_llama

VALUES = ("warm", "short")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (the first RayExecutor starts it with --workers CPUs), shut down at its end."""
    import ray

    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-executor")
    make_tiny_llama(root / "base")
    for v, rows in PAIRS.items():
        (root / f"{v}.jsonl").write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                                                 for p, c, r in rows))
    return root


def train_args(root, ws, *more):
    return ["train", "--method", "mva", "--values", ",".join(VALUES), *(a for v in VALUES for a in
            ("--data", f"{v}={root / (v + '.jsonl')}")), "--base", str(root / "base"), "--steps", "2", "--lr", "1e-2",
            "--seed", "3", "--workspace", str(ws), *more]


def vectors(ws):
    return load_value_vectors([ws / "vectors" / "mva" / v for v in VALUES])


@pytest.mark.slow
def test_training_on_ray_equals_training_here_and_a_failed_job_marks_the_run(setup, ray_session, capsys):
    root = setup
    assert main(train_args(root, root / "local")) == 0
    assert main(train_args(root, root / "ray", "--executor", "ray", "--workers", "1")) == 0
    err = capsys.readouterr().err
    assert f"ray: mva training into {root / 'ray' / 'vectors' / 'mva'}: started on a local Ray (1 CPU, 0 GPU)" in err
    assert "ray: mva training into" in err and ": finished in " in err
    here, there = vectors(root / "local"), vectors(root / "ray")
    assert [v.hash for v in here] == [v.hash for v in there]  # the adapters' bytes, bit for bit
    for a, b in zip(here, there):
        assert a.meta["losses"] == b.meta["losses"] and len(a.meta["losses"]) == 2
    assert here[1].meta["hsic_terms"] == there[1].meta["hsic_terms"]
    for ws in ("local", "ray"):  # one run row each, opened and closed by the driver
        runs = Store(root / ws / "mva.sqlite").runs()
        assert runs["status"].tolist() == ["done"] and runs["kind"].tolist() == ["train"]
        assert set(json.loads(runs.iloc[0]["log"])) == set(VALUES)

    # a failure inside the Ray job: another α into the same vectors dir, which holds this run's finished vectors
    assert main(train_args(root, root / "ray", "--executor", "ray", "--alpha", "3")) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "holds a vector of another run" in last
    assert "remove that dir to retrain it, or choose another output root" in last  # the fix
    runs = Store(root / "ray" / "mva.sqlite").runs()
    failed = json.loads(runs.iloc[-1]["log"])
    assert runs["status"].tolist() == ["done", "stopped"] and failed["reason"] == "failed"
    assert "OutputExistsError" in failed["error"] and "choose another output root" in failed["error"]
    assert [v.hash for v in vectors(root / "ray")] == [v.hash for v in here]  # nothing of the finished run lost


@pytest.mark.slow
def test_a_crashed_ray_worker_says_how_to_go_on(ray_session):
    executor = RayExecutor(workers=1)
    assert executor.call(divmod, 17, 5) == (3, 2)  # the interface: fn(*args) computed there ...
    assert executor.call(os.getpid) != os.getpid()  # ... in a Ray worker, not here
    with pytest.raises(ExecutorError, match=r"the Ray job _exit failed .*rerun the same command to go on.*"
                                            r"--executor local"):
        executor.call(os._exit, 3)  # the worker process dies mid-job


def test_the_local_executor_runs_the_job_here():
    assert LocalExecutor().call(divmod, 17, 5) == (3, 2) and LocalExecutor().call(os.getpid) == os.getpid()
