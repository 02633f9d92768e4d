"""Explore's any-time evaluation (issue 31 item 1): the point appears after the first batch of prompts with its 95 %
bootstrap interval, moves and tightens as batches finish, and is stored when all are done (mva_core.live). A point
stopped early stays on the chart marked partial; it is not stored and joins no front."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from mva_core.live import PROMPTS_PER_BATCH, LivePoint, evaluate_anytime
from mva_core.sweep import Evaluator
from mva_core.table import z_column
from pages.shared import Front, Mark, duration, front_figure, get_candidates, hover_text, table_version

LIVE_KEY = "explore_live"  # the latest LivePoint of this session (partial while its evaluation runs or was stopped)
TRACE_KEY = "explore_live_trace"  # (n_done, n_prompts, z, low, high) of every estimate shown during the last run


def _same_point(point: LivePoint, method: str, weights: Sequence[float]) -> bool:
    return point.method == method and np.allclose(point.weights, weights, atol=1e-9)


def point_text(point: LivePoint) -> str:
    """One line per value: the estimate and its interval, and over how many prompts."""
    per_value = " · ".join(f"{v} z = {z:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                           for v, z, lo, hi in zip(point.value_names, point.z, point.low, point.high))
    what = "all" if not point.partial else f"{point.n_done} of"
    return f"{per_value} (95 % interval over {what} {point.n_prompts} prompts)"


def live_mark(point: LivePoint, x_name: str, y_name: str, name: str) -> Mark:
    """The point at its estimate with its 95 % intervals as (asymmetric) error bars on both axes."""
    i, j = point.value_names.index(x_name), point.value_names.index(y_name)
    rows = pd.DataFrame([{z_column(v): z for v, z in zip(point.value_names, point.z)}])

    def bar(k: int) -> dict:
        return dict(type="data", symmetric=False, array=[point.high[k] - point.z[k]],
                    arrayminus=[point.z[k] - point.low[k]], color="#ff7f0e")

    return Mark(rows, name, dict(symbol="star-diamond", size=18, color="#ff7f0e", line=dict(width=1, color="black")),
                dict(error_x=bar(i), error_y=bar(j), hoverinfo="text", hovertext=[point_text(point)]))


def stopped_notice(method: str, weights: Sequence[float]) -> None:
    """After Cancel (the click reruns the script, which stops generating at the next token): what was kept."""
    point = st.session_state.get(LIVE_KEY)
    if point is not None and point.partial and _same_point(point, method, weights):
        st.warning(f"Evaluation stopped after {point.n_done} of {point.n_prompts} prompts: the partial point is shown "
                   "on the chart (marked partial, with its interval over those prompts). Nothing of it is stored and "
                   "it is on no front; press Evaluate to measure it on every prompt.")
    else:
        st.warning("Evaluation cancelled before the first batch of prompts was done: nothing of that point was "
                   "stored.")


def once(show: Callable[[str], object]) -> Callable[[str], None]:
    """`show` each message once: the base model (evaluated first, the reference of the z-scores) and the point
    can hit the same limit (e.g. out of memory at the same rows per call) and say the same."""
    seen: set[str] = set()

    def show_once(message: str) -> None:
        if message not in seen:
            seen.add(message)
            show(message)

    return show_once


def evaluate_live(ev: Evaluator, method: str, weights: Sequence[float], bar: DeltaGenerator, root: str) -> LivePoint:
    """Run the any-time evaluation inside the caller's status box: `bar` shows the batch, the measured speed and the
    ETA; a chart under it shows the method's candidates and the point moving and tightening batch by batch."""
    values = list(ev.ws.value_names)
    x_name, y_name = (values * 2)[:2]
    cands = get_candidates(root, table_version(ev.ws)).for_methods([method], base=False).frame
    cands = cands[cands["finite"]] if len(cands) else cands
    text_slot, chart_slot = st.empty(), st.empty()
    st.session_state[TRACE_KEY] = []
    state = dict(batch=1, point=None)
    n_prompts = max(len(ev.prompts), 1)

    def on_progress(stage: str, done: int, total: int) -> None:
        point = state["point"]
        if stage == "generate":
            speed = ("measuring speed on the first batch…" if point is None else
                     f"{point.tokens_per_s:.0f} tok/s · ETA {duration(point.eta_s or 0.0)}")
            finished = 0 if point is None else point.n_done
            share = (finished + done / max(total, 1) * min(PROMPTS_PER_BATCH, n_prompts - finished)) / n_prompts
            bar.progress(min(max(share, 0.0), 1.0),
                         text=f"2/3 batch {state['batch']}: token {done} of {total} · {speed}")
        elif stage == "prompts":
            bar.progress(done / max(total, 1), text=f"{done} of {total} prompts done")
            state["batch"] += 1

    def on_point(point: LivePoint) -> None:
        state["point"] = point
        st.session_state[LIVE_KEY] = point
        st.session_state[TRACE_KEY].append((point.n_done, point.n_prompts, point.z.tolist(), point.low.tolist(),
                                            point.high.tolist()))
        label = "measured point" if not point.partial else \
            f"partial point ({point.n_done} of {point.n_prompts} prompts)"
        layers = [Front(cands, hover_text(cands, values)), live_mark(point, x_name, y_name, label)] if len(cands) \
            else [live_mark(point, x_name, y_name, label)]
        text_slot.caption(point_text(point) + ("" if not point.partial else
                          f" · {point.tokens_per_s:.0f} tok/s measured · ETA {duration(point.eta_s or 0.0)}"))
        chart_slot.plotly_chart(front_figure(x_name, y_name, layers, height=320), width="stretch",
                                key=f"explore_live_{point.n_done}_{int(not point.partial)}")

    point = evaluate_anytime(ev, weights, source="live", on_point=on_point, progress=on_progress)
    chart_slot.empty()  # stored: the page's own chart shows it as "your point", among the method's candidates
    return point


def partial_layer(method: str, weights: Sequence[float], x_name: str, y_name: str) -> Mark | None:
    """The session's partial point (stopped early) at these weights, for the main chart; None otherwise."""
    point = st.session_state.get(LIVE_KEY)
    if point is None or not point.partial or not _same_point(point, method, weights):
        return None
    return live_mark(point, x_name, y_name, f"partial point ({point.n_done} of {point.n_prompts} prompts; not stored)")


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
