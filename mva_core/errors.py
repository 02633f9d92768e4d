"""User-facing errors: one base class, and the translation of expected system failures into it.

Every mistake a user can make (bad input, a damaged file, a full disk) raises an `MVAError` whose message
says what was wrong and how to fix it. The CLI prints those as one line and exits 2; the app shows them
with `st.error`. Anything else is a bug in our code and keeps its traceback.

This module imports nothing of mva_core: every layer may raise from it.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path


class MVAError(Exception):
    """Base of every error a user can cause and fix; its message names the bad thing and the fix."""


class TrainingError(MVAError, RuntimeError):
    """Training could not run or produced an unusable vector (diverged, wrong base); nothing was written."""


class StoreError(MVAError):
    """The results store (mva.sqlite) is damaged, not SQLite, or cannot be written."""


class ReadOnlyError(MVAError):
    """Something must be written where this process may not write."""


class DiskFullError(MVAError):
    """The disk filled up while writing; what was being written is not kept half-done."""


class ResourceLimitError(MVAError):
    """The work asked for is too large for this machine (memory) or beyond a limit a user must confirm."""


def as_user_error(exc: BaseException, where: str | Path | None = None) -> MVAError | None:
    """The user-facing error an expected system failure means, or None when `exc` is not one (a bug).

    Recognised: a damaged or non-SQLite store, a read-only file system or missing permission, a full disk,
    running out of memory. `where` names the file or directory being used, for the message.
    """
    if isinstance(exc, MVAError):
        return exc
    where = where if where is not None else getattr(exc, "filename", None)
    place = f" ({where})" if where is not None else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, sqlite3.OperationalError) and "full" in text.lower():
        return DiskFullError(f"the disk is full{place}: {text}; free some space and run again (finished work is kept)")
    if isinstance(exc, sqlite3.OperationalError) and "readonly" in text.lower().replace("-", "").replace(" ", ""):
        return ReadOnlyError(f"cannot write{place}: {text}; the workspace is read-only; copy it somewhere writable "
                             "to evaluate or train (browsing, comparing and exporting elsewhere still work)")
    if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text.lower():
        return StoreError(f"cannot open the results store{place}: {text}; it must be a readable SQLite file (not a "
                          "directory) in a readable directory; fix its permissions or move it aside")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return StoreError(f"the results store{place} is damaged or not an SQLite file ({text}); move it aside "
                          "(a new empty store is made on the next evaluation) or restore it from a copy")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError(f"the disk is full{place}: {text}; free some space and run again (nothing half-written "
                             "is kept)")
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyError(f"cannot write{place}: {text}; choose a writable location or fix its permissions")
    if isinstance(exc, MemoryError):
        return ResourceLimitError(f"out of memory{place}; use a smaller grid, fewer prompts or a smaller --chunk")
    if type(exc).__name__ == "SafetensorError" and "No space left" in text:
        return DiskFullError(f"the disk is full{place}: {text}; free some space and run again (nothing "
                             "half-written is kept)")
    return None
