"""Issue 25 items 7-9 ("nothing lost, round 2") through `mva_core.cli.main`, the code path of `python -m mva_core`:
a Ray address that answers nothing, refused only when something must be generated and then within seconds; a
damaged store or a non-finite grid refused before the model loads; `compare` with a non-finite reference point;
few prompts warned of; pickle-only and unreadable workspaces pointed the right way; exports with the umask's modes.
The one-line cases of the same issue (hf: scorer paths, base paths, `search --batch`) are rows of
tests/test_faults.py; docs/faults.md lists what each prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mva_core import cli
from mva_core.atomic import UMASK
from mva_core.bootstrap import MIN_PROMPTS_FOR_INTERVALS, MethodScores, bootstrap_compare
from mva_core.notices import notices_to
from tests.tiny import make_tiny_workspace

REPO = Path(__file__).resolve().parents[1]
GRID = ["--method", "mva-no-hsic", "--grid", "0:1:0.5", "--chunk", "4"]  # 9 candidates


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A tiny workspace (3 prompts) whose 0:1:0.5 grid is stored and scored."""
    root = tmp_path_factory.mktemp("swept")
    make_tiny_workspace(root, n_prompts=3)
    assert cli.main(["sweep", "--workspace", str(root), *GRID]) == 0
    return root


@pytest.fixture
def ws(swept, tmp_path) -> Path:
    """A copy of the swept workspace this test may change, its base model the copy's own."""
    root = tmp_path / "ws"
    shutil.copytree(swept, root)
    manifest = json.loads((root / "workspace.json").read_text())
    (root / "workspace.json").write_text(json.dumps({**manifest, "base": str(root / "base")}))
    return root


def run(argv: list, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, the last stderr line as a terminal shows it: after the last carriage return)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    return code, out, lines[-1].split("\r")[-1] if lines else ""


# ---- item 7: sweep --executor ray --address that answers nothing ----
@pytest.mark.slow
def test_ray_sweep_with_everything_stored_exits_0_without_connecting(ws, capsys):
    start = time.monotonic()
    code, out, _ = run(["sweep", "--workspace", ws, *GRID, "--executor", "ray", "--address", "127.0.0.1:1"], capsys)
    assert code == 0 and "0 generated, 9 answered from the store" in out, out
    assert time.monotonic() - start < 30
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()  # never connected (nor imported, in a fresh process)


def test_ray_sweep_with_work_to_do_fails_fast_naming_the_address(ws, capsys):
    start = time.monotonic()
    code, _, line = run(["sweep", "--workspace", ws, "--method", "mva-no-hsic", "--grid", "0:1:0.25", "--chunk", "4",
                         "--executor", "ray", "--address", "127.0.0.1:1"], capsys)
    took = time.monotonic() - start
    assert code == 2 and line.startswith("error: could not reach Ray at 127.0.0.1:1"), line
    assert took < 30, took  # before the fix: ray.init retried for 10 minutes


