"""The candidate table as a type: one row per (compared method, candidate) plus the base model's row(s).

`CandidateTable` owns the layout: per value `w_<value>` (weights), `raw_<value>` (mean reward in scorer
units), `z_<value>` (z-score against the base model, DESIGN "Metrics"), and per row `finite`, `rank`,
`on_front` (non-dominated rank within its method, MVA Eq.20). Code outside this module asks the table for
arrays and rows (`weights()`, `raw()`, `z()`, `front()`, `base()`, `for_method()`), never for column names
it spelled itself; the base model is a row of the table, never a method, and only this module knows its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import pareto
from .scorers import ScoreNormaliser

BASE_METHOD = "base"  # the base model's rows (no vectors): the reference of every z-score, never a method


def weight_column(value: str) -> str:
    """The column of a value's weight w_i (MVA Eq.15); for a conditioned policy the preference p_i it was run with."""
    return f"w_{value}"


def raw_column(value: str) -> str:
    """The column of a value's mean raw reward over the prompts (scorer units)."""
    return f"raw_{value}"


def z_column(value: str) -> str:
    """The column of a value's z-score against the base model's responses on the same prompts."""
    return f"z_{value}"


def is_base(method: str) -> bool:
    """Is this the base model's row name (the model without vectors)?"""
    return method == BASE_METHOD


