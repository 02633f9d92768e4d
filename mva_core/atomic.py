"""Atomic directory writes, and what `--force` may replace.

Everything MVA Explorer writes as a directory (exports, value vectors, preference-data splits) is built in
a hidden temp dir beside the target and renamed into place, so a half-written directory never appears at
the target. Each carries a marker file, `.mva-export`: `--force` replaces only a directory that holds it
(or an empty one), never a directory that is not ours, the current directory or one of its parents, `/`,
the home directory, a workspace or a directory holding one, and never follows a symlink given as the
target. Value vectors written before the marker existed are recognised by their `mva_vector.json`. The old
directory is kept until the new one is complete and removed only then.

This module imports nothing of mva_core above `errors`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import MVAError

MARKER = ".mva-export"
OURS = (MARKER, "mva_vector.json")  # a directory holding one of these was written by us
WORKSPACE_FILES = ("workspace.json", "mva.sqlite")


class ExportError(MVAError, ValueError):
    """The export target is unusable, or the written export does not reproduce the composition."""


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable read sets it; done once at import, before any worker thread writes
    os.umask(mask)
    return mask


UMASK = _read_umask()


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_replaceable(out: str | Path) -> Path:
    """The resolved target `out` if `--force` may replace what is there; raises ExportError naming why not.

    A missing target, an empty directory or a directory holding our marker may be replaced. Refused: a symlink
    (its target would be emptied), a plain file, `/`, the home directory, the current directory or one of its
    parents, a workspace or a directory with one inside, and any directory without the marker.
    """
    given = Path(out)
    if given.is_symlink():
        raise ExportError(f"{given} is a symlink; --force never replaces a link's target; remove the link or "
                          "choose another --out")
    target = given.resolve()
    if not target.exists():
        return target
    danger = [Path("/"), Path.home().resolve()]
    if target in danger:
        raise ExportError(f"{target} is {'/' if target == Path('/') else 'the home directory'}; refusing to replace "
                          "it; choose a new directory for --out")
    if _is_within(Path.cwd().resolve(), target):
        raise ExportError(f"{target} is the current directory or one of its parents; refusing to replace it; "
                          "choose a new directory for --out")
    if not target.is_dir():
        raise ExportError(f"{target} is a file, not an export; --force replaces only MVA Explorer's own exports; "
                          "remove it yourself or choose another --out")
    if not any(target.iterdir()):
        return target
    if not any((target / name).is_file() for name in OURS):
        raise ExportError(f"{target} is not an MVA Explorer export (no {MARKER} marker); --force replaces only "
                          "our own exports; remove it yourself or choose another --out")
    held = next((p.parent for name in WORKSPACE_FILES for p in target.rglob(name)), None)
    if held is not None:
        raise ExportError(f"{target} holds the workspace {held}; refusing to replace it; choose another --out")
    return target


def check_target(out: str | Path, force: bool) -> Path:
    """The resolved `out` if a new directory may be written there (checked before any long work starts)."""
    if str(out).strip() == "":
        raise ExportError("--out is empty; name a new directory for the output, e.g. --out exports/candidate-4")
    target = Path(out).resolve()
    if target.exists() and not force:
        raise ExportError(f"{target} already exists; choose another --out or pass --force to replace it")
    return check_replaceable(out)


@contextlib.contextmanager
def atomic_dir(out: str | Path, force: bool = False, kind: str = "export") -> Iterator[Path]:
    """Yield a temp dir; on success it replaces `out` in one rename, with the marker and the user's umask.

    An existing `out` is refused unless `force`, and then replaced only if `check_replaceable` allows it.
    `kind` is written into the marker ("export", "value_vector", "preference_data").
    """
    target = check_target(out, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"written_by": "mva-explorer", "kind": kind}) + "\n")
        tmp.chmod(0o777 & ~UMASK)  # mkdtemp makes 0700; the export gets what the user's umask gives a new dir
        for f in tmp.rglob("*"):  # safetensors writes its files 0600: every file gets what the umask gives one
            if f.is_file() and not f.is_symlink():
                f.chmod((0o666 | (f.stat().st_mode & 0o111)) & ~UMASK)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
