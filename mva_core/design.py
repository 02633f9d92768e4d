"""A method's sweep design: the candidates a comparison's metrics are defined on (issue 31 item 4).

Compare's hypervolume and MIP (and their intervals, CRD, follows-p, win rates) describe a method on a fixed design:
its grid (sweep runs) and its adaptive searches. Points a user evaluates on Explore (source "live") are extra: they
would move a method's HV whenever someone drags a slider. So an explored point is left out of the metrics unless the
user includes it (Compare's checkbox, `compare --include-explored`); pages still show it, labelled "explored". A
live point that a recorded sweep's grid of the same method also holds (Explore evaluated it first, the sweep then
found it stored) belongs to the design.
"""

from __future__ import annotations

import json

import numpy as np

from . import pareto
from .table import CandidateTable
from .workspace import Workspace

EXPLORED_SOURCE = "live"  # the candidates' `source` of a point evaluated on Explore


def _key(weights: object) -> tuple[float, ...]:
    return tuple(round(float(x), 9) for x in np.asarray(weights, dtype=float).reshape(-1))  # as candidate keys round


def explored_mask(ws: Workspace, table: CandidateTable) -> np.ndarray:
    """(N,) True for the rows of `table` evaluated on Explore that no recorded sweep of their method has in its grid
    (module docstring)."""
    frame = table.frame
    if frame.empty or "source" not in frame:
        return np.zeros(len(frame), dtype=bool)
    live = (frame["source"] == EXPLORED_SOURCE).to_numpy()
    if not live.any():
        return live
    runs = ws.store.runs()
    grids: dict[str, set[tuple[float, ...]]] = {}
    for run in runs[runs["kind"] == "sweep"].itertuples():
        grids.setdefault(run.method, set()).update(_key(w) for w in json.loads(run.config).get("grid", []))
    on_grid = np.array([_key(w) in grids.get(m, set()) for m, w in zip(frame["method"], frame["weights"])], dtype=bool)
    return live & ~on_grid


def design_table(ws: Workspace, table: CandidateTable, include_explored: bool = False) -> CandidateTable:
    """`table` as the metrics see it: without the explored rows (`explored_mask`) unless `include_explored`, each
    method's `rank` and `on_front` recomputed on the rows kept (as `CandidateTable.build` ranks them, MVA Eq.20)."""
    table = CandidateTable.of(table, ws.value_names)
    if include_explored:
        return table
    explored = explored_mask(ws, table)
    if not explored.any():
        return table
    frame = table.frame[~explored].reset_index(drop=True)
    z = frame[table.z_columns()].to_numpy(dtype=float)
    for _, idx in frame.groupby("method").groups.items():
        rank = pareto.non_dominated_rank(z[frame.index.get_indexer(idx)])
        frame.loc[idx, "rank"] = rank
        frame.loc[idx, "on_front"] = rank == 0
    return CandidateTable(frame, table.value_names)


def explored_rows(ws: Workspace, table: CandidateTable) -> CandidateTable:
    """The rows of `table` evaluated on Explore, off their method's design (to draw them, labelled)."""
    table = CandidateTable.of(table, ws.value_names)
    return CandidateTable(table.frame[explored_mask(ws, table)].reset_index(drop=True), table.value_names)