@dataclass(frozen=True)
class CandidateTable:
    """Candidates with their weights, raw and z-scored rewards, rank and front, for the values `value_names`.

    `frame` is the pandas table pages render and the CLI writes; everything else reads it through this type."""

    frame: pd.DataFrame
    value_names: tuple[str, ...]

    # ---- Construction ----
    @classmethod
    def of(cls, table: "CandidateTable | pd.DataFrame", value_names: Sequence[str] | None = None) -> "CandidateTable":
        """`table` as a CandidateTable (a DataFrame of this layout is wrapped with `value_names`)."""
        if isinstance(table, CandidateTable):
            return table if value_names is None or tuple(value_names) == table.value_names \
                else cls(table.frame, tuple(value_names))
        if value_names is None:
            raise TypeError("a DataFrame needs its value names to be read as a candidate table")
        return cls(table, tuple(value_names))

    @classmethod
    def build(cls, candidates: pd.DataFrame, value_names: Sequence[str], raw: Mapping[str, np.ndarray],
              base_rewards: Mapping[str, np.ndarray]) -> "CandidateTable":
        """The table of `candidates` (one row each, with `method`): per value its raw means `raw[value]` (N,) and
        their z-scores against the base model's per-prompt rewards `base_rewards[value]` (P,) (`ScoreNormaliser`;
        a value with no base rewards yet shows its raw means rather than nothing); then `finite`, and `rank` /
        `on_front` within each method (pymoo non-dominated sorting of z, MVA Eq.20)."""
        cand = candidates.copy()
        for v in value_names:
            r = np.asarray(raw[v], dtype=float)
            cand[raw_column(v)] = r
            if v in base_rewards:
                cand[z_column(v)] = ScoreNormaliser().fit(np.asarray(base_rewards[v], dtype=float)).transform(r)
            else:  # no base model scored yet: show raw values rather than nothing
                cand[z_column(v)] = r
        z = cand[[z_column(v) for v in value_names]].to_numpy(dtype=float)
        cand["finite"] = np.isfinite(z).all(axis=1)
        cand["rank"] = np.nan
        cand["on_front"] = False
        for _, idx in cand.groupby("method").groups.items():
            rank = pareto.non_dominated_rank(z[cand.index.get_indexer(idx)])
            cand.loc[idx, "rank"] = rank
            cand.loc[idx, "on_front"] = rank == 0
        return cls(cand.reset_index(drop=True), tuple(value_names))

    # ---- Layout ----
    def weight_columns(self) -> list[str]:
        return [weight_column(v) for v in self.value_names]

    def raw_columns(self) -> list[str]:
        return [raw_column(v) for v in self.value_names]

    def z_columns(self) -> list[str]:
        return [z_column(v) for v in self.value_names]

    def results_columns(self) -> list[str]:
        """The `results --csv` layout (DESIGN §3): id, method, `w_`, `raw_`, `z_` per value, on_front."""
        return ["id", "method", *self.weight_columns(), *self.raw_columns(), *self.z_columns(), "on_front"]

    # ---- Arrays ----
    def __len__(self) -> int:
        return len(self.frame)

    @property
    def empty(self) -> bool:
        return self.frame.empty

    def ids(self) -> np.ndarray:
        """(N,) candidate ids, in row order."""
        return self.frame["id"].to_numpy() if "id" in self.frame else np.zeros(0, dtype=int)

    def weights(self) -> np.ndarray:
        """(N, V) weights per value (NaN where a row has none)."""
        return self.frame.reindex(columns=self.weight_columns()).to_numpy(dtype=float)

    def raw(self) -> np.ndarray:
        """(N, V) mean raw rewards."""
        return self.frame.reindex(columns=self.raw_columns()).to_numpy(dtype=float)

    def z(self) -> np.ndarray:
        """(N, V) z-scores against the base model."""
        return self.frame.reindex(columns=self.z_columns()).to_numpy(dtype=float)

    def finite(self) -> np.ndarray:
        """(N,) rows whose every z-score is finite (the others are kept, flagged, and off every front)."""
        return np.isfinite(self.z()).all(axis=1)

    def scores(self, row: pd.Series) -> dict[str, dict[str, float]]:
        """One row's rewards per value: {value: {"raw", "z"}}."""
        return {v: {"raw": float(row[raw_column(v)]), "z": float(row[z_column(v)])} for v in self.value_names}

    # ---- Rows ----
    def _rows(self, mask: np.ndarray | pd.Series) -> "CandidateTable":
        return CandidateTable(self.frame[np.asarray(mask, dtype=bool)], self.value_names)

    def _method(self) -> pd.Series:
        return self.frame["method"] if "method" in self.frame else pd.Series([], dtype=object)

    def methods(self, sort: bool = False) -> list[str]:
        """The methods with rows, the base model left out: in order of first row, or sorted by name."""
        names = [m for m in pd.unique(self._method()) if not is_base(m)]
        return sorted(names) if sort else names

    def base(self) -> "CandidateTable":
        """The base model's rows (the last one is the reference of the z-scores)."""
        return self._rows(self._method() == BASE_METHOD)

    def base_id(self) -> int | None:
        """The base model's candidate id every z-score here is taken against (its latest evaluation), or None."""
        ids = self.base().ids()
        return int(ids[-1]) if len(ids) else None

    def without_base(self) -> "CandidateTable":
        return self._rows(self._method() != BASE_METHOD)

    def for_method(self, name: str) -> "CandidateTable":
        """The rows of one method."""
        return self._rows(self._method() == name)

    def for_methods(self, names: Sequence[str], base: bool = True) -> "CandidateTable":
        """The rows of `names`, with the base model's rows unless `base` is False (rank and front stay per method)."""
        return self._rows(self._method().isin([*names, *([BASE_METHOD] if base else [])]))

    def by_id(self) -> "CandidateTable":
        """The rows in the order they were stored (by candidate id)."""
        return CandidateTable(self.frame.sort_values("id"), self.value_names)

    def take(self, ids: Sequence[int]) -> "CandidateTable":
        """The rows of candidates `ids`, in that order (KeyError for an id not in the table)."""
        return CandidateTable(self.frame.set_index("id", drop=False).loc[list(ids)].reset_index(drop=True),
                              self.value_names)

    def front(self, method: str | None = None) -> "CandidateTable":
        """The rows on their method's front (non-dominated, finite), of one method or of all."""
        rows = self if method is None else self.for_method(method)
        return rows._rows(rows.frame["on_front"].astype(bool)) if "on_front" in rows.frame else rows


def methods_present(table: CandidateTable | pd.DataFrame, order: Sequence[str],
                    base_methods: Sequence[str] = (BASE_METHOD,)) -> list[str]:
    """The methods with candidates in `table`: those named in `order` (the comparison rows) first, in that order,
    then the others (candidates of vectors no method reads any more) sorted by name. Base models are left out."""
    frame = table.frame if isinstance(table, CandidateTable) else table
    present = set(frame["method"]) - set(base_methods) if not frame.empty else set()
    return [m for m in order if m in present] + sorted(present - set(order))
