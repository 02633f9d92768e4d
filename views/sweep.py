"""Sweep: evaluate a method's whole weight grid chunk by chunk, watching the front grow; resumable."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mva_core.config import ConfigError
from mva_core.sweep import BASE_METHOD, evaluate_base, method_groups, sweep_groups
from views.shared import current_workspace, get_evaluator, get_table, table_version

MAX_GRID = 10_000  # beyond this, keying the grid on every rerun makes the page sluggish: use the CLI

ws = current_workspace()
if ws is None:
    st.stop()
values = ws.value_names
compared = {m.name: m for m in ws.compared_methods()}
methods = list(compared)
C = float(ws.manifest.C)

st.title("Sweep a weight grid")
st.caption(
    f"Evaluates every weight vector of a grid: each candidate = base + Σ wᵢ·θᵢ (MVA Eq.15), generated on "
    f"{len(ws.prompts())} prompts and scored for {', '.join(values)}. Candidates already in the store are never "
    "recomputed, so a stopped sweep resumes where it left off."
)
if not methods:
    st.warning(f"No value vectors in {ws.root}/vectors yet. Build the demo: `python -m mva_core demo build`.")
    st.stop()

# ---- Grid ----
for key, default in [("sweep_step", 0.25), ("sweep_chunk", 8)]:
    if key not in st.session_state:
        st.session_state[key] = default
if st.session_state.get("sweep_method") not in methods:  # e.g. after switching workspace
    st.session_state.pop("sweep_method", None)
c1, c2, c3, c4 = st.columns(4)
method = c1.selectbox("Method", methods, key="sweep_method",
                      format_func=lambda m: f"{m} ({compared[m].composition})")
composition = compared[method].composition
KINDS = {"extrapolation": f"extrapolation [0, {C:g}]^{len(values)}", "simplex": "simplex (Σ w = 1, SOUP)",
         "vertices": "its value's vector alone (w = 1)", "each": f"each of its {len(compared[method].vector_dirs)} "
         "models alone (w = 1)"}
kinds = ["extrapolation", "simplex"] if composition in ("extrapolation", "simplex") else [composition]
kind = c2.selectbox("Grid", kinds, index=kinds.index(composition), key=f"sweep_kind_{method}", format_func=KINDS.get)
step = c3.number_input("Step", min_value=0.0, step=0.05, format="%.3f", key="sweep_step",
                       disabled=composition not in ("extrapolation", "simplex"),
                       help=f"Spacing of the grid ticks 0, step, 2·step, … ≤ C = {C:g} (C comes from workspace.json).")
chunk = int(c4.number_input("Candidates per generate call", min_value=1, max_value=256, step=1, key="sweep_chunk",
                            help="Each chunk is one weight-batched generation and is stored before the next starts."))

try:
    groups = method_groups(ws, method, float(step), kind=kind if kind in ("extrapolation", "simplex") else None,
                           evaluator=lambda m, dirs: get_evaluator(str(ws.root), m, tuple(str(d) for d in dirs)))
except ConfigError as exc:
    st.error(f"Bad grid: {exc}")
    st.stop()
except ValueError as exc:  # vectors that do not fit the base model, a missing vector dir, ...
    st.error(str(exc))
    st.stop()
grid = np.concatenate([W for _, W in groups]) if groups else np.zeros((0, len(values)))
if len(grid) == 0:
    st.error(f"No grid point has weights summing to 1 with step {step:g}; choose a step that divides 1 (0.1, 0.25, 0.5).")
    st.stop()
if len(grid) > MAX_GRID:
    st.error(f"The grid has {len(grid):,} candidates (more than {MAX_GRID:,}): raise the step, or run it from a "
             f"terminal: `python -m mva_core sweep --method {method} --grid 0:{C:g}:{step:g} --kind {kind}`.")
    st.stop()



def stored_ids() -> list[int]:
    """Ids of this grid's candidates already in the store (content keys: a candidate stored by Explore counts)."""
    return [cid for ev, W in groups for cid in ev.stored(W).values()]


stored = len(stored_ids())

# ---- What is stored ----
m1, m2, m3, m4 = st.columns(4)
m1.metric("Grid candidates", len(grid))
m2.metric("Already stored", stored)
m3.metric("To generate", len(grid) - stored)
m4.metric("Weight bound C", f"{C:g}")
if kind in ("extrapolation", "simplex"):
    st.caption("Each weight takes the values " + ", ".join(f"{t:g}" for t in np.unique(grid))
               + (" (rows summing to 1)." if kind == "simplex" else "."))

# ---- Run ----
label = "Start sweep" if stored == 0 else f"Resume sweep ({len(grid) - stored} missing)" if stored < len(grid) \
    else "Run again (all stored: nothing to generate)"
start = st.button(label, type="primary" if stored < len(grid) else "secondary", key="sweep_start")
last = st.session_state.get("sweep_last")
if last and not start:
    st.success(f"Last sweep ({last['method']}, {last['candidates']} candidates): {last['generated']} generated, "
               f"{last['candidates'] - last['generated']} answered from the store, in {last['seconds']:.1f} s.")
progress_slot = st.empty()

