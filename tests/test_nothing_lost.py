"""Nothing lost, round 2 (issue 25 items 1, 2, 5, 6, 8's `results` cases, 10): no command destroys a value vector,
the store or the manifest; `init` loses no vector silently; reading a workspace writes nothing.

Every case runs through `mva_core.cli.main` (the code path of `python -m mva_core`) and checks, byte for byte, that
what was there is still there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from mva_core.atomic import MARKER
from mva_core.cli import main
from mva_core.errors import ReadOnlyError
from mva_core.store import ADDED_COLUMNS, ADDED_TABLES
from mva_core.sweep import Evaluator, evaluate_base
from mva_core.workspace import DEMO_WORKSPACE, Workspace, open_workspace
from tests.tiny import make_tiny_llama, make_tiny_workspace, make_value_vector


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (links not followed) -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    return code, captured.out, err[-1] if err else ""


@pytest.fixture(scope="module")
def ws_with_candidate(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    ws = make_tiny_workspace(root, method="mva", n_prompts=2)
    evaluate_base(ws)
    cid = Evaluator(ws, "mva").evaluate([[0.5, 0.5]]).candidate_ids[0]
    return ws, cid


# ---- item 1: export --force never replaces a value vector ----

@pytest.mark.parametrize("fmt", ["card", "peft", "csv"])
def test_export_force_never_replaces_a_value_vector(ws_with_candidate, capsys, fmt):
    ws, cid = ws_with_candidate
    before = snapshot(ws.root / "vectors")
    for target in [ws.root / "vectors" / "mva" / "warmth", ws.root / "vectors" / "mva", ws.root / "vectors",
                   ws.root / "vectors" / "mva" / "newname"]:
        code, _, line = run(["export", "--workspace", str(ws.root), "--candidate", str(cid), "--format", fmt,
                             "--out", str(target), "--force"], capsys)
        assert code == 2 and "value vectors of the workspace" in line, (target, line)
    assert snapshot(ws.root / "vectors") == before
    assert [m.name for m in ws.compared_methods()] == ["mva"]  # still a method with both vectors


def test_a_value_vector_outside_a_workspace_is_not_an_export(ws_with_candidate, tmp_path, capsys):
    """A vector dir (our marker says value_vector, or a legacy one with only mva_vector.json) copied anywhere."""
    ws, cid = ws_with_candidate
    for name, legacy in [("marked", False), ("legacy", True)]:
        vec = tmp_path / name
        shutil.copytree(ws.root / "vectors" / "mva" / "warmth", vec)
        if legacy:
            (vec / MARKER).unlink(missing_ok=True)
        else:
            (vec / MARKER).write_text(json.dumps({"written_by": "mva-explorer", "kind": "value_vector"}))
        before = snapshot(vec)
        code, _, line = run(["export", "--workspace", str(ws.root), "--candidate", str(cid), "--format", "card",
                             "--out", str(vec), "--force"], capsys)
        assert code == 2 and "holds a value vector written by MVA Explorer, not an export" in line, line
        assert snapshot(vec) == before


def test_export_force_still_replaces_our_own_export(ws_with_candidate, tmp_path, capsys):
    ws, cid = ws_with_candidate
    out = ws.root / "exports" / "card"
    argv = ["export", "--workspace", str(ws.root), "--candidate", str(cid), "--format", "card", "--out", str(out)]
    assert run(argv, capsys)[0] == 0
    (out / "README.md").write_text("stale")
    assert run([*argv, "--force"], capsys)[0] == 0 and (out / "README.md").read_text() != "stale"
    assert json.loads((out / MARKER).read_text())["kind"] == "export"


# ---- item 2 and item 8's `results --csv` cases: a CSV is written like an export ----

@pytest.mark.parametrize("victim", ["mva.sqlite", "workspace.json", "vectors/mva/warmth/adapter_config.json"])
def test_results_csv_never_overwrites_a_workspace_file(ws_with_candidate, capsys, victim):
    ws, _ = ws_with_candidate
    before = snapshot(ws.root)
    for force in ([], ["--force"]):
        code, _, line = run(["results", "--workspace", str(ws.root), "--csv", str(ws.root / victim), *force], capsys)
        assert code == 2, line
        assert ("already exists" in line) if not force else ("never replaces a workspace's own files" in line), line
    assert snapshot(ws.root) == before
    assert len(Workspace(ws.root).store.candidates()) == 2  # the store still reads


def test_results_csv_is_refused_over_a_file_and_replaced_only_if_ours(ws_with_candidate, tmp_path, capsys):
    ws, _ = ws_with_candidate
    thesis = tmp_path / "thesis.tex"
    thesis.write_text("\\section{keep me}")
    for force in ([], ["--force"]):
        code, _, line = run(["results", "--workspace", str(ws.root), "--csv", str(thesis), *force], capsys)
        assert code == 2 and thesis.read_text() == "\\section{keep me}", line
    out = tmp_path / "table.csv"
    argv = ["results", "--workspace", str(ws.root), "--csv", str(out)]
    assert run(argv, capsys)[0] == 0
    first = pd.read_csv(out)
    assert list(first["method"]) == ["base", "mva"]
    code, _, line = run(argv, capsys)
    assert code == 2 and "--force" in line  # an existing table is not replaced unasked
    assert run([*argv, "--force"], capsys)[0] == 0
    assert pd.read_csv(out).equals(first)
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv", "thesis.tex"]  # no temp file left


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("target, says", [
    ("{tmp}/nonexistent/dir/x.csv", "does not exist"),
    ("{tmp}", "is a directory"),
    ("", "--csv is empty"),
])
def test_results_csv_bad_paths_are_one_line(ws_with_candidate, tmp_path, capsys, target, says):
    ws, _ = ws_with_candidate
    code, out, line = run(["results", "--workspace", str(ws.root), "--csv", target.format(tmp=tmp_path)], capsys)
    assert code == 2 and line.startswith("error: ") and says in line, line
    assert "Traceback" not in capsys.readouterr().err


def test_results_on_an_unreadable_store_is_one_line(ws_with_candidate, tmp_path, capsys):
    """A store path that cannot be opened as a file (here a directory: root reads any chmod'ed file)."""
    ws, _ = ws_with_candidate
    copy = tmp_path / "copy"
    shutil.copytree(ws.root, copy)
    (copy / "mva.sqlite").unlink()
    (copy / "mva.sqlite").mkdir()
    code, _, line = run(["results", "--workspace", str(copy)], capsys)
    assert code == 2 and line.startswith("error: ") and "mva.sqlite" in line, line


def test_results_on_a_damaged_store_is_one_line(ws_with_candidate, tmp_path, capsys):
    ws, _ = ws_with_candidate
    copy = tmp_path / "copy"
    shutil.copytree(ws.root, copy)
    (copy / "mva.sqlite").write_bytes(b"id,method\n1,mva\n")  # what `--csv WS/mva.sqlite` used to leave there
    for name in ("mva.sqlite-wal", "mva.sqlite-shm"):
        (copy / name).unlink(missing_ok=True)
    code, _, line = run(["results", "--workspace", str(copy)], capsys)
    assert code == 2 and line.startswith("error: ") and "mva.sqlite" in line, line


def test_results_method_names_the_methods_there(ws_with_candidate, capsys):
    ws, _ = ws_with_candidate
    code, _, line = run(["results", "--workspace", str(ws.root), "--method", "nosuch"], capsys)
    assert code == 2 and "methods with candidates: ['mva']" in line, line


# ---- items 5 and 6: `init` reserves `base` and loses no vector ----

@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    make_tiny_llama(root / "base")
    for i, value in enumerate(["warm", "short", "warm2"]):
        make_value_vector(root / "base", root / "adapters" / value, value, seed=20 + i)
    return root


def _init(parts: Path, out: Path, *vectors: str) -> list[str]:
    return ["init", str(out), "--base", str(parts / "base"), "--value", "warm=warmth", "--value", "short=brevity",
            "--no-base-check", *[a for v in vectors for a in ("--vectors", v)]]


@pytest.mark.parametrize("vectors, says", [
    (["base=warm:{a}/warm,short:{a}/short"], "reserved for the base model"),
    (["mva=warm:{a}/warm,warm:{a}/warm2,short:{a}/short"], "gives value 'warm' more than one vector"),
    (["mva=warm:{a}/warm,short:{a}/short", "mva=warm:{a}/warm2,short:{a}/short"], "names method 'mva' twice"),
    (["mva=warm:{a}/warm"], "no value vector for ['short']"),
])
def test_init_refuses_what_it_would_lose(parts, tmp_path, capsys, vectors, says):
    out = tmp_path / "ws"
    code, _, line = run(_init(parts, out, *[v.format(a=parts / "adapters") for v in vectors]), capsys)
    assert code == 2 and says in line, line
    assert not out.exists()


def test_init_onto_a_file_names_no_flag_it_lacks(parts, tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    code, _, line = run(_init(parts, f), capsys)
    assert code == 2 and "is a file" in line and "--force" not in line and "--out" not in line, line
    assert f.read_text() == "mine"


def test_a_vectors_dir_named_base_is_not_a_method(ws_with_candidate, tmp_path):
    ws, _ = ws_with_candidate
    copy = tmp_path / "copy"
    shutil.copytree(ws.root, copy)
    shutil.copytree(copy / "vectors" / "mva", copy / "vectors" / "base")
    assert [m.name for m in Workspace(copy).compared_methods()] == ["mva"]


# ---- item 10: reading never writes ----

def _old_store(path: Path) -> None:
    """Drop what later versions added (columns and tables), as a store written before them looks."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=DELETE")
    for table, column, _ in ADDED_COLUMNS:
        con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    for table in ADDED_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.commit()
    con.close()


def test_reading_an_older_store_does_not_migrate_it(ws_with_candidate, tmp_path, capsys):
    ws, _ = ws_with_candidate
    copy = tmp_path / "copy"
    shutil.copytree(ws.root, copy)
    expected = io.StringIO()
    with redirect_stdout(expected):
        assert main(["results", "--workspace", str(copy)]) == 0
    _old_store(copy / "mva.sqlite")
    before = snapshot(copy)
    for argv in (["results"], ["compare", "--json"], ["results", "--method", "mva"]):
        code, out, line = run([*argv[:1], "--workspace", str(copy), *argv[1:]], capsys)
        assert code == 0, line
        if argv == ["results"]:
            assert out == expected.getvalue()  # the old file reads as it did before the columns were dropped
    assert snapshot(copy) == before  # not one byte changed, no new file
    # a write upgrades it in place, as before
    Workspace(copy).store.start_run("probe", {})
    con = sqlite3.connect(copy / "mva.sqlite")
    assert "preference" in {r[1] for r in con.execute("PRAGMA table_info(candidates)")}
    con.close()


def test_results_without_workspace_reads_the_shipped_demo_in_place(monkeypatch, tmp_path, capsys):
    """No default workspace yet: `results` reads data/demo where it is and copies nothing."""
    default = tmp_path / "workspace"
    monkeypatch.setattr("mva_core.workspace.DEFAULT_WORKSPACE", default)
    monkeypatch.delenv("MVA_WORKSPACE", raising=False)
    before = snapshot(DEMO_WORKSPACE)
    code, out, line = run(["results", "--method", "mva"], capsys)
    assert code == 0, line
    table = pd.read_csv(io.StringIO(out))
    assert set(table["method"]) == {"base", "mva"} and len(table) > 10
    assert not default.exists()
    assert snapshot(DEMO_WORKSPACE) == before
    # a write is refused on the demo in place, and the first writing command makes the copy
    ws = open_workspace(read_only=True)
    assert ws.root == DEMO_WORKSPACE.resolve()
    with pytest.raises(ReadOnlyError, match="opened read-only"):
        ws.store.check_writable()
