"""Atomic directory writes, and what `--force` may replace.

Everything MVA Explorer writes as a directory (exports, value vectors, preference-data splits) is built in
a hidden temp dir beside the target and renamed into place, so a half-written directory never appears at
the target. Each carries a marker file, `.mva-export`, naming what it is (`kind`): `--force` replaces only a
directory whose marker names the kind being written (an export replaces an export, never a value vector),
or an empty one; never a directory that is not ours, anything inside a workspace's `vectors/` (unless a value
vector is being retrained there), the current directory or one of its parents, `/`, the home directory, a
workspace or a directory holding one, and never follows a symlink given as the target. Value vectors written
before the marker existed are recognised by their `mva_vector.json`, and only as value vectors. The old
directory is kept until the new one is complete and removed only then.

A single file (a CSV) is written the same way (`atomic_file`): a temp file beside it, renamed into place; an
existing file is replaced only with `force`, only if it is a table we wrote, never a workspace's own file.

This module imports nothing of mva_core but `errors` and `config`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .config import META_FILE  # a value vector written before the marker existed holds only this
from .errors import MVAError

MARKER = ".mva-export"
WORKSPACE_FILES = ("workspace.json", "mva.sqlite")
VECTORS_DIR = "vectors"  # a workspace's value vectors: only retraining (kind "value_vector") replaces them
EXPORT = "export"
VALUE_VECTOR = "value_vector"
PREFERENCE_DATA = "preference_data"
CSV_HEADER = "id,method,"  # the first line of every candidate table we write (results --csv, export csv)


class ExportError(MVAError, ValueError):
    """The export target is unusable, or the written export does not reproduce the composition."""


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable read sets it; done once at import, before any worker thread writes
    os.umask(mask)
    return mask


UMASK = _read_umask()


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def workspace_of(path: Path) -> Path | None:
    """The workspace `path` (resolved) lies in: the nearest of it and its parents holding workspace.json."""
    return next((p for p in [path, *path.parents] if (p / WORKSPACE_FILES[0]).is_file()), None)


def marker_kind(directory: Path) -> str | None:
    """What our marker in `directory` says it holds ("export", "value_vector", ...); None without one.
    A value vector from before the marker (its mva_vector.json alone) reads as "value_vector"."""
    marker = directory / MARKER
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
        except (ValueError, UnicodeDecodeError, AttributeError):
            return "unreadable"
        return kind if isinstance(kind, str) else "unknown"
    return VALUE_VECTOR if (directory / META_FILE).is_file() else None


def check_replaceable(out: str | Path, kind: str = EXPORT) -> Path:
    """The resolved target `out` if `--force` may replace what is there with a new `kind` directory; raises
    ExportError naming why not.

    A missing target, an empty directory or a directory whose marker names `kind` may be replaced. Refused: a
    symlink (its target would be emptied), a plain file, `/`, the home directory, the current directory or one
    of its parents, anything inside a workspace's vectors/ unless `kind` is a value vector, a workspace or a
    directory with one inside, any directory without the marker, and one whose marker names another kind.
    """
    given = Path(out)
    if given.is_symlink():
        raise ExportError(f"{given} is a symlink; --force never replaces a link's target; remove the link or "
                          "choose another --out")
    target = given.resolve()
    ws = workspace_of(target.parent)
    if ws is not None and kind != VALUE_VECTOR and _is_within(target, ws / VECTORS_DIR):
        raise ExportError(f"{target} is inside the value vectors of the workspace {ws}; nothing but training "
                          f"writes there; choose a new directory for --out, e.g. {ws / 'exports' / target.name}")
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
    found = marker_kind(target)
    if found is None:
        raise ExportError(f"{target} is not an MVA Explorer export (no {MARKER} marker); --force replaces only "
                          "our own exports; remove it yourself or choose another --out")
    held = next((p.parent for name in WORKSPACE_FILES for p in target.rglob(name)), None)
    if held is not None:
        raise ExportError(f"{target} holds the workspace {held}; refusing to replace it; choose another --out")
    if found != kind:
        raise ExportError(f"{target} holds a {found.replace('_', ' ')} written by MVA Explorer, not {_article(kind)} "
                          f"{kind.replace('_', ' ')}; --force replaces only the same kind; choose another --out")
    return target


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def check_target(out: str | Path, force: bool, kind: str = EXPORT) -> Path:
    """The resolved `out` if a new `kind` directory may be written there (checked before any long work starts)."""
    if str(out).strip() == "":
        raise ExportError("--out is empty; name a new directory for the output, e.g. --out exports/candidate-4")
    target = Path(out).resolve()
    if target.exists() and not force:
        raise ExportError(f"{target} already exists; choose another --out or pass --force to replace it")
    return check_replaceable(out, kind)


@contextlib.contextmanager
def atomic_dir(out: str | Path, force: bool = False, kind: str = "export") -> Iterator[Path]:
    """Yield a temp dir; on success it replaces `out` in one rename, with the marker and the user's umask.

    An existing `out` is refused unless `force`, and then replaced only if `check_replaceable` allows it.
    `kind` is written into the marker ("export", "value_vector", "preference_data").
    """
    target = check_target(out, force, kind)
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


def check_file_target(out: str | Path, force: bool, flag: str = "--csv") -> Path:
    """The resolved `out` if a table may be written there as one file; raises ExportError naming why not.

    Refused: an empty name, a directory, a missing parent directory, a symlink, and an existing file unless
    `force`; with `force`, a file that is not a table we wrote (its first line is not our header) or that lies in
    a workspace outside its exports/ (workspace.json, mva.sqlite, vectors, prompts are never replaced).
    """
    if str(out).strip() == "":
        raise ExportError(f"{flag} is empty; name a new file, e.g. {flag} results.csv (or {flag} - for stdout)")
    given = Path(out)
    target = given.resolve()
    if target.is_dir():
        raise ExportError(f"{flag} {out}: {target} is a directory; name a file in it, e.g. {flag} "
                          f"{given / 'results.csv'}")
    if not target.parent.is_dir():
        raise ExportError(f"{flag} {out}: the directory {target.parent} does not exist; create it first or name "
                          "a file in an existing directory")
    if not given.exists() and not given.is_symlink():
        return target
    if not force:
        raise ExportError(f"{target} already exists; choose another {flag} or pass --force to replace it")
    if given.is_symlink():
        raise ExportError(f"{given} is a symlink; --force never replaces a link's target; remove the link or "
                          f"choose another {flag}")
    ws = workspace_of(target.parent)
    if ws is not None and not _is_within(target, ws / "exports"):
        raise ExportError(f"{target} is a file of the workspace {ws}; --force never replaces a workspace's own "
                          f"files; write the table elsewhere, e.g. {flag} {ws / 'exports' / 'results.csv'}")
    try:
        with open(target, encoding="utf-8") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError):
        first = ""
    if not first.startswith(CSV_HEADER):
        raise ExportError(f"{target} is not a candidate table written by MVA Explorer (its first line is not "
                          f"'{CSV_HEADER}…'); --force replaces only our own tables; choose another {flag}")
    return target


@contextlib.contextmanager
def atomic_file(out: str | Path, force: bool = False, flag: str = "--csv") -> Iterator[Path]:
    """Yield a temp file path beside `out`; on success it replaces `out` in one rename (mode from the umask).
    Nothing appears at `out` if the body raises."""
    target = check_file_target(out, force, flag)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~UMASK)  # mkstemp makes 0600; the table gets what the user's umask gives a new file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
