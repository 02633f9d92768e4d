"""Compare's uncertainty of the fronts (issue 29 items 1 and 4): each method's 10/50/90 % empirical attainment
surfaces over prompt resamples drawn around its front, and each method's share of the joint front with its interval.
The numbers come from mva_core.confidence; this module caches and draws them."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mva_core.confidence import ATTAINMENT_LEVELS, attainment_of_workspace, front_shares_of_workspace
from mva_core.table import z_column
from mva_core.workspace import Workspace
from pages.shared import Mark, get_candidates, get_workspace


@st.cache_data(show_spinner="Resampling the prompts: attainment surfaces…")
def get_attainment(root: str, version: int, method: str, axes: tuple[str, ...],
                   levels: tuple[float, ...]) -> dict[float, pd.DataFrame]:
    return attainment_of_workspace(get_workspace(root), get_candidates(root, version), method, list(axes), levels)


@st.cache_data(show_spinner="Resampling the prompts: shares of the joint front…")
def get_front_shares(root: str, version: int, methods: tuple[str, ...]) -> pd.DataFrame:
    shares = front_shares_of_workspace(get_workspace(root), get_candidates(root, version), list(methods))
    return pd.DataFrame([{"method": m, "share of the joint front": s.share.estimate,
                          "95% CI": f"[{s.share.low:.0%}, {s.share.high:.0%}]" if np.isfinite(s.share.low) else "—"}
                         for m, s in shares.items()])


def staircase(points: pd.DataFrame, x: str, y: str, ref: Sequence[float]) -> tuple[list[float], list[float]]:
    """The boundary of the region attained by `points` (maximised), from the reference's x at the top-left corner's
    height down to the reference's y: for points sorted by x, down then right at each corner."""
    pts = points.sort_values(x)
    xs, ys = pts[x].to_numpy(dtype=float), pts[y].to_numpy(dtype=float)
    if not len(xs):
        return [], []
    px, py = [min(ref[0], xs[0])], [ys[0]]
    for i in range(len(xs)):
        px += [xs[i], xs[i]]
        py += [ys[i], ys[i + 1] if i + 1 < len(xs) else min(ref[1], ys[i])]
    return px, py


def attainment_layers(ws: Workspace, methods: Sequence[str], colors: dict[str, str], x_name: str, y_name: str,
                      ref: Sequence[float]) -> list[Mark]:
    """For each of `methods` (of this workspace): the band between its 10 % and 90 % attainment surfaces (filled)
    and its 50 % surface (dotted), in the chart's two axes."""
    x, y = z_column(x_name), z_column(y_name)
    axes = (x_name, y_name) if x_name != y_name else (x_name,)
    if len(axes) < 2:
        return []
    r = (float(ref[ws.value_names.index(x_name)]), float(ref[ws.value_names.index(y_name)]))
    layers: list[Mark] = []
    for method in methods:
        bands = get_attainment(str(ws.root), ws.store.version(), method, axes, ATTAINMENT_LEVELS)
        lo_x, lo_y = staircase(bands[0.9], x, y, r)  # attained by 90 % of resamples: the pessimistic edge
        hi_x, hi_y = staircase(bands[0.1], x, y, r)  # by 10 %: the optimistic edge
        mid_x, mid_y = staircase(bands[0.5], x, y, r)
        color = colors.get(method, "#444")
        if hi_x and lo_x:
            poly = pd.DataFrame({x: hi_x + lo_x[::-1], y: hi_y + lo_y[::-1]})
            layers.append(Mark(poly, f"{method}: 10–90 % attainment band", dict(size=1, color=color),
                               dict(mode="lines", fill="toself", fillcolor=_alpha(color, 0.12),
                                    line=dict(color=_alpha(color, 0.35), width=1), hoverinfo="skip",
                                    legendgroup=f"band {method}")))
        if mid_x:
            layers.append(Mark(pd.DataFrame({x: mid_x, y: mid_y}), f"{method}: 50 % attainment surface",
                               dict(size=1, color=color),
                               dict(mode="lines", line=dict(color=color, width=1, dash="dot"), hoverinfo="skip",
                                    legendgroup=f"band {method}")))
    return layers


