"""`python -m mva_core <cmd> --help` answers without importing torch (issue 26 item 7), `train --help` included: its
flags are made from the training methods' settings dataclasses, which live torch-free in mva_core.method_settings."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from mva_core.cli import COMMANDS, SHIPPED_DEMOS
from mva_core.method_settings import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import sys, runpy\nsys.argv = ['mva_core', *sys.argv[1:]]\ntry:\n    runpy.run_module('mva_core', "
         "run_name='__main__')\nexcept SystemExit:\n    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', "
         "file=sys.stderr)\n")


def test_shipped_demo_names_are_the_demo_builders():
    from mva_core.demo import DEMOS

    assert SHIPPED_DEMOS == tuple(DEMOS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_imports_no_torch(command):
    done = subprocess.run([sys.executable, "-c", PROBE, command, "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert "usage:" in done.stdout and done.stderr.strip().endswith("NO-TORCH"), done.stderr[-500:]


def setting_flags_of_every_method() -> set[str]:
    """'--<field>' of every command-line field of every built-in method's settings dataclass, read from the classes."""
    return {"--" + f.name.replace("_", "-") for cls in SETTINGS.values() for f in fields(cls) if f.metadata.get("cli", True)}


def test_train_help_lists_every_setting_without_torch():
    done = subprocess.run([sys.executable, "-c", PROBE, "train", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.stderr.strip().endswith("NO-TORCH"), done.stderr[-500:]
    flags = setting_flags_of_every_method()
    assert {"--alpha", "--penalty", "--estimator", "--beta-w", "--preferences", "--mapping", "--inner"} <= flags
    assert flags <= set(re.findall(r"--[\w-]+", done.stdout)), flags - set(re.findall(r"--[\w-]+", done.stdout))
    assert "MISSING" not in done.stdout and "[ric: default 0.05,0.95]" in " ".join(done.stdout.split())


def torch_imported(script: str | Path, *argv: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, bool]:
    """Run a console script under `python -X importtime`; whether torch was among the modules it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(script), *argv], capture_output=True, text=True,
                          env=env, timeout=120)
    return done, bool(re.search(r"\|\s+torch(\.|$)", done.stderr, re.MULTILINE))


# The installed `mva train --help` is checked by tests/test_packaging.py, which installs the package for real.

