"""`pip install .` gives the `mva` command, the same CLI as `python -m mva_core` (issue 26 item 7).

The package is installed for real (pip, setuptools, the project's pyproject.toml) into a temporary target from a copy
of the source, so the clone gets no build/ directory; its `mva` script is run in a fresh process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_pip_install_gives_the_mva_command(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "mva_core", src / "mva_core", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(src)], check=True, capture_output=True, timeout=300)
    script = target / "bin" / "mva"
    assert script.is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    installed = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path,
                               timeout=120)
    module = subprocess.run([sys.executable, "-m", "mva_core", "--help"], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert installed.returncode == 0, installed.stderr
    # the same parser: the same commands and text, only the program name differs
    def words(text: str) -> list[str]:  # argparse indents the usage lines by the program name's length
        return text.replace("usage: mva", "usage: python -m mva_core", 1).split()

    assert words(installed.stdout) == words(module.stdout)
    for command in ("sweep", "train", "export", "results", "compare", "init", "search"):
        assert command in installed.stdout
    sub = subprocess.run([str(script), "results", "--help"], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert sub.returncode == 0 and "--csv" in sub.stdout
    from tests.test_cli_startup import setting_flags_of_every_method, torch_imported

    train, torch = torch_imported(script, "train", "--help", env=env)  # flags from the settings dataclasses
    assert train.returncode == 0 and not torch, train.stderr[-500:]
    assert setting_flags_of_every_method() <= set(train.stdout.replace(",", " ").split())
