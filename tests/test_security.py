"""Security checks of issue #6: no remote code, confined paths, localhost binding, no secrets in the store."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mva_core.models import ModelLoadError, load_base
from mva_core.workspace import WorkspaceError
from tests.tiny import make_tiny_llama, make_tiny_workspace

ROOT = Path(__file__).resolve().parent.parent


def test_no_remote_code_anywhere_in_the_package():
    sources = [p for d in ("mva_core", "pages") for p in (ROOT / d).rglob("*.py")] + [ROOT / "app.py"]
    hits = [f"{p}:{i}" for p in sources for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"trust_remote_code\s*=\s*True", line)]
    assert not hits, hits


def test_model_dir_with_custom_code_does_not_run_it(tmp_path):
    make_tiny_llama(tmp_path / "m")
    marker = tmp_path / "ran.txt"
    (tmp_path / "m" / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "evil.Model", "AutoConfig": "evil.Config"}
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    try:
        load_base(str(tmp_path / "m"))
    except (ModelLoadError, ValueError, OSError):
        pass  # refusing is fine too; running the file is not
    assert not marker.exists()


def test_workspace_paths_are_confined(tmp_path):
    ws = make_tiny_workspace(tmp_path / "ws")
    assert ws.inside("exports", "mine") == (tmp_path / "ws" / "exports" / "mine").resolve()
    for bad in (["..", "..", "etc"], ["exports", "../../../etc"], ["/etc/passwd"]):
        with pytest.raises(WorkspaceError, match="leaves the workspace"):
            ws.inside(*bad)


def test_app_binds_to_localhost_by_default():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "localhost"


@pytest.mark.slow
def test_tokens_in_the_environment_are_not_stored_or_printed(tmp_path):
    ws = tmp_path / "ws"
    make_tiny_workspace(ws)
    secret = "hf_secret_xyz_0123456789"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": secret, "HUGGING_FACE_HUB_TOKEN": secret}
    proc = subprocess.run([sys.executable, "-m", "mva_core", "sweep", "--method", "mva-no-hsic", "--grid", "0:1:1",
                           "--workspace", str(ws)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert secret not in proc.stdout + proc.stderr
    with sqlite3.connect(ws / "mva.sqlite") as con:
        dump = "\n".join(con.iterdump())
    assert secret not in dump and "HF_TOKEN" not in dump
