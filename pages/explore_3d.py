"""Explore with three or more values: the 3-D front over the full width, the parallel coordinates right under it,
both linked to the brush and the 2-D selection; axis labels rounded to what a reader compares (0.54, not 0.53564)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mva_core.table import z_column
from pages.explore_prediction import ORANGE, Predicted
from pages.shared import forget_stale, hover_text


def tick_format(values: Sequence[float] | np.ndarray) -> str:
    """A d3 format with the decimals a span of `values` needs: 2 (0.54, not 0.53564) unless its ticks (about a fifth
    of the span apart) need more to print apart."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    span = float(finite.max() - finite.min()) if finite.size else 1.0
    digits = 2 if span <= 0 else max(2, int(np.ceil(-np.log10(span / 5))))
    return f".{digits}f"


def front_3d(inside: pd.DataFrame, outside: pd.DataFrame, base: pd.DataFrame, axes: list[str], values: list[str],
             predicted: Predicted | None, mine: pd.DataFrame | None, kept: Predicted | None = None,
             stored: pd.DataFrame | None = None) -> go.Figure:
    """The candidates in three z axes: front red, dominated grey, outside the brush faint; the base model, the
    surrogate's prediction at the sliders (±1 sd bars; `kept`: the one made before the point there was measured)
    or the stored point at the sliders (`stored`), and your evaluated point."""
    fig = go.Figure()

    def add(rows: pd.DataFrame, name: str, marker: dict, **style: Any) -> None:
        fig.add_trace(go.Scatter3d(x=rows[z_column(axes[0])], y=rows[z_column(axes[1])], z=rows[z_column(axes[2])],
                                   name=name, marker=marker, **{"mode": "markers", **style}))

    def add_prediction(pred: Predicted, name: str, head: str) -> None:
        point = pd.DataFrame([{z_column(v): m for v, (m, _) in pred.items()}])
        bars = {k: dict(type="data", array=[pred[a][1]], color=ORANGE)
                for k, a in zip(("error_x", "error_y", "error_z"), axes)}
        add(point, name, dict(symbol="diamond-open", size=8, color=ORANGE), **bars, hovertext=[head],
            hoverinfo="text")

    for on_front, name, marker in [(False, "dominated", dict(color="#9aa5b1", size=4)),
                                   (True, "Pareto front", dict(color="#d62728", size=6))]:
        part = inside[inside["on_front"] == on_front]
        add(part, name, marker, hovertext=hover_text(part, values), hoverinfo="text")
    if len(outside):
        add(outside, "outside the brush", dict(color="#d5dbe1", size=3, opacity=0.5), hoverinfo="skip")
    add(base, "base model", dict(symbol="square", size=6, color="#1f77b4"))
    if predicted is not None:
        add_prediction(predicted, "predicted (surrogate)", "predicted at the sliders' weights (±1 sd), not generated")
    if kept is not None:
        add_prediction(kept, "predicted before measuring", "predicted here before this point was measured (±1 sd)")
    if stored is not None and len(stored):
        add(stored, "stored at these weights", dict(symbol="diamond", size=8, color=ORANGE),
            hovertext=["stored at the sliders' weights<br>" + h for h in hover_text(stored, values)], hoverinfo="text")
    if mine is not None and len(mine):
        add(mine, "your point", dict(symbol="diamond", size=8, color=ORANGE), hovertext=hover_text(mine, values),
            hoverinfo="text")
    every = pd.concat([inside, outside, base], ignore_index=True)
    scene = {f"{k}axis": dict(title=f"{a} (z)", tickformat=tick_format(every[z_column(a)]))
             for k, a in zip("xyz", axes)}
    fig.update_layout(height=640, margin=dict(l=0, r=0, t=10, b=0), legend=dict(orientation="h"),
                      scene=dict(**scene, aspectmode="cube"))
    return fig


def parallel_coordinates(cands: pd.DataFrame, values: list[str], brush: dict[str, tuple[float, float]],
                         selected: list[int]) -> go.Figure:
    """One line per candidate across every value's z-score: 0 dominated, 1 on the front, 2 selected on the
    scatter; the brush's ranges as constraint ranges on their axes; tick labels rounded (`tick_format`)."""
    color = cands["on_front"].astype(int).where(~cands["id"].isin(selected), 2)
    dims = [dict(label=f"{v} (z)", values=cands[z_column(v)], tickformat=tick_format(cands[z_column(v)]),
                 **({"constraintrange": list(brush[v])} if v in brush else {}))
            for v in values]
    return go.Figure(go.Parcoords(
        line=dict(color=color, cmin=0, cmax=2, colorscale=[[0, "#c5ccd3"], [0.5, "#d62728"], [1, "#ff7f0e"]]),
        dimensions=dims)).update_layout(height=380, margin=dict(l=40, r=40, t=40, b=10))


def all_values_section(cands: pd.DataFrame, inside: np.ndarray, base: pd.DataFrame, values: list[str],
                       predicted: Predicted | None, mine: pd.DataFrame | None, brush: dict[str, tuple[float, float]],
                       selected: list[int], kept: Predicted | None = None, stored: pd.DataFrame | None = None) -> None:
    """The 3-D front over the page's full width (three chosen axes), the parallel coordinates directly under it."""
    st.subheader("All values at once")
    forget_stale("explore_axes3d", values)
    st.session_state.setdefault("explore_axes3d", values[:3])
    axes = st.multiselect("3-D axes", values, max_selections=3, key="explore_axes3d")
    if len(axes) == 3:
        st.plotly_chart(front_3d(cands[inside], cands[~inside], base, axes, values, predicted, mine, kept, stored),
                        width="stretch", key="explore_3d")
    st.plotly_chart(parallel_coordinates(cands, values, brush, selected), width="stretch", key="explore_parcoords")
    st.caption("Parallel coordinates: one line per candidate through its z-score on every value; red = on the front, "
               "orange = selected on the scatter above. The brush's ranges show as bars on the axes (drag there to "
               "explore; the brush sliders above filter the scatter and the 3-D front too). The 2-D chart above is "
               "a projection: its red points are non-dominated in all values, so no line joins them there.")


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
