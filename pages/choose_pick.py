"""Explore's query box "best X with Y at least y" (issue 29 item 2): the stored and the surrogate-predicted answer
(mva_core.pick), drawn on the chart, and one click that evaluates the predicted point for real."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from mva_core.errors import MVAError
from mva_core.kinds import CompositionKind
from mva_core.pick import PickQuery, pick
from mva_core.table import CandidateTable, z_column
from mva_core.workspace import Workspace
from pages.shared import Mark, get_evaluator


def pick_box(ws: Workspace, candidates: CandidateTable, method: str, kind: CompositionKind,
             surrogate: Any | None) -> list[Mark]:
    """The query box (an expander) for `method`'s candidates; returns the answers as chart layers."""
    values = list(ws.value_names)
    layers: list[Mark] = []
    with st.expander("Best X with Y at least y: ask for a trade-off in the chart's units (z vs base)"):
        cols = st.columns(len(values) + 1)
        target = cols[0].selectbox("Maximise", values, key="pick_maximize")
        bounds = {}
        for col, v in zip(cols[1:], values):
            if v == target:
                continue
            b = col.number_input(f"{v} at least (z)", value=None, step=0.1, format="%.2f", key=f"pick_at_least_{v}",
                                 placeholder="no bound")
            if b is not None:
                bounds[v] = float(b)
        query = PickQuery(target, bounds)
        answer = pick(candidates, query, {method: kind}, ws.manifest.C, method, surrogate)
        s, p = answer.stored, answer.predicted
        if s is not None:
            st.markdown(f"**Stored:** candidate #{s.id}, weights {_weights(s.weights)}: "
                        + ", ".join(f"{v} {x:+.2f}" for v, x in s.z.items()) + " (z).")
            layers.append(Mark(pd.DataFrame([{z_column(v): x for v, x in s.z.items()}]), "pick: stored answer",
                               dict(symbol="square-open", size=26, color="#17becf", line=dict(width=3)),
                               dict(hoverinfo="text", hovertext=[f"stored answer to: {query.text()}<br>candidate "
                                                                 f"{s.id}"])))
        else:
            st.markdown(f"**Stored:** none. {_sentence(answer.stored_why)}")
        if p is not None:
            st.markdown(f"**Predicted** (surrogate over {p.n_candidates} candidates): weights {_weights(p.weights)} "
                        f"(weights within 1 sd of it: "
                        + ", ".join(f"{v} {lo:.2f}–{hi:.2f}" for v, (lo, hi) in p.weights_range.items()) + "): "
                        + ", ".join(f"{v} {p.z[v]:+.2f} ± {p.z_sd[v]:.2f}" for v in values)
                        + f" (z); all bounds met with probability {p.p_bounds_met:.0%}.")
            xs = {z_column(v): p.z[v] for v in values}
            layers.append(Mark(pd.DataFrame([xs]), "pick: predicted answer",
                               dict(symbol="star-diamond-open", size=20, color="#17becf", line=dict(width=2)),
                               dict(hoverinfo="text", hovertext=[f"predicted answer (not generated yet) to: "
                                                                 f"{query.text()}"])))
            if st.button("Evaluate the predicted point for real", key="pick_confirm",
                         help="Generates and scores the composed model at these weights and stores it (source "
                              "'pick'); it becomes your point on the chart."):
                with st.spinner("Generating and scoring the predicted point…"):
                    try:
                        result = get_evaluator(str(ws.root), method).evaluate(
                            [[p.weights[v] for v in values]], source="pick")
                    except MVAError as exc:
                        st.error(str(exc))
                    else:
                        st.session_state["explore_candidate"] = result.candidate_ids[0]
                        st.session_state["pick_confirmed"] = result.candidate_ids[0]
                        st.rerun()
        else:
            st.markdown(f"**Predicted:** none. {_sentence(answer.predicted_why)}")
        confirmed = st.session_state.get("pick_confirmed")
        if confirmed is not None and (candidates.frame["id"] == confirmed).any():
            row = candidates.frame[candidates.frame["id"] == confirmed].iloc[0]
            met = all(row[z_column(v)] >= b for v, b in bounds.items())
            st.caption(f"Evaluated: candidate #{confirmed} measured "
                       + ", ".join(f"{v} {row[z_column(v)]:+.2f}" for v in values) + " (z)"
                       + ("; it meets the bounds." if met else "; it does not meet the bounds."))
    return layers


def _weights(w: dict[str, float]) -> str:
    return "(" + ", ".join(f"{v} {x:.2f}" for v, x in w.items()) + ")" if w else "(a fixed model)"



def _sentence(text: str | None) -> str:
    return f"{text[0].upper()}{text[1:]}." if text else ""


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
