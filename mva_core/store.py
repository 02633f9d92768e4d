"""SQLite results store of a workspace (`mva.sqlite`): runs, candidates, responses, per-prompt scores.

A candidate is identified by a content key over everything that determines its responses: base
fingerprint, the value vectors' hashes (in order), the weights, the prompt set and the decoding
config. Scores are stored per (candidate, prompt, scorer), so re-scoring is a cache hit and adding a
scorer later scores only what is missing. WAL mode + one transaction per write: a killed process
leaves either a whole candidate or none, and two writers on one workspace do not corrupt it.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, method TEXT, config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running', started REAL NOT NULL, finished REAL, log TEXT
);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, method TEXT NOT NULL, source TEXT NOT NULL,
    value_names TEXT NOT NULL, weights TEXT NOT NULL, vector_hashes TEXT NOT NULL,
    base_fingerprint TEXT NOT NULL, prompts_hash TEXT NOT NULL, decoding TEXT NOT NULL,
    run_id INTEGER REFERENCES runs(id), created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id), prompt_idx INTEGER NOT NULL,
    prompt TEXT NOT NULL, response TEXT NOT NULL, PRIMARY KEY (candidate_id, prompt_idx)
);
CREATE TABLE IF NOT EXISTS scores (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id), prompt_idx INTEGER NOT NULL,
    scorer TEXT NOT NULL, value REAL, finite INTEGER NOT NULL,
    PRIMARY KEY (candidate_id, prompt_idx, scorer)
);
CREATE INDEX IF NOT EXISTS candidates_method ON candidates(method);
"""


