"""Content fingerprints of the model files behind a scorer or a judge, and the content keys stored results carry.

A stored score or judge verdict is keyed by what computed it, not by the spec string that named it: replace the
weights at `hf:DIR` and the old scores no longer answer for it (issue 25 item 3). The key is the spec, `#`, and a
fingerprint of the model's files (`content_key`). The fingerprint is the sha256 over the names and bytes of the
files `from_pretrained` reads (weights, configs, tokenizer files; a `.gguf` is its own file); a hub id is read from
its local snapshot (never downloaded here). Each file's sha256 is kept in a small JSON cache keyed by the file's
path, size, mtime and inode (`$MVA_FINGERPRINT_CACHE`, default `~/.cache/mva_explorer/fingerprints.json`), so a
multi-GB reward model is hashed once per change of its files, not once per run.

Standard library only: scorers import this and stay cheap to import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path

# What from_pretrained reads from a model dir (weights, index and configs, tokenizer files, chat templates).
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".jinja", ".tiktoken", ".gguf")
KEY_SEP = "#"
_FP_RE = re.compile(r"[0-9a-f]{16}")
_LOCK = threading.Lock()
_MEMO: dict[str, dict] = {}  # path -> {"size", "mtime_ns", "ino", "sha256"}: this process's view of the cache file


def fingerprint_cache_path() -> Path:
    """The JSON file of per-file hashes: $MVA_FINGERPRINT_CACHE, else ~/.cache/mva_explorer/fingerprints.json."""
    env = os.environ.get("MVA_FINGERPRINT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mva_explorer" / "fingerprints.json"


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, unreadable or damaged: hash again (it is only a cache)
        return {}
    files = doc.get("files") if isinstance(doc, dict) else None
    return files if isinstance(files, dict) else {}


def _write_cache(path: Path, files: dict[str, dict]) -> None:
    """Atomically (temp file + rename); entries of files that are gone are dropped. Failing to write is harmless."""
    keep = {p: e for p, e in files.items() if os.path.exists(p)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".fingerprints-", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": 1, "files": keep}, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # read-only home: the hashes stay in this process's memo


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read once per (path, size, mtime_ns, inode): from this process's memo, else the
    cache file, else hashed and written to both."""
    real = str(Path(path).resolve())  # a hub snapshot's symlink: the blob it points to
    st = os.stat(real)
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
    with _LOCK:
        entry = _MEMO.get(real)
        if entry is None or any(entry.get(k) != v for k, v in stamp.items()):
            _MEMO.update(_read_cache(fingerprint_cache_path()))  # another process may have hashed it
            entry = _MEMO.get(real)
        if entry is not None and all(entry.get(k) == v for k, v in stamp.items()) and "sha256" in entry:
            return str(entry["sha256"])
    h = hashlib.sha256()
    with open(real, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _LOCK:
        _MEMO[real] = {**stamp, "sha256": digest}
        cache = fingerprint_cache_path()
        files = _read_cache(cache)
        files[real] = _MEMO[real]
        _write_cache(cache, files)
    return digest


def local_model_path(path_or_id: str) -> Path | None:
    """The local files of a model: a directory or a file as given, else a hub id's snapshot in the local hub cache
    (no download); None when neither is here."""
    p = Path(path_or_id).expanduser()
    if p.exists():
        return p
    if p.is_absolute() or path_or_id.count("/") > 1:
        return None  # not a hub id (name or org/name)
    try:
        from huggingface_hub import snapshot_download  # only for hub ids

        return Path(snapshot_download(repo_id=path_or_id, local_files_only=True))
    except Exception:  # not in the local cache, or not a valid repo id: nothing here to fingerprint
        return None


def model_files(root: Path) -> list[Path]:
    """The files of a model: a file itself, or a directory's (non-hidden, top-level) files that loading reads."""
    if root.is_file():
        return [root]
    return sorted(f for f in root.iterdir()
                  if f.is_file() and not f.name.startswith(".") and f.name.endswith(MODEL_FILE_SUFFIXES))


def model_fingerprint(path_or_id: str) -> str | None:
    """16 hex digits over the names and sha256s of a model's files (`model_files`); None when the model is not on
    this machine (a hub id never downloaded, a deleted directory)."""
    root = local_model_path(path_or_id)
    if root is None:
        return None
    files = model_files(root)
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + file_sha256(f).encode() + b"\0")
    return h.hexdigest()[:16]


def content_key(spec: str, fingerprint: str) -> str:
    """The key stored results carry: the spec and the fingerprint of what it named when they were computed."""
    return f"{spec}{KEY_SEP}{fingerprint}"


def split_key(key: str) -> tuple[str, str | None]:
    """(spec, fingerprint) of a stored key; (key, None) for a key without one (a packaged scorer, an older store)."""
    spec, sep, fp = key.rpartition(KEY_SEP)
    return (spec, fp) if sep and _FP_RE.fullmatch(fp) else (key, None)
