"""Issue 18 items 2-6: a damaged, read-only or invalid workspace, a full disk, names that would leave the
workspace, unbounded inputs and stale runs each give one line (CLI, through `mva_core.cli.main` or the real
`python -m mva_core`) or an on-page error (AppTest), and nothing is lost. docs/faults.md lists each case."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mva_core.cli import main
from mva_core.store import Store
from mva_core.sweep import Evaluator, evaluate_base
from tests.apptest import open_page, switch_page
from tests.tiny import make_tiny_workspace

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, int]:
    """A tiny workspace with the base model and one candidate stored (copied by each test that changes it)."""
    root = tmp_path_factory.mktemp("evaluated") / "ws"
    ws = make_tiny_workspace(root, n_prompts=2)
    evaluate_base(ws)
    cid = Evaluator(ws, "mva-no-hsic").evaluate([[0.5, 0.5]]).candidate_ids[0]
    return root, cid


@pytest.fixture
def ws_copy(evaluated, tmp_path) -> tuple[Path, int]:
    root, cid = evaluated
    dst = tmp_path / "ws"
    shutil.copytree(root, dst)
    return dst, cid


def one_line(argv: list[str], capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err), err
    return code, err[-1] if err else ""


# ---- damaged store ----
@pytest.mark.parametrize("damage", ["not sqlite", "truncated"])
def test_damaged_store_is_one_line_and_an_error_on_the_page(ws_copy, tmp_path, capsys, monkeypatch, damage):
    root, cid = ws_copy
    store = root / "mva.sqlite"
    with sqlite3.connect(store) as con:  # fold the WAL in so the main file holds every page
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if damage == "not sqlite":
        store.write_text("these are my notes, not a database\n" * 200)
    else:
        data = store.read_bytes()
        store.write_bytes(data[: len(data) // 3])
    before = store.read_bytes()
    code, line = one_line(["export", "--workspace", root, "--candidate", cid, "--format", "csv",
                           "--out", tmp_path / "out"], capsys)
    assert code == 2 and "mva.sqlite" in line and "damaged or not an SQLite file" in line, line
    assert store.read_bytes() == before and not (tmp_path / "out").exists()
    at = open_page_raw(monkeypatch, root)
    assert not at.exception and any("damaged or not an SQLite file" in e.value for e in at.error), at.error


def open_page_raw(monkeypatch, root: Path, page: str | None = None):
    """open_page without its no-exception assertion (the caller checks what it expects)."""
    from streamlit.testing.v1 import AppTest

    from tests.apptest import APP

    monkeypatch.setenv("MVA_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    if page is not None:
        switch_page(at, page).run()
    return at


# ---- read-only workspace and a full disk: real mounts in a private mount namespace ----
def in_mount_namespace(script: str, ws_args: dict[str, Path]) -> subprocess.CompletedProcess:
    """Run `script` (sh) in a private mount namespace as root; it may mount read-only binds and small tmpfs.
    Fails (does not skip) where the machine allows no namespace: CI must run these."""
    env = {**os.environ, **{k: str(v) for k, v in ws_args.items()}, "PYTHONPATH": str(REPO)}
    return subprocess.run(["unshare", "-m", "sh", "-ec", script], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)


@pytest.mark.slow
def test_read_only_workspace_browses_and_exports_but_refuses_to_write(ws_copy, tmp_path):
    root, cid = ws_copy
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    py = sys.executable
    proc = in_mount_namespace(f"""
        mount --bind -o ro "$WS" "$WS"
        {py} -m mva_core export --workspace "$WS" --candidate {cid} --format card --out "$OUT/card"
        {py} -m mva_core export --workspace "$WS" --candidate {cid} --format csv --out "$OUT/csv"
        {py} -m mva_core sweep --workspace "$WS" --method mva-no-hsic --grid 0:1:0.25 && exit 9 || echo "sweep rc=$?"
        """, {"WS": root, "OUT": tmp_path})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "card" / "README.md").is_file() and (tmp_path / "csv" / "candidates.csv").is_file()
    assert "sweep rc=2" in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "read-only" in last and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_full_disk_during_export_leaves_nothing_half_written(ws_copy, tmp_path):
    root, cid = ws_copy
    small = tmp_path / "small"
    small.mkdir()
    py = sys.executable
    proc = in_mount_namespace(f"""
        mount -t tmpfs -o size=64k tmpfs "$SMALL"
        {py} -m mva_core export --workspace "$WS" --candidate {cid} --format merged --out "$SMALL/merged" \
            && exit 9 || echo "rc=$?"
        ls -A "$SMALL" > "$WS/../left.txt"
        """, {"WS": root, "SMALL": small})
    assert proc.returncode == 0 and "rc=2" in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the disk is full") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (tmp_path / "left.txt").read_text().split() == []  # no partial export, no temp dir


# ---- workspace.json of the wrong shape ----
BAD_MANIFESTS = {
    "values is a string": ({"values": "warmth"}, "values = 'warmth' must be a list"),
    "name null": ({"values": [{"name": None, "scorer": "warmth"}]}, "ValueSpec.name = None"),
    "max_new_tokens a string": ({"decoding": {"max_new_tokens": "48"}}, "max_new_tokens = '48' (str) is not an integer"),
    "C zero": ({"C": 0}, "C = 0"),
    "C not a number": ({"C": "one"}, "Manifest.C = 'one' (str) is not a number"),
    "duplicate value names": ({"values": [{"name": "a", "scorer": "warmth"}, {"name": "a", "scorer": "brevity"}]},
                              "appear twice"),
    "value name leaves the workspace": ({"values": [{"name": "../../x", "scorer": "warmth"}]},
                                        "value name '../../x' is not allowed"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_bad_manifest_names_file_and_field(ws_copy, tmp_path, capsys, monkeypatch, case):
    root, _ = ws_copy
    change, needle = BAD_MANIFESTS[case]
    manifest = json.loads((root / "workspace.json").read_text())
    (root / "workspace.json").write_text(json.dumps({**manifest, **change}))
    code, line = one_line(["sweep", "--workspace", root, "--method", "mva-no-hsic"], capsys)
    assert code == 2 and "workspace.json" in line and needle in line, line
    at = open_page_raw(monkeypatch, root)
    assert not at.exception and any(needle in e.value for e in at.error), [e.value for e in at.error]


def test_invalid_json_names_workspace_json(ws_copy, capsys):
    root, _ = ws_copy
    (root / "workspace.json").write_text('{"base": "x", "values": [}')
    code, line = one_line(["sweep", "--workspace", root, "--method", "mva-no-hsic"], capsys)
    assert code == 2 and "workspace.json is not valid JSON" in line and "line 1, column" in line, line


# ---- names and unbounded inputs ----
def test_train_value_name_cannot_leave_the_workspace(tmp_path, capsys):
    code, line = one_line(["train", "--workspace", tmp_path / "ws", "--method", "mva", "--values", "../x",
                           "--data", f"../x={tmp_path / 'pairs.jsonl'}", "--base", tmp_path / "base"], capsys)
    assert code == 2 and "'../x' is not allowed" in line
    assert not (tmp_path / "x").exists() and not (tmp_path / "ws").exists()


@pytest.mark.parametrize("grid,needle", [
    ("0:1:0.00001", "means enumerating 10,000,200,001 grid points"),
    ("0:1:0.01", "this sweep has 10,201 candidates"),
])
def test_huge_grids_are_refused_before_any_work(ws_copy, capsys, grid, needle):
    root, _ = ws_copy
    before = Store(root / "mva.sqlite").version()
    code, line = one_line(["sweep", "--workspace", root, "--method", "mva-no-hsic", "--grid", grid], capsys)
    assert code == 2 and needle in line, line
    assert Store(root / "mva.sqlite").version() == before


@pytest.mark.parametrize("chunk", ["0", "-1"])
def test_chunk_must_be_positive(ws_copy, capsys, chunk):
    root, _ = ws_copy
    code, line = one_line(["sweep", "--workspace", root, "--method", "mva-no-hsic", f"--chunk={chunk}"], capsys)
    assert code == 2 and f"--chunk {chunk}: candidates per generate call must be >= 1" in line, line


def test_prompt_longer_than_the_context_is_refused(ws_copy, tmp_path, capsys):
    root, _ = ws_copy
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "bake bread " * 400}) + "\n")  # the tiny model's context is 256
    before = Store(root / "mva.sqlite").version()
    code, line = one_line(["sweep", "--workspace", root, "--method", "mva-no-hsic", "--prompts", long], capsys)
    assert code == 2 and "exceeds the model's context of 256" in line and "refused, not cut" in line, line
    assert Store(root / "mva.sqlite").version() == before


# ---- runs whose process is gone; a resumed sweep adopts them ----
def test_killed_run_shows_stopped_and_a_rerun_adopts_it(tmp_path):
    store_path = tmp_path / "mva.sqlite"
    config = {"method": "mva", "grid": [[0.0, 1.0]]}
    proc = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys; from mva_core.store import Store; "
        f"Store(sys.argv[1]).start_run('sweep', {config!r}, 'mva'); os.kill(os.getpid(), signal.SIGKILL)"),
        str(store_path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    store = Store(store_path)
    runs = store.runs()
    assert runs["status"].tolist() == ["stopped"] and runs["host"].iloc[0] == os.uname().nodename
    run_id = store.start_run("sweep", config, "mva", adopt=True)
    assert run_id == int(runs["id"].iloc[0]) and store.runs()["status"].tolist() == ["running"]
    assert store.start_run("sweep", {**config, "chunk": 4}, "mva", adopt=True) != run_id  # another config: new run
    store.finish_run(run_id, "done", {})
    assert store.runs()["status"].tolist() == ["done", "running"]  # the second is this live process


# ---- the app: viewing never writes; a changed manifest or a replaced store is picked up ----
@pytest.mark.slow
def test_viewing_creates_no_store_and_a_deleted_store_does_not_break_pages(tmp_path, monkeypatch, ws_copy):
    root = tmp_path / "fresh"
    make_tiny_workspace(root, n_prompts=2)
    assert not (root / "mva.sqlite").exists()
    for page in [None, "pages/compare.py", "pages/sweep.py", "pages/responses.py", "pages/export.py"]:
        at = open_page(monkeypatch, root, page)
        assert not at.exception
    assert not (root / "mva.sqlite").exists()  # viewing wrote nothing

    evaluated_root, _ = ws_copy
    at = open_page(monkeypatch, evaluated_root, "pages/compare.py")
    n_before = len(at.dataframe)
    for f in evaluated_root.glob("mva.sqlite*"):
        f.unlink()
    at.run()
    assert not at.exception, at.exception
    assert n_before >= 1


def test_edited_manifest_is_picked_up_without_a_restart(ws_copy, monkeypatch):
    root, _ = ws_copy
    at = open_page(monkeypatch, root)
    manifest = json.loads((root / "workspace.json").read_text())
    manifest["description"] = "EDITED while the app was open"
    (root / "workspace.json").write_text(json.dumps(manifest))
    st = (root / "workspace.json").stat()
    os.utime(root / "workspace.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a distinct mtime
    at.run()
    assert not at.exception
    assert any("EDITED while the app was open" in c.value for c in at.caption), [c.value for c in at.caption]


def test_a_store_deleted_and_made_again_gets_its_tables(tmp_path):
    """The schema check is skipped for a file already checked; a deleted store made again (which may reuse the
    old inode) is checked again rather than read as if it had tables."""
    from mva_core.store import Store

    store = Store(tmp_path / "mva.sqlite")
    run = store.start_run("sweep", {"a": 1}, "m")
    store.finish_run(run, "done", {})
    for f in tmp_path.glob("mva.sqlite*"):
        f.unlink()
    assert store.runs().empty  # gone: an empty store, nothing created
    store.finish_run(store.start_run("sweep", {"a": 2}, "m"), "done", {})
    assert store.runs()["config"].tolist() == ['{"a": 2}']