def prompts_hash(prompts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()[:16]


def candidate_key(base_fingerprint: str, vector_hashes: Sequence[str], weights: Sequence[float],
                  prompts_hash_: str, decoding_fingerprint: str) -> str:
    """Content key of a candidate. Weights are rounded to 1e-9 so 0.1+0.2 and 0.3 are one candidate."""
    blob = json.dumps([base_fingerprint, list(vector_hashes), [round(float(w), 9) for w in weights],
                       prompts_hash_, decoding_fingerprint])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CandidateSpec:
    """Everything that identifies a candidate before it is generated."""

    method: str
    source: str  # "sweep" | "live" | "base" | ...
    value_names: tuple[str, ...]
    weights: tuple[float, ...]
    vector_hashes: tuple[str, ...]
    base_fingerprint: str
    prompts_hash: str
    decoding: str  # DecodingConfig fingerprint
    # A conditioned policy's candidate (MO-ODPO, MI-EPO): the preference p its prompt carried. The prompt is in
    # the decoding config (its system message), so p is already part of the key; stored to plot and score by p.
    preference: tuple[float, ...] | None = None

    @property
    def key(self) -> str:
        return candidate_key(self.base_fingerprint, self.vector_hashes, self.weights, self.prompts_hash, self.decoding)


class Store:
    """One SQLite file. Short-lived connections per call so threads (Streamlit sessions) never share one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(SCHEMA)
            columns = {row[1] for row in con.execute("PRAGMA table_info(candidates)")}
            if "preference" not in columns:  # stores written before conditioned policies existed
                try:
                    con.execute("ALTER TABLE candidates ADD COLUMN preference TEXT")
                except sqlite3.OperationalError as exc:  # another process added it just now
                    if "duplicate column" not in str(exc):
                        raise

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60.0)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA foreign_keys=ON")
        return con

    # ---- runs ----
    def start_run(self, kind: str, config: dict[str, Any], method: str | None = None) -> int:
        with self._connect() as con:
            cur = con.execute("INSERT INTO runs(kind, method, config, started) VALUES (?,?,?,?)",
                              (kind, method, json.dumps(config, sort_keys=True), time.time()))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str = "done", log: dict[str, Any] | None = None) -> None:
        with self._connect() as con:
            con.execute("UPDATE runs SET status=?, finished=?, log=? WHERE id=?",
                        (status, time.time(), json.dumps(log) if log is not None else None, run_id))

    def runs(self) -> pd.DataFrame:
        with self._connect() as con:
            return pd.read_sql_query("SELECT * FROM runs ORDER BY id", con)

    def version(self) -> int:
        """Changes whenever a candidate or a score is added: a cheap cache key for derived tables."""
        with self._connect() as con:
            a, b = con.execute("SELECT (SELECT COUNT(*) FROM candidates), (SELECT COUNT(*) FROM scores)").fetchone()
        return int(a) * 1_000_003 + int(b)

    # ---- candidates ----
    def find(self, keys: Sequence[str]) -> dict[str, int]:
        """key -> candidate id for the keys already stored."""
        out: dict[str, int] = {}
        with self._connect() as con:
            for i in range(0, len(keys), 500):
                part = list(keys[i:i + 500])
                q = f"SELECT key, id FROM candidates WHERE key IN ({','.join('?' * len(part))})"
                out.update({k: int(v) for k, v in con.execute(q, part)})
        return out

    def add_candidate(self, spec: CandidateSpec, prompts: Sequence[str], responses: Sequence[str],
                      run_id: int | None = None) -> int:
        """Insert a candidate with its responses in one transaction; an existing key returns its id."""
        assert len(prompts) == len(responses), "one response per prompt"
        with self._connect() as con:
            # INSERT OR IGNORE, not SELECT-then-INSERT: two processes adding the same candidate at once (two
            # sweeps on one workspace) must not both pass the check and fail on the UNIQUE key.
            cur = con.execute(
                "INSERT OR IGNORE INTO candidates(key, method, source, value_names, weights, vector_hashes, base_fingerprint,"
                " prompts_hash, decoding, run_id, created, preference) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (spec.key, spec.method, spec.source, json.dumps(list(spec.value_names)),
                 json.dumps([float(w) for w in spec.weights]), json.dumps(list(spec.vector_hashes)),
                 spec.base_fingerprint, spec.prompts_hash, spec.decoding, run_id, time.time(),
                 None if spec.preference is None else json.dumps([float(x) for x in spec.preference])),
            )
            if cur.rowcount == 0:  # already stored (by us earlier, or by another process just now)
                return int(con.execute("SELECT id FROM candidates WHERE key=?", (spec.key,)).fetchone()[0])
            cid = int(cur.lastrowid)
            con.executemany("INSERT INTO responses(candidate_id, prompt_idx, prompt, response) VALUES (?,?,?,?)",
                            [(cid, j, p, r) for j, (p, r) in enumerate(zip(prompts, responses))])
            return cid

    def scored(self, candidate_ids: Sequence[int], scorer: str) -> set[int]:
        """Which of these candidates already have every prompt scored by `scorer`."""
        if not candidate_ids:
            return set()
        with self._connect() as con:
            q = (f"SELECT r.candidate_id FROM responses r LEFT JOIN scores s ON s.candidate_id=r.candidate_id"
                 f" AND s.prompt_idx=r.prompt_idx AND s.scorer=? WHERE r.candidate_id IN ({','.join('?' * len(candidate_ids))})"
                 f" GROUP BY r.candidate_id HAVING COUNT(s.scorer) = COUNT(*)")
            return {int(r[0]) for r in con.execute(q, [scorer, *candidate_ids])}

    def add_scores(self, candidate_id: int, scorer: str, values: Sequence[float]) -> None:
        """Per-prompt raw scores of one candidate (see `add_scores_batch`)."""
        self.add_scores_batch(scorer, {candidate_id: values})

    def add_scores_batch(self, scorer: str, per_candidate: Mapping[int, Sequence[float]]) -> None:
        """Per-prompt raw scores of many candidates in one transaction. Non-finite values are kept
        (NaN as NULL) and flagged finite=0."""
        rows = [(cid, j, scorer, None if math.isnan(float(v)) else float(v), int(math.isfinite(float(v))))
                for cid, values in per_candidate.items() for j, v in enumerate(values)]
        with self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO scores(candidate_id, prompt_idx, scorer, value, finite)"
                            " VALUES (?,?,?,?,?)", rows)

    def responses(self, candidate_ids: Sequence[int]) -> pd.DataFrame:
        """Long table: candidate_id, prompt_idx, prompt, response, one column per scorer (raw)."""
        if not candidate_ids:
            return pd.DataFrame(columns=["candidate_id", "prompt_idx", "prompt", "response"])
        marks = ",".join("?" * len(candidate_ids))
        with self._connect() as con:
            resp = pd.read_sql_query(f"SELECT * FROM responses WHERE candidate_id IN ({marks})", con,
                                     params=list(candidate_ids))
            sc = pd.read_sql_query(f"SELECT candidate_id, prompt_idx, scorer, value, finite FROM scores"
                                   f" WHERE candidate_id IN ({marks})", con, params=list(candidate_ids))
        if len(sc):
            wide = sc.pivot_table(index=["candidate_id", "prompt_idx"], columns="scorer", values="value",
                                  aggfunc="first", dropna=False).reset_index()
            resp = resp.merge(wide, on=["candidate_id", "prompt_idx"], how="left")
        return resp.sort_values(["candidate_id", "prompt_idx"]).reset_index(drop=True)

    def candidates(self, method: str | None = None) -> pd.DataFrame:
        """One row per candidate: id, method, source, weights (list), w_<value>, and per scorer the mean raw
        score over prompts (`s_<scorer>`) plus `n_nonfinite` (prompts whose score is NaN/inf; their mean is NaN)."""
        with self._connect() as con:
            q = "SELECT * FROM candidates" + (" WHERE method=?" if method else "") + " ORDER BY id"
            cand = pd.read_sql_query(q, con, params=[method] if method else None)
            agg = pd.read_sql_query(
                "SELECT candidate_id, scorer, AVG(value) AS mean, SUM(1 - finite) AS bad, COUNT(*) AS n"
                " FROM scores GROUP BY candidate_id, scorer", con)
        if cand.empty:
            return cand
        cand["weights"] = cand["weights"].map(json.loads)
        cand["preference"] = cand["preference"].map(lambda p: json.loads(p) if isinstance(p, str) else None)
        cand["value_names"] = cand["value_names"].map(json.loads)
        for names in cand["value_names"].drop_duplicates():
            mask = cand["value_names"].map(lambda v, names=names: v == names)
            for i, name in enumerate(names):
                cand.loc[mask, f"w_{name}"] = cand.loc[mask, "weights"].map(lambda w, i=i: w[i] if i < len(w) else np.nan)
        cand["n_nonfinite"] = 0
        if len(agg):
            agg.loc[agg["bad"] > 0, "mean"] = np.nan  # a non-finite prompt score makes the mean non-finite
            wide = agg.pivot(index="candidate_id", columns="scorer", values="mean").add_prefix("s_")
            bad = agg.groupby("candidate_id")["bad"].sum()
            cand = cand.merge(wide, left_on="id", right_index=True, how="left")
            cand["n_nonfinite"] = cand["id"].map(bad).fillna(0).astype(int)
        return cand
