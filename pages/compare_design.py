"""Compare on each method's sweep design (issue 31 item 4): points evaluated on Explore are drawn, labelled
"explored", and left out of HV / MIP / CRD / follows-p / win rates unless the user includes them (mva_core.design)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mva_core.design import design_table, explored_rows
from mva_core.workspace import Workspace
from pages.shared import Mark, get_table, get_workspace, hover_text

INCLUDE_KEY = "compare_include_explored"


@st.cache_data(show_spinner=False)
def get_design_table(root: str, version: int, include_explored: bool) -> pd.DataFrame:
    """The candidate table the metrics read: each method's sweep design, plus the explored points if included."""
    ws = get_workspace(root)
    return design_table(ws, get_table(root, version), include_explored).frame


@st.cache_data(show_spinner=False)
def get_explored(root: str, version: int) -> pd.DataFrame:
    ws = get_workspace(root)
    return explored_rows(ws, get_table(root, version)).frame


def include_explored_toggle(ws: Workspace, version: int) -> bool:
    """The checkbox (shown when this workspace has explored points): include them in the metrics?"""
    n = len(get_explored(str(ws.root), version))
    if n == 0:
        return False
    return st.checkbox(f"Include the {n} point{'s' * (n != 1)} evaluated on Explore in the metrics", value=False,
                       key=INCLUDE_KEY,
                       help="Off (default): each method's HV, MIP and intervals are defined on its sweep design (grid "
                            "and search runs), so they do not move when someone evaluates a point on Explore; the "
                            "explored points are still drawn, ringed and labelled 'explored'. `compare --json "
                            "--include-explored` is the same switch.")


def explored_mark(ws: Workspace, version: int, methods: list[str], included: bool) -> Mark | None:
    """The explored points of the chosen methods, ringed, for the fronts chart."""
    rows = get_explored(str(ws.root), version)
    rows = rows[rows["method"].isin(methods) & rows["finite"]] if len(rows) else rows
    if rows.empty:
        return None
    label = "explored (in the metrics)" if included else "explored (not in the metrics)"
    return Mark(rows, label, dict(symbol="circle-open", size=18, color="#ff7f0e", line=dict(width=2)),
                dict(hovertext=hover_text(rows, ws.value_names, "explored · candidate"), hoverinfo="text"))


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