def _alpha(color: str, a: float) -> str:
    c = color.lstrip("#")
    if len(c) != 6:
        return color
    return f"rgba({int(c[0:2], 16)}, {int(c[2:4], 16)}, {int(c[4:6], 16)}, {a})"


def attainment_3d(ws: Workspace, shown: pd.DataFrame, methods: Sequence[str], colors: dict[str, str]) -> None:
    """Three values: each method's front and its 50 % attainment surface in 3-D; the 10 % and 90 % on demand."""
    values = list(ws.value_names)
    axes = st.multiselect("3-D axes", values, default=values[:3], max_selections=3, key="compare_band_axes3d")
    levels = st.multiselect("Attainment surfaces", list(ATTAINMENT_LEVELS), default=[0.5], key="compare_band_levels",
                            format_func=lambda q: f"{q:.0%}")
    if len(axes) != 3:
        return
    cols = [z_column(a) for a in axes]
    fig = go.Figure()
    for method in methods:
        color = colors.get(method, "#444")
        part = shown[(shown["method"] == method) & shown["finite"] & shown["on_front"].astype(bool)]
        fig.add_trace(go.Scatter3d(x=part[cols[0]], y=part[cols[1]], z=part[cols[2]], mode="markers",
                                   name=f"{method} front", marker=dict(size=4, color=color)))
        bands = get_attainment(str(ws.root), ws.store.version(), method, tuple(axes), tuple(levels))
        for level in levels:
            pts = bands[level]
            if len(pts) >= 3:
                fig.add_trace(go.Mesh3d(x=pts[cols[0]], y=pts[cols[1]], z=pts[cols[2]], color=color,
                                        opacity={0.1: 0.12, 0.5: 0.3, 0.9: 0.2}.get(level, 0.2), delaunayaxis="z",
                                        name=f"{method}: {level:.0%} attainment", showlegend=True, hoverinfo="name"))
            elif len(pts):
                fig.add_trace(go.Scatter3d(x=pts[cols[0]], y=pts[cols[1]], z=pts[cols[2]], mode="markers",
                                           name=f"{method}: {level:.0%} attainment",
                                           marker=dict(size=3, color=color, symbol="diamond-open")))
    fig.update_layout(height=520, margin=dict(l=0, r=0, t=10, b=0), legend=dict(orientation="h"), scene=dict(
        xaxis_title=f"{axes[0]} (z)", yaxis_title=f"{axes[1]} (z)", zaxis_title=f"{axes[2]} (z)"))
    st.plotly_chart(fig, width="stretch", key="compare_bands_3d")


def confidence_section(ws: Workspace, shown: pd.DataFrame, methods: Sequence[str], colors: dict[str, str]) -> None:
    """Compare's "How sure is each front?": the shares of the joint front with intervals, and for three or more
    values the 3-D attainment surfaces."""
    if not methods:
        return
    st.subheader("How sure is each front?")
    st.dataframe(get_front_shares(str(ws.root), ws.store.version(), tuple(methods)), hide_index=True,
                 width="stretch", column_config={"share of the joint front": st.column_config.ProgressColumn(
                     min_value=0.0, max_value=1.0, format="percent")})
    st.caption("Share of the joint front: pool every compared method's candidates, keep the ones no other "
               "dominates, and count which are this method's (a candidate two methods share counts for both); "
               "95 % percentile interval over 1000 prompt resamples (the intervals' resamples above). On the chart, "
               "each method's band runs from its 10 % to its 90 % empirical attainment surface over the same "
               "resamples (the points its front reaches in at least 10 % / 90 % of them; dotted: 50 %): where two "
               "bands overlap, the prompts cannot tell the fronts apart.")
    if len(ws.value_names) >= 3:
        attainment_3d(ws, shown, methods, colors)


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
