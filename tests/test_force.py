"""`--force` replaces only MVA Explorer's own outputs (issue 18 item 1).

Each refused target is tried through `mva_core.cli.main` (the code path of `python -m mva_core`): exit 2, one
line naming why, and every file there survives byte for byte. Then the allowed case: our own export is
replaced, with its marker, and honours the umask.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mva_core.atomic import MARKER, UMASK, ExportError, check_replaceable
from mva_core.cli import main
from mva_core.sweep import Evaluator, evaluate_base
from tests.tiny import make_tiny_workspace


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (links not followed) -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def ws_with_candidate(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    ws = make_tiny_workspace(root, n_prompts=2)
    evaluate_base(ws)
    cid = Evaluator(ws, "mva-no-hsic").evaluate([[0.5, 0.5]]).candidate_ids[0]
    return ws, cid


def export_card(ws, cid: int, out: str | Path, capsys) -> tuple[int, str]:
    code = main(["export", "--workspace", str(ws.root), "--candidate", str(cid), "--format", "card",
                 "--out", str(out), "--force"])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def make_project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text("print('my work')\n")
    (root / "notes.md").write_text("# results I care about\n")
    return root


def test_empty_out_in_a_project_dir_is_refused(ws_with_candidate, tmp_path, monkeypatch, capsys):
    ws, cid = ws_with_candidate
    project = make_project(tmp_path / "project")
    before = snapshot(project)
    monkeypatch.chdir(project)
    code, line = export_card(ws, cid, "", capsys)
    assert code == 2 and line.startswith("error: --out is empty")
    assert snapshot(project) == before


@pytest.mark.parametrize("where", ["cwd", "parent of cwd"])
def test_current_directory_and_its_parents_are_refused(ws_with_candidate, tmp_path, monkeypatch, capsys, where):
    ws, cid = ws_with_candidate
    project = make_project(tmp_path / "project")
    (project / MARKER).write_text("{}")  # even a directory that looks like our export
    before = snapshot(tmp_path)
    monkeypatch.chdir(project / "src")
    code, line = export_card(ws, cid, "." if where == "cwd" else "..", capsys)
    assert code == 2 and "current directory or one of its parents" in line
    assert snapshot(tmp_path) == before


def test_the_workspace_is_refused(ws_with_candidate, capsys):
    ws, cid = ws_with_candidate
    before = snapshot(ws.root)
    code, line = export_card(ws, cid, ws.root, capsys)
    assert code == 2 and "not an MVA Explorer export" in line
    assert snapshot(ws.root) == before


def test_a_parent_of_the_workspace_is_refused_even_with_a_marker(ws_with_candidate, tmp_path, capsys):
    ws, cid = ws_with_candidate
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / MARKER).write_text("{}")
    (holder / "inner").mkdir()
    (holder / "inner" / "workspace.json").write_text("{}")
    (holder / "inner" / "mva.sqlite").write_bytes(b"SQLite format 3\x00")
    before = snapshot(holder)
    code, line = export_card(ws, cid, holder, capsys)
    assert code == 2 and "holds the workspace" in line
    assert snapshot(holder) == before


def test_a_symlink_target_is_never_emptied(ws_with_candidate, tmp_path, capsys):
    ws, cid = ws_with_candidate
    real = make_project(tmp_path / "real")
    (real / MARKER).write_text("{}")  # refused because it is a link, whatever it points to
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    before = snapshot(real)
    code, line = export_card(ws, cid, link, capsys)
    assert code == 2 and "is a symlink" in line
    assert snapshot(real) == before and link.is_symlink()


def test_a_directory_that_is_not_ours_and_a_file_are_refused(ws_with_candidate, tmp_path, capsys):
    ws, cid = ws_with_candidate
    mine = make_project(tmp_path / "mine")
    before = snapshot(mine)
    code, line = export_card(ws, cid, mine, capsys)
    assert code == 2 and f"no {MARKER} marker" in line
    assert snapshot(mine) == before
    f = tmp_path / "thesis.tex"
    f.write_text("\\section{keep me}")
    code, line = export_card(ws, cid, f, capsys)
    assert code == 2 and "is a file" in line and f.read_text() == "\\section{keep me}"


def test_compose_and_data_share_the_rule(tmp_path, capsys):
    mine = make_project(tmp_path / "mine")
    before = snapshot(mine)
    src = tmp_path / "pairs.jsonl"
    src.write_text('{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: hello", '
                   '"rejected": "\\n\\nHuman: hi\\n\\nAssistant: go away"}\n')
    code = main(["data", "--workspace", str(tmp_path / "ws"), "--from", str(src), "--format", "hh",
                 "--out", str(mine), "--force"])
    assert code == 2 and f"no {MARKER} marker" in capsys.readouterr().err
    code = main(["compose", "--workspace", str(tmp_path / "ws"), "--base", str(tmp_path / "nobase"),
                 "--adapter", f"a={tmp_path / 'noadapter'}", "--weights", "0.5", "--out", str(mine), "--force"])
    assert code == 2
    assert snapshot(mine) == before


def test_root_and_home_are_refused_without_touching_them():
    with pytest.raises(ExportError, match="refusing to replace"):
        check_replaceable("/")
    with pytest.raises(ExportError, match="refusing to replace"):
        check_replaceable(Path.home())


def test_our_own_export_is_replaced_and_honours_the_umask(ws_with_candidate, tmp_path, capsys):
    ws, cid = ws_with_candidate
    out = tmp_path / "card"
    code, _ = export_card(ws, cid, out, capsys)
    assert code == 0 and (out / MARKER).is_file() and (out / "README.md").is_file()
    (out / "README.md").write_text("stale")
    code, _ = export_card(ws, cid, out, capsys)  # --force over our own export: replaced
    assert code == 0 and (out / "README.md").read_text() != "stale"
    assert out.stat().st_mode & 0o777 == 0o777 & ~UMASK  # the user's umask, not mkdtemp's 0700
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".card.")]  # no temp or old dir left