# ---- item 9: refused before the model loads ----
def damage(ws: Path, how: str) -> None:
    store = ws / "mva.sqlite"
    if how == "not SQLite":
        store.write_bytes(b"this is not a database " * 100)
    else:
        data = store.read_bytes()
        store.write_bytes(data[: len(data) // 3])


@pytest.mark.parametrize("case, needle", [
    ("store not SQLite", "damaged or not an SQLite file"),
    ("store truncated", "damaged"),
    ("grid 0:1:inf", "--grid '0:1:inf': START, STOP and STEP must be finite numbers"),
])
def test_sweep_refuses_before_loading_the_model(case, needle, ws, capsys, monkeypatch):
    import mva_core.sweep

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the sweep was refused")

    monkeypatch.setattr(mva_core.sweep, "load_base", no_loading)
    grid = "0:1:inf" if case.startswith("grid") else "0:1:0.5"
    if case.startswith("store"):
        damage(ws, "not SQLite" if "not SQLite" in case else "truncated")
    before = (ws / "mva.sqlite").read_bytes()
    code, _, line = run(["sweep", "--workspace", ws, "--method", "mva-no-hsic", "--grid", grid], capsys)
    assert code == 2 and line.startswith("error: ") and needle in line, line
    assert (ws / "mva.sqlite").read_bytes() == before


# ---- item 9: compare with a non-finite reference point; few prompts ----
@pytest.mark.parametrize("ref", ["nan,nan", "inf,0"])
def test_compare_refuses_a_non_finite_reference_point(ref, ws, capsys):
    code, out, line = run(["compare", "--workspace", ws, f"--ref={ref}", "--json"], capsys)
    assert code == 2 and out == "", out  # no document with NaN in it
    assert line.startswith("error: reference point") and "finite numbers" in line, line


def test_compare_with_few_prompts_warns_and_stays_valid_json(ws, capsys):
    code = cli.main(["compare", "--workspace", str(ws), "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))  # strict JSON
    assert f"warning: only 3 evaluation prompts" in err and f"at least {MIN_PROMPTS_FOR_INTERVALS} prompts" in err


def test_bootstrap_caveat_below_the_prompt_threshold_only():
    rng = np.random.default_rng(0)
    for n_prompts, warned in ((MIN_PROMPTS_FOR_INTERVALS - 1, True), (MIN_PROMPTS_FOR_INTERVALS, False)):
        base = rng.normal(size=(n_prompts, 2))
        grid = MethodScores("grid", rng.normal(0.2, 1.0, size=(5, n_prompts, 2)))
        told: list[str] = []
        with notices_to(told.append):
            result = bootstrap_compare([grid], base, n_resamples=50)
        assert bool(result.caveat) == warned and told == ([result.caveat] if warned else [])
        if warned:
            assert f"only {n_prompts} evaluation prompts" in result.caveat


# ---- item 9: messages that pointed the wrong way ----
def test_pickle_only_base_offers_the_flag_only_where_the_command_has_it(ws, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    base = ws / "base"
    torch.save(load_file(base / "model.safetensors"), base / "pytorch_model.bin")
    (base / "model.safetensors").unlink()
    code, _, line = run(["sweep", "--workspace", ws, "--method", "mva-no-hsic", "--grid", "0:1:0.25"], capsys)
    assert code == 2 and "only pickle checkpoints (pytorch_model.bin)" in line and "--allow-pickle" not in line, line
    vector = ws / "vectors" / "mva-no-hsic" / "warmth"
    code, _, line = run(["compose", "--base", base, "--adapter", f"warmth={vector}", "--weights", "0.5",
                         "--out", tmp_path / "out"], capsys)
    assert code == 2 and "pass --allow-pickle if you trust the source" in line, line


def test_base_dir_without_weights_does_not_mention_pickle(ws, tmp_path, capsys):
    (ws / "base" / "model.safetensors").unlink()
    code, _, line = run(["sweep", "--workspace", ws, "--method", "mva-no-hsic", "--grid", "0:1:0.25"], capsys)
    assert code == 2 and "has no model weights" in line and "pickle" not in line, line


@pytest.mark.parametrize("what", ["workspace.json", "workspace dir"])
@pytest.mark.slow
def test_unreadable_workspace_says_read_not_write(what, ws):
    """A real permission failure: a child process without the capabilities that let root read anything (or, not
    root, the plain user), on a workspace whose manifest or directory has mode 000."""
    target = ws / "workspace.json" if what == "workspace.json" else ws
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    target.chmod(0)
    try:
        proc = subprocess.run([*drop, sys.executable, "-m", "mva_core", "sweep", "--workspace", str(ws), "--method",
                               "mva-no-hsic"], capture_output=True, text=True, cwd=REPO, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        target.chmod(0o755 if target.is_dir() else 0o644)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert line.startswith(f"error: cannot read {target} (Permission denied)") and "write" not in line, line


# ---- item 9: export file modes ----
@pytest.mark.parametrize("fmt", ["peft", "merged"])
def test_exported_files_get_the_umask_modes(fmt, ws, tmp_path, capsys):
    out = tmp_path / fmt
    vectors = [f"{v}={ws / 'vectors' / 'mva-no-hsic' / v}" for v in ("warmth", "brevity")]
    code = cli.main(["compose", "--base", str(ws / "base"), "--adapter", vectors[0], "--adapter", vectors[1],
                     "--weights", "0.5,0.5", "--format", fmt, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert any(name.endswith(".safetensors") for name in modes)
    assert modes == {name: 0o666 & ~UMASK for name in modes}, modes  # safetensors wrote its file 0600
