"""The tables pages and the CLI show: candidates with raw and z-scored rewards, ranks, fronts, hypervolume.

Rewards are z-normalised per value against the base model's responses on the same prompts (DESIGN
"Metrics"); raw means stay in the table. One reference point is shared by every method compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import pareto
from .scorers import ScoreNormaliser
from .sweep import BASE_METHOD
from .workspace import Workspace


def candidate_table(ws: Workspace, methods: list[str] | None = None) -> pd.DataFrame:
    """One row per stored candidate (plus the base model): weights `w_<value>`, raw means `raw_<value>`,
    z-scores `z_<value>`, `rank` and `on_front` within its method, `finite`."""
    cand = ws.store.candidates()
    if cand.empty:
        return cand
    if methods is not None:
        cand = cand[cand["method"].isin([*methods, BASE_METHOD])]
    values = ws.manifest.values
    base_ids = cand.loc[cand["method"] == BASE_METHOD, "id"].tolist()
    base_rows = ws.store.responses(base_ids[-1:]) if base_ids else pd.DataFrame()
    cand = cand.copy()
    for v in values:
        raw = cand.get(f"s_{v.scorer}", pd.Series(np.nan, index=cand.index)).astype(float)
        cand[f"raw_{v.name}"] = raw
        if v.scorer in base_rows:
            cand[f"z_{v.name}"] = ScoreNormaliser().fit(base_rows[v.scorer].to_numpy(dtype=float)).transform(raw.to_numpy())
        else:  # no base model scored yet: show raw values rather than nothing
            cand[f"z_{v.name}"] = raw
    z = cand[[f"z_{v.name}" for v in values]].to_numpy(dtype=float)
    cand["finite"] = np.isfinite(z).all(axis=1)
    cand["rank"] = np.nan
    cand["on_front"] = False
    for method, idx in cand.groupby("method").groups.items():
        rows = cand.index.get_indexer(idx)
        rank = pareto.non_dominated_rank(z[rows])
        cand.loc[idx, "rank"] = rank
        cand.loc[idx, "on_front"] = rank == 0
    return cand.reset_index(drop=True)


@dataclass
class MethodSummary:
    method: str
    candidates: int
    front_size: int
    hypervolume: float
    excluded: int  # candidates with a non-finite score


def summarise(table: pd.DataFrame, value_names: list[str], ref: np.ndarray | None = None) -> tuple[list[MethodSummary], np.ndarray]:
    """Per-method hypervolume with ONE reference point (default: per-value minimum over all candidates
    of the comparison, base included). Returns the summaries and the reference point used."""
    cols = [f"z_{v}" for v in value_names]
    F = table[cols].to_numpy(dtype=float)
    finite = pareto.finite_rows(F)
    if ref is None:
        ref = pareto.reference_point(F[finite]) if finite.any() else np.zeros(len(cols))
    out = []
    for method, grp in table.groupby("method", sort=True):
        if method == BASE_METHOD:
            continue
        Fm = grp[cols].to_numpy(dtype=float)
        res = pareto.analyse(Fm, ref=ref)
        out.append(MethodSummary(method, len(grp), len(res.pareto), res.hypervolume, len(res.excluded)))
    return out, np.asarray(ref, dtype=float)
