"""SQLite results store of a workspace (`mva.sqlite`): runs, candidates, responses, per-prompt scores.

A candidate is identified by a content key over everything that determines its responses: base
fingerprint, the value vectors' hashes (in order), the weights, the prompt set and the decoding
config. Scores are stored per (candidate, prompt, scorer), so re-scoring is a cache hit and adding a
scorer later scores only what is missing. The `scorer` of a stored score (and the `judge` of a verdict) is the
content key of what computed it (`scorers.scorer_key`, `judges.judge_key`): a packaged scorer's name, or a reward
model's spec with the fingerprint of its files, `hf:DIR#<fingerprint>`; tables read back name each current key by
its spec, and scores of files since replaced are left out (so a sweep scores them again). A candidate decoded by sampling also has its responses per sample
(`samples`) and their scores (`sample_scores`); then `responses` holds sample 0 of each prompt and `scores` the
mean over the samples, so everything that reads per-prompt rewards works unchanged. WAL mode + one transaction
per write: a killed process leaves either a whole candidate or none, and two writers on one workspace do not
corrupt it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import ReadOnlyError, StoreError, as_user_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, method TEXT, config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running', started REAL NOT NULL, finished REAL, log TEXT, pid INTEGER, host TEXT
);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, method TEXT NOT NULL, source TEXT NOT NULL,
    value_names TEXT NOT NULL, weights TEXT NOT NULL, vector_hashes TEXT NOT NULL,
    base_fingerprint TEXT NOT NULL, prompts_hash TEXT NOT NULL, decoding TEXT NOT NULL,
    run_id INTEGER REFERENCES runs(id), created REAL NOT NULL, preference TEXT
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
# Tables added after the first stores were written; each is created in a store that lacks it, so old stores open
# unchanged: the samples of sampled decoding (issue 16 item 3), a pairwise judge's verdicts (judges.py).
ADDED_TABLES = {
    "samples": """CREATE TABLE IF NOT EXISTS samples (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id), prompt_idx INTEGER NOT NULL,
    sample_idx INTEGER NOT NULL, response TEXT NOT NULL, PRIMARY KEY (candidate_id, prompt_idx, sample_idx)
);""",
    "sample_scores": """CREATE TABLE IF NOT EXISTS sample_scores (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id), prompt_idx INTEGER NOT NULL,
    sample_idx INTEGER NOT NULL, scorer TEXT NOT NULL, value REAL, finite INTEGER NOT NULL,
    PRIMARY KEY (candidate_id, prompt_idx, sample_idx, scorer)
);""",
    "judge_verdicts": """CREATE TABLE IF NOT EXISTS judge_verdicts (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id), base_id INTEGER NOT NULL REFERENCES candidates(id),
    judge TEXT NOT NULL, prompt_idx INTEGER NOT NULL, preference REAL NOT NULL,
    PRIMARY KEY (candidate_id, base_id, judge, prompt_idx)
);""",
}
ADDED_SCHEMA = "\n".join(ADDED_TABLES.values())
TABLES = {"runs", "candidates", "responses", "scores"}
# (stored scorer keys, latest: () -> {key: a number growing with writing}) -> {key that answers now: its spec}
KeyResolver = Callable[[Sequence[str], Callable[[], Mapping[str, int]]], dict[str, str]]


# `source` of the candidates of a sampled evaluation (`sweep.sampled_evaluation`): the same vectors, weights and
# prompts as a greedy candidate, decoded by sampling, several responses per prompt, to measure CRD (MI-EPO). They
# are not points of a front (the table leaves them out: `results.load_table`); CRD reads them as the samples of
# their greedy twin (`metrics.sample_rewards`).
SAMPLED_EVALUATION = "sampled-evaluation"


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


# Columns added after stores were written: (table, column, type). Added on the first write that finds them missing.
ADDED_COLUMNS = [("candidates", "preference", "TEXT"), ("runs", "pid", "INTEGER"), ("runs", "host", "TEXT")]


def _migrated(con: sqlite3.Connection) -> bool:
    return all(column in {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
               for table, column, _ in ADDED_COLUMNS)


def _migrate(con: sqlite3.Connection) -> None:
    for table, column, kind in ADDED_COLUMNS:
        if column not in {row[1] for row in con.execute(f"PRAGMA table_info({table})")}:
            try:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise


@dataclass
class Run:
    """A recorded run in progress (`Store.run`): its id, and the log stored with it when it ends."""

    id: int
    log: dict[str, Any] = field(default_factory=dict)


# Exceptions that mean "stopped because asked" (by name: they live in layers above the store): generate.Cancelled,
# Streamlit's StopException / RerunException when a page stops or reruns its script mid-run.
CANCELLATIONS = frozenset({"Cancelled", "StopException", "RerunException"})


def run_status(status: str, pid: Any, host: Any) -> str:
    """A stored run's status as it is now: 'running' only while its process on this host is alive; a run of
    another host cannot be checked from here and keeps its stored status."""
    if status != "running" or pid is None or (isinstance(pid, float) and math.isnan(pid)) \
            or host != socket.gethostname():
        return status
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists (PermissionError: it does)
    except ProcessLookupError:
        return "stopped"
    except PermissionError:
        pass
    return status


class Store:
    """One SQLite file. Short-lived connections per call so threads (Streamlit sessions) never share one.

    Nothing is written until something is stored: reading a workspace that has no `mva.sqlite` yet sees an empty
    store and creates no file. A store in a directory this process cannot write is opened read-only (browse,
    compare and export work; storing raises `ReadOnlyError`). A damaged or non-SQLite file raises `StoreError`
    naming it. The file may be deleted or replaced while the app runs: every call opens it anew.
    """

    def __init__(self, path: str | Path, read_only: bool = False, current_keys: KeyResolver | None = None):
        self.path = Path(path)
        # which stored scorer keys answer for a scorer spec now (the workspace passes scorers.current_scorer_keys:
        # a reward model's scores count under the fingerprint of its files now); default: every key as written
        self._current_keys = current_keys or (lambda stored, latest: {k: k for k in stored})
        self._forced_read_only = read_only  # e.g. the shipped demo read in place: never written, whatever the OS allows
        self._checked: tuple[int, int] | None = None  # (device, inode) of the file last found with the full schema

    @property
    def read_only(self) -> bool:
        """True when this process may not write the store (opened read-only, or a read-only directory or file)."""
        if self._forced_read_only:
            return True
        if self.path.exists():
            return not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK)
        parent = next((p for p in [self.path.parent, *self.path.parent.parents] if p.exists()), None)
        return parent is None or not os.access(parent, os.W_OK)

    def check_writable(self) -> None:
        """Raise ReadOnlyError, saying what still works, when results cannot be stored here."""
        if self._forced_read_only:
            raise ReadOnlyError(f"{self.path} was opened read-only (a shipped demo read in place); open a workspace "
                                "of your own to store results, e.g. --workspace data/workspace")
        if self.read_only:
            raise ReadOnlyError(f"{self.path} cannot be written (read-only workspace); browsing, comparing and "
                                "exporting work; to evaluate or train, copy the workspace somewhere writable "
                                "(cp -r) and open the copy")

    def check_intact(self) -> None:
        """Raise StoreError, naming the file, when it is damaged or not SQLite: SQLite's own page check, a few ms
        for a store of thousands of candidates, run before work that takes minutes (loading a model)."""
        with self._connect() as con:
            problems = [row[0] for row in con.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise StoreError(f"the results store ({self.path}) is damaged ({problems[0]}); move it aside (a new "
                             "empty store is made on the next evaluation) or restore it from a copy")

    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success and is always closed; sqlite/OS failures become user errors."""
        if write:
            self.check_writable()
        try:
            con = self._open(write)
            try:
                yield con
                con.commit()
            finally:
                con.close()
        except (sqlite3.Error, OSError, MemoryError) as exc:
            user_error = as_user_error(exc, self.path)
            if user_error is None:
                raise
            raise user_error from exc

    def _open(self, write: bool) -> sqlite3.Connection:
        """A connection with the full schema. Only a write upgrades an older file in place; a read of an older
        file sees an upgraded copy in memory (missing tables: empty temporary ones), so reading never writes."""
        if not self.path.exists():
            self._checked = None  # deleted: a file made here next may reuse the old one's inode
        if not self.path.exists() and not write:  # viewing never creates the store: an empty one in memory
            con = sqlite3.connect(":memory:")
            con.executescript(SCHEMA + ADDED_SCHEMA)
            _migrate(con)
            return con
        if self.read_only:  # immutable: no -wal/-shm files are needed or made in a directory we cannot write
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        else:
            if write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=60.0)
            if write:
                con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA foreign_keys=ON")
        stat = self.path.stat()
        file_id = (stat.st_dev, stat.st_ino)
        if self._checked == file_id:  # this very file was found complete before: skip the schema check
            return con
        upgrade_file = write and not self.read_only
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not TABLES <= tables or not _migrated(con):
            if not upgrade_file:  # an empty or old file read without upgrading it: its copy in memory, upgraded
                memory = sqlite3.connect(":memory:")
                con.backup(memory)
                con.close()
                con = memory
            con.executescript(SCHEMA + ADDED_SCHEMA)
            _migrate(con)
            con.commit()
            if not upgrade_file:
                return con
        elif not set(ADDED_TABLES) <= tables:  # an older store: add the (empty) tables it lacks
            missing = "\n".join(ddl for name, ddl in ADDED_TABLES.items() if name not in tables)
            if not upgrade_file:  # not in the file: empty temporary tables of this connection, so reads see none
                con.executescript(missing.replace("CREATE TABLE", "CREATE TEMP TABLE"))
                return con
            con.executescript(missing)
            con.commit()
        self._checked = None if self.read_only else file_id
        return con

    # ---- runs ----
    def start_run(self, kind: str, config: dict[str, Any], method: str | None = None, adopt: bool = False) -> int:
        """A new run (status 'running', with this process's id and host). With `adopt`, a run of the same kind,
        method and config that was stopped, or whose process is gone, is taken over instead (a resumed sweep)."""
        blob = json.dumps(config, sort_keys=True)
        with self._connect(write=True) as con:
            if adopt:
                rows = con.execute("SELECT id, status, pid, host FROM runs WHERE kind=? AND method IS ? AND config=?"
                                   " ORDER BY id DESC", (kind, method, blob)).fetchall()
                for run_id, status, pid, host in rows:
                    if run_status(status, pid, host) == "stopped":
                        con.execute("UPDATE runs SET status='running', pid=?, host=?, finished=NULL WHERE id=?",
                                    (os.getpid(), socket.gethostname(), run_id))
                        return int(run_id)
            cur = con.execute("INSERT INTO runs(kind, method, config, started, pid, host) VALUES (?,?,?,?,?,?)",
                              (kind, method, blob, time.time(), os.getpid(), socket.gethostname()))
            return int(cur.lastrowid)

    @contextlib.contextmanager
    def run(self, kind: str, config: dict[str, Any], method: str | None = None, adopt: bool = False) -> Iterator[Run]:
        """`with store.run("sweep", config, method) as run:` — one recorded run around the work in the block.

        Starts (or, with `adopt`, takes over) the run row; the block fills `run.log`. Leaving the block normally
        marks it "done" with that log; an exception marks it "stopped" with the log, the error and why
        (`"reason"`: "cancelled" for a stop asked for — Cancelled, KeyboardInterrupt, Streamlit stopping the
        script — else "failed") and is re-raised. Every run (sweep, search, training) is recorded this way."""
        run = Run(self.start_run(kind, config, method, adopt=adopt))
        try:
            yield run
        except BaseException as exc:
            asked = type(exc).__name__ in CANCELLATIONS or isinstance(exc, KeyboardInterrupt)
            self.finish_run(run.id, "stopped", {**run.log, "error": repr(exc),
                                                "reason": "cancelled" if asked else "failed"})
            raise
        self.finish_run(run.id, "done", run.log)

    def finish_run(self, run_id: int, status: str = "done", log: dict[str, Any] | None = None) -> None:
        with self._connect(write=True) as con:
            con.execute("UPDATE runs SET status=?, finished=?, log=? WHERE id=?",
                        (status, time.time(), json.dumps(log) if log is not None else None, run_id))

    def runs(self) -> pd.DataFrame:
        """Every run; a 'running' run whose process is gone (killed) shows as 'stopped' (Optuna's stale trial)."""
        with self._connect() as con:
            runs = pd.read_sql_query("SELECT * FROM runs ORDER BY id", con)
        runs["status"] = [run_status(s, p, h) for s, p, h in zip(runs["status"], runs["pid"], runs["host"])]
        return runs

    def version(self) -> int:
        """Changes whenever a candidate or a score is added, or the file is replaced: a cheap cache key for
        derived tables."""
        with self._connect() as con:
            a, b = con.execute("SELECT (SELECT COUNT(*) FROM candidates), (SELECT COUNT(*) FROM scores)").fetchone()
        try:
            inode = self.path.stat().st_ino
        except OSError:  # no store yet
            inode = 0
        return hash((int(a), int(b), inode))

    # ---- candidates ----
    def forget_other_prompt_sets(self, keep: str) -> int:
        """Delete every candidate evaluated on a prompt set other than `keep` (a prompts_hash), with its responses,
        scores and samples, and the sweep/search runs of those prompts; returns how many candidates. For a workspace
        rebuilt on new prompts (the demo build): what no page can show any more is not shipped."""
        other = "SELECT id FROM candidates WHERE prompts_hash != ?"
        with self._connect(write=True) as con:
            n = con.execute(f"SELECT COUNT(*) FROM ({other})", (keep,)).fetchone()[0]
            con.execute(f"DELETE FROM judge_verdicts WHERE candidate_id IN ({other}) OR base_id IN ({other})",
                        (keep, keep))
            for table in ("sample_scores", "samples", "scores", "responses"):
                con.execute(f"DELETE FROM {table} WHERE candidate_id IN ({other})", (keep,))
            con.execute("DELETE FROM candidates WHERE prompts_hash != ?", (keep,))
            stale = [rid for rid, config in con.execute("SELECT id, config FROM runs WHERE kind IN ('sweep', 'search')")
                     if json.loads(config).get("prompts_hash", keep) != keep]
            con.executemany("DELETE FROM runs WHERE id = ?", [(r,) for r in stale])
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as con:
            con.execute("VACUUM")  # give the space back: the file is what ships
        return int(n)

    def forget_candidates(self, candidate_ids: Sequence[int]) -> int:
        """Delete these candidates with their responses, scores, samples and judge verdicts; returns how many were
        stored. For candidates no row can claim honestly any more (a conditioned policy's runs made with a
        conditioning it no longer has, e.g. RiC's old desired rewards: the same vectors and p, other prompts)."""
        ids = [(int(i),) for i in candidate_ids]
        if not ids:
            return 0
        with self._connect(write=True) as con:
            n = sum(con.execute("SELECT COUNT(*) FROM candidates WHERE id = ?", i).fetchone()[0] for i in ids)
            con.executemany("DELETE FROM judge_verdicts WHERE candidate_id = ? OR base_id = ?", [(i, i) for i, in ids])
            for table in ("sample_scores", "samples", "scores", "responses"):
                con.executemany(f"DELETE FROM {table} WHERE candidate_id = ?", ids)
            con.executemany("DELETE FROM candidates WHERE id = ?", ids)
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as con:
            con.execute("VACUUM")  # give the space back: the file is what ships
        return int(n)

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
                      run_id: int | None = None, samples: Sequence[Sequence[str]] | None = None) -> int:
        """Insert a candidate with its responses in one transaction; an existing key returns its id.
        `samples` [prompt][sample]: a sampled candidate's every response (then `responses` is sample 0 of each)."""
        assert len(prompts) == len(responses), "one response per prompt"
        assert samples is None or (len(samples) == len(prompts) and all(len(s) >= 1 for s in samples)), \
            "samples: a non-empty list of responses per prompt"
        with self._connect(write=True) as con:
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
            if samples is not None:
                con.executemany("INSERT INTO samples(candidate_id, prompt_idx, sample_idx, response) VALUES (?,?,?,?)",
                                [(cid, j, k, r) for j, per in enumerate(samples) for k, r in enumerate(per)])
            return cid

    def scored(self, candidate_ids: Sequence[int], scorer: str) -> set[int]:
        """Which of these candidates already have every prompt scored by `scorer` (a key: `scorers.scorer_key`)."""
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
        """Per-prompt raw scores of many candidates in one transaction, under `scorer`'s key
        (`scorers.stored_key`). Non-finite values are kept (NaN as NULL) and flagged finite=0."""
        rows = [(cid, j, scorer, None if math.isnan(float(v)) else float(v), int(math.isfinite(float(v))))
                for cid, values in per_candidate.items() for j, v in enumerate(values)]
        with self._connect(write=True) as con:
            con.executemany("INSERT OR REPLACE INTO scores(candidate_id, prompt_idx, scorer, value, finite)"
                            " VALUES (?,?,?,?,?)", rows)

    def add_sample_scores(self, scorer: str, keys: np.ndarray, values: Sequence[float]) -> None:
        """Per-sample raw scores, `keys` (N, 3) rows of (candidate_id, prompt_idx, sample_idx), and in the same
        transaction each (candidate, prompt)'s mean over its samples as its per-prompt score (a non-finite sample
        makes the mean non-finite: kept, flagged finite=0, as `add_scores_batch` does)."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1, 3)
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        assert len(keys) == len(v), f"{len(keys)} sample keys for {len(v)} scores"
        rows = [(int(c), int(j), int(k), scorer, None if math.isnan(x) else float(x), int(math.isfinite(x)))
                for (c, j, k), x in zip(keys, v)]
        groups: dict[tuple[int, int], list[float]] = {}
        for (c, j, _), x in zip(keys, v):
            groups.setdefault((int(c), int(j)), []).append(float(x))
        with np.errstate(invalid="ignore"):  # inf - inf in a mean stays non-finite, as it should
            means = [(c, j, scorer, float(np.mean(xs))) for (c, j), xs in groups.items()]
        with self._connect(write=True) as con:
            con.executemany("INSERT OR REPLACE INTO sample_scores(candidate_id, prompt_idx, sample_idx, scorer, value,"
                            " finite) VALUES (?,?,?,?,?,?)", rows)
            con.executemany("INSERT OR REPLACE INTO scores(candidate_id, prompt_idx, scorer, value, finite)"
                            " VALUES (?,?,?,?,?)",
                            [(c, j, sc, None if math.isnan(m) else m, int(math.isfinite(m))) for c, j, sc, m in means])

    def add_judge_verdicts(self, judge: str, candidate_id: int, base_id: int, preferences: Sequence[float]) -> None:
        """P(candidate ≻ base) on each prompt (in prompt order) by `judge` (its key, `judges.judge_key`:
        judge:hf:MODEL#<fingerprint>)."""
        rows = [(int(candidate_id), int(base_id), judge, j, float(x)) for j, x in enumerate(preferences)]
        with self._connect(write=True) as con:
            con.executemany("INSERT OR REPLACE INTO judge_verdicts(candidate_id, base_id, judge, prompt_idx, "
                            "preference) VALUES (?,?,?,?,?)", rows)

    def judge_verdicts(self, judge: str, candidate_id: int, base_id: int) -> np.ndarray:
        """(P,) the stored P(candidate ≻ base) per prompt by `judge` (its key), in prompt order; empty when none is
        stored."""
        with self._connect() as con:
            rows = con.execute("SELECT preference FROM judge_verdicts WHERE candidate_id=? AND base_id=? AND judge=? "
                               "ORDER BY prompt_idx", (int(candidate_id), int(base_id), judge)).fetchall()
        return np.array([r[0] for r in rows], dtype=float)

    def _current(self, con: sqlite3.Connection, scores: pd.DataFrame) -> pd.DataFrame:
        """`scores` (a `scorer` column of stored keys) with only the keys that answer for a spec now, each renamed to
        that spec (the `current_keys` given, e.g. `scorers.current_scorer_keys`): what a page or a table reads by the
        workspace's scorer specs."""
        if scores.empty:
            return scores
        current = self._current_keys(
            scores["scorer"].unique().tolist(),
            lambda: dict(con.execute("SELECT scorer, MAX(rowid) FROM scores GROUP BY scorer").fetchall()))
        out = scores[scores["scorer"].isin(list(current))].copy()
        out["scorer"] = out["scorer"].map(current)
        return out

    def samples(self, candidate_ids: Sequence[int]) -> pd.DataFrame:
        """Long table of sampled candidates' responses: candidate_id, prompt_idx, sample_idx, prompt, response, one
        column per scorer (raw score of that sample). Candidates decoded greedily have no rows."""
        cols = ["candidate_id", "prompt_idx", "sample_idx", "prompt", "response"]
        if not candidate_ids:
            return pd.DataFrame(columns=cols)
        marks = ",".join("?" * len(candidate_ids))
        with self._connect() as con:
            out = pd.read_sql_query(
                f"SELECT s.candidate_id, s.prompt_idx, s.sample_idx, r.prompt, s.response FROM samples s JOIN responses r"
                f" ON r.candidate_id=s.candidate_id AND r.prompt_idx=s.prompt_idx WHERE s.candidate_id IN ({marks})",
                con, params=list(candidate_ids))
            sc = self._current(con, pd.read_sql_query(
                f"SELECT candidate_id, prompt_idx, sample_idx, scorer, value FROM sample_scores"
                f" WHERE candidate_id IN ({marks})", con, params=list(candidate_ids)))
        if len(sc):
            wide = sc.pivot_table(index=["candidate_id", "prompt_idx", "sample_idx"], columns="scorer", values="value",
                                  aggfunc="first", dropna=False).reset_index()
            out = out.merge(wide, on=["candidate_id", "prompt_idx", "sample_idx"], how="left")
        return out.sort_values(["candidate_id", "prompt_idx", "sample_idx"]).reset_index(drop=True)

    def responses(self, candidate_ids: Sequence[int]) -> pd.DataFrame:
        """Long table: candidate_id, prompt_idx, prompt, response, one column per scorer (raw)."""
        if not candidate_ids:
            return pd.DataFrame(columns=["candidate_id", "prompt_idx", "prompt", "response"])
        marks = ",".join("?" * len(candidate_ids))
        with self._connect() as con:
            resp = pd.read_sql_query(f"SELECT * FROM responses WHERE candidate_id IN ({marks})", con,
                                     params=list(candidate_ids))
            sc = self._current(con, pd.read_sql_query(
                f"SELECT candidate_id, prompt_idx, scorer, value, finite FROM scores"
                f" WHERE candidate_id IN ({marks})", con, params=list(candidate_ids)))
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
            agg = self._current(con, pd.read_sql_query(
                "SELECT candidate_id, scorer, AVG(value) AS mean, SUM(1 - finite) AS bad, COUNT(*) AS n"
                " FROM scores GROUP BY candidate_id, scorer", con))
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