# ---- Front ----
x_name, y_name = (values * 2)[:2]
if len(values) > 2:
    ax1, ax2 = st.columns(2)
    x_name = ax1.selectbox("x axis", values, index=0, key="sweep_x")
    y_name = ax2.selectbox("y axis", values, index=1, key="sweep_y")
chart_slot = st.empty()
st.caption("Touching any control while a sweep runs stops it; every finished chunk is kept, press Resume to go on.")


def draw_front(n: int) -> None:
    """The method's stored candidates in z-score space (vs the base model), the front in red, this grid's ringed."""
    table = get_table(str(ws.root), table_version(ws))
    fig = go.Figure()
    if not table.empty:
        cands = table[(table["method"] == method) & table["finite"]]
        for on_front, name, style in [(False, "dominated", dict(color="#9aa5b1", size=8)),
                                      (True, "Pareto front", dict(color="#d62728", size=11))]:
            part = cands[cands["on_front"] == on_front]
            text = [f"candidate {r.id}<br>weights {np.round(r.weights, 3).tolist()}" for r in part.itertuples()]
            fig.add_trace(go.Scatter(x=part[f"z_{x_name}"], y=part[f"z_{y_name}"], mode="markers", name=name,
                                     marker=style, hovertext=text, hoverinfo="text+x+y"))
        mine = cands[cands["id"].isin(stored_ids())]
        fig.add_trace(go.Scatter(x=mine[f"z_{x_name}"], y=mine[f"z_{y_name}"], mode="markers", name="in this grid",
                                 marker=dict(symbol="circle-open", size=16, color="#333", line=dict(width=1.5)),
                                 hoverinfo="skip"))
        base = table[table["method"] == BASE_METHOD]
        fig.add_trace(go.Scatter(x=base[f"z_{x_name}"], y=base[f"z_{y_name}"], mode="markers", name="base model",
                                 marker=dict(symbol="square", size=12, color="#1f77b4")))
    fig.update_layout(xaxis_title=f"{x_name} (z vs base)", yaxis_title=f"{y_name} (z vs base)", height=420,
                      legend=dict(orientation="h", y=1.1), margin=dict(l=10, r=10, t=40, b=10))
    # A fresh key per redraw: the chart is replaced several times within one script run.
    chart_slot.plotly_chart(fig, width="stretch", key=f"sweep_plot_{n}")


def duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m {s:02d}s" if m else f"{s}s"


draw_front(0)

# ---- Sweep ----
if start:
    missing, n_chunks = len(grid) - stored, -(-len(grid) // chunk)
    bar = progress_slot.progress(0.0, text="Scoring the base model (the reference for z-scores)…")
    try:
        evaluate_base(ws, groups[0][0].base)
        t0 = time.monotonic()
        now = dict(done=0, chunk=1)  # candidates finished, chunk in flight
        bar.progress(0.0, text=f"0/{len(grid)} candidates · chunk 1 of {n_chunks}: generating…")

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage != "candidates":  # a stage inside the current chunk (generate / score)
                bar.progress(now["done"] / len(grid), text=f"{now['done']}/{len(grid)} candidates · chunk "
                                                            f"{now['chunk']} of {n_chunks}: {stage} {done}/{total}")
                return
            generated = len(stored_ids()) - stored
            elapsed = time.monotonic() - t0
            eta = "—" if generated == 0 and missing else duration(elapsed / max(generated, 1) * (missing - generated))
            bar.progress(done / total, text=f"{done}/{total} candidates · {generated} generated, "
                                            f"{max(done - generated, 0)} from the store · "
                                            f"elapsed {duration(elapsed)} · ETA {eta}")
            now.update(done=done, chunk=now["chunk"] + 1)
            draw_front(now["chunk"])

        res = sweep_groups(method, groups, chunk=chunk, progress=on_progress,
                           space=ws.space(kind, step) if kind in ("extrapolation", "simplex") else None)
    except ValueError as exc:
        st.error(f"The sweep stopped: {exc}. Finished chunks are stored; press Resume to continue.")
        st.stop()
    st.session_state["sweep_last"] = dict(method=method, candidates=len(res.candidate_ids), generated=res.generated,
                                          seconds=time.monotonic() - t0)
    st.rerun()  # refresh the counts, the button label and the runs table

# ---- Past sweeps ----
st.subheader("Past runs")
runs = ws.store.runs()
if runs.empty:
    st.info("No sweeps run in this workspace yet.")
else:
    cands = ws.store.candidates()
    made = cands["run_id"].value_counts() if not cands.empty else pd.Series(dtype=int)
    runs = runs.assign(
        started=pd.to_datetime(runs["started"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S"),
        seconds=(runs["finished"] - runs["started"]).round(1),
        grid_points=runs["config"].map(lambda c: len(json.loads(c).get("grid", []))),
        new_candidates=runs["id"].map(made).fillna(0).astype(int),
    )
    st.dataframe(runs[["id", "kind", "method", "status", "started", "seconds", "grid_points", "new_candidates"]]
                 .sort_values("id", ascending=False), width="stretch", hide_index=True,
                 column_config={"new_candidates": st.column_config.NumberColumn(
                     "new candidates", help="Generated by this run; the rest of its grid came from the store.")})
