"""`python -m mva_core <cmd> --help` answers without importing torch (issue 26 item 7), train's aside: its flags are
made from the training methods' settings dataclasses, which live with the (torch-importing) trainers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mva_core.cli import COMMANDS, SHIPPED_DEMOS

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import sys, runpy\nsys.argv = ['mva_core', *sys.argv[1:]]\ntry:\n    runpy.run_module('mva_core', "
         "run_name='__main__')\nexcept SystemExit:\n    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', "
         "file=sys.stderr)\n")


def test_shipped_demo_names_are_the_demo_builders():
    from mva_core.demo import DEMOS

    assert SHIPPED_DEMOS == tuple(DEMOS)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "train"])
def test_help_imports_no_torch(command):
    done = subprocess.run([sys.executable, "-c", PROBE, command, "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert "usage:" in done.stdout and done.stderr.strip().endswith("NO-TORCH"), done.stderr[-500:]
