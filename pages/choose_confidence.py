"""How sure a front point is (issue 29 item 1): P(front) per candidate for Explore's chart and Export's default
selection. The numbers come from mva_core.confidence; this module only caches and draws them."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from mva_core.confidence import front_probability_of_table
from mva_core.workspace import Workspace
from pages.shared import Mark, get_candidates, get_workspace

KEEP_AT = 0.5  # Export selects by default the candidates on their method's front in at least this share of resamples


@st.cache_data(show_spinner="Resampling the prompts: how often is each point on the front?")
def get_front_probability(root: str, version: int) -> dict[tuple[str, int], float]:
    """(method, candidate id) → P(front) within its method over 1000 prompt resamples (Compare's)."""
    table = get_candidates(root, version)
    p = front_probability_of_table(get_workspace(root), table)
    return {(str(m), int(i)): float(x) for m, i, x in zip(table.frame["method"], table.ids(), p) if np.isfinite(x)}


def front_probability(ws: Workspace, rows: pd.DataFrame) -> np.ndarray:
    """(N,) P(front) of each row of `rows` (a candidate table's rows; NaN where unknown, e.g. no base model)."""
    known = get_front_probability(str(ws.root), ws.store.version())
    return np.array([known.get((str(m), int(i)), np.nan) for m, i in zip(rows["method"], rows["id"])], dtype=float)


def confidence_text(p: float) -> str:
    return "P(front) unknown (no base model to resample against)" if not np.isfinite(p) \
        else f"on the front in {p:.0%} of resamples"


def with_confidence(hover: Sequence[str], p: np.ndarray) -> list[str]:
    """Hover texts with "on the front in 87 % of resamples" appended."""
    return [f"{h}<br>{confidence_text(x)}" for h, x in zip(hover, p)]


def confidence_rings(rows: pd.DataFrame, p: np.ndarray) -> Mark:
    """A ring around each candidate, as opaque as it is sure to be on the front (P(front) 1: solid, 0: invisible)."""
    shown = np.nan_to_num(p, nan=0.0)
    return Mark(rows, "P(front) ring", dict(symbol="circle-open", size=22, color="#d62728", line=dict(width=2),
                                            opacity=shown.tolist()),
                dict(hoverinfo="text", hovertext=[f"candidate {int(i)}: {confidence_text(x)}"
                                                  for i, x in zip(rows["id"], p)], customdata=rows["id"]))


def default_export_selection(ws: Workspace, rows: pd.DataFrame) -> list[int]:
    """Export's default: the finite candidates on their method's front in ≥ KEEP_AT of the prompt resamples; without
    P(front) (no base model), the front."""
    p = front_probability(ws, rows)
    keep = rows["finite"].to_numpy(dtype=bool) & (np.nan_to_num(p, nan=-1.0) >= KEEP_AT)
    if not np.isfinite(p).any():
        keep = rows["finite"].to_numpy(dtype=bool) & rows["on_front"].to_numpy(dtype=bool)
    return [int(i) for i in rows.loc[keep, "id"]]


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
