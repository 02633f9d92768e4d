"""Gradient interference (MVA Eq.10) computed once per vector set: an on-disk cache keyed by what the result depends
on — the base model's fingerprint, each value vector's content hash, the preference pairs' content and the
settings — so that reopening Diagnostics (another session, a restart) does not pay the gradients again (105 s on the
2-value demo, 2 CPU cores).

The cache lives beside the other per-machine caches ($MVA_INTERFERENCE_CACHE, else
~/.cache/mva_explorer/interference), never inside a workspace or the shipped demos: one JSON file per key, written
to a temp file and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .config import DPO_BETA
from .diagnostics import DiagnosticsError, Interference, PairRecord, Progress, interference
from .models import BaseModel
from .vectors import ValueVector

CACHE_VERSION = 1  # bump when `interference` changes what it computes


def interference_cache_dir() -> Path:
    """$MVA_INTERFERENCE_CACHE, else ~/.cache/mva_explorer/interference (one per machine, outside every workspace)."""
    env = os.environ.get("MVA_INTERFERENCE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mva_explorer" / "interference"


def interference_key(base_fingerprint: str, vectors: Sequence[ValueVector], pairs: Mapping[str, Sequence[PairRecord]],
                     weights: Sequence[float] | None, n_pairs: int, beta: float = DPO_BETA, max_length: int = 256,
                     seed: int = 0, system_prompt: str | None = None) -> str:
    """sha256 of everything `interference` reads: the base, the vectors by content hash (in order), each value's
    pairs by content, the point (`weights`, None = each at its own model) and the settings."""
    if any(not v.hash for v in vectors):
        raise DiagnosticsError(f"value vector(s) {[v.value for v in vectors if not v.hash]} have no content hash, so "
                               "they cannot key the interference cache; load them from disk (load_value_vector)")
    pair_hashes = {v.value: hashlib.sha256(json.dumps([dict(p) for p in pairs.get(v.value, [])], sort_keys=True)
                                           .encode()).hexdigest() for v in vectors}
    doc = {"version": CACHE_VERSION, "base": base_fingerprint, "vectors": [[v.value, v.hash] for v in vectors],
           "pairs": pair_hashes, "weights": None if weights is None else [float(w) for w in weights],
           "n_pairs": int(n_pairs), "beta": float(beta), "max_length": int(max_length), "seed": int(seed),
           "system_prompt": system_prompt}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _to_json(res: Interference) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(res).items()}


def _from_json(doc: Mapping[str, Any]) -> Interference:
    arrays = {k: np.asarray(doc[k], dtype=float) for k in ("dot", "cosine", "losses", "norms")}
    return Interference(values=list(doc["values"]), n_pairs=[int(n) for n in doc["n_pairs"]],
                        n_parameters=int(doc["n_parameters"]), at=str(doc["at"]), **arrays)


def load_cached_interference(key: str, cache_dir: Path | None = None) -> Interference | None:
    """The stored result under `key`, or None (never computed, or a file from another version / damaged)."""
    path = (cache_dir or interference_cache_dir()) / f"{key}.json"
    try:
        return _from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_interference(base: BaseModel, vectors: Sequence[ValueVector], pairs: Mapping[str, Sequence[PairRecord]], *,
                        weights: Sequence[float] | None = None, n_pairs: int = 4, seed: int = 0,
                        system_prompt: str | None = None, progress: Progress | None = None,
                        cache_dir: Path | None = None) -> tuple[Interference, bool]:
    """`diagnostics.interference` (MVA Eq.10), answered from the cache when this vector set, these pairs and these
    settings were computed before. Returns (result, whether it came from the cache). A cache that cannot be
    written (read-only home) costs only the reuse: the result is returned all the same."""
    key = interference_key(base.fingerprint, vectors, pairs, weights, n_pairs, seed=seed, system_prompt=system_prompt)
    folder = cache_dir or interference_cache_dir()
    hit = load_cached_interference(key, folder)
    if hit is not None:
        return hit, True
    res = interference(base, vectors, pairs, weights=weights, n_pairs=n_pairs, seed=seed,
                       system_prompt=system_prompt, progress=progress)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as fh:
            json.dump(_to_json(res), fh)
        os.replace(fh.name, folder / f"{key}.json")
    except OSError:
        pass  # not cached: the next visit computes it again
    return res, False
