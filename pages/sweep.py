"""Sweep: evaluate a method's whole weight grid chunk by chunk, watching the front grow; resumable."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from mva_core.config import ConfigError
from mva_core.data import DataFileError
from mva_core.errors import MVAError
from mva_core.kinds import get_kind
from mva_core.notices import notices_to
from mva_core.scorers import available_scorers
from mva_core.search import search_method, stored_history
from mva_core.table import CandidateTable, raw_column, weight_column
from mva_core.sweep import evaluate_base, method_groups, sweep_groups
from pages.search_status import remember_nothing_new, search_notices
from pages.shared import (
    Front, Mark, axis_picker, current_workspace, eta_text, forget_stale, front_figure, get_evaluator, get_table,
    hover_text, table_version,
)

MAX_GRID = 10_000  # beyond this, keying the grid on every rerun makes the page sluggish: use the CLI


def render() -> None:
    """The Sweep page: run or resume a method's weight grid (or an adaptive search), watching the front grow."""
    ws = current_workspace()
    if ws is None:
        st.stop()
    values = ws.value_names
    compared = {m.name: m for m in ws.compared_methods()}
    methods = list(compared)
    prompt_sets = ws.prompt_sets()

    st.title("Sweep a weight grid")
    st.caption(
        "Evaluates every weight vector of a grid: each candidate = base + Σ wᵢ·θᵢ (MVA Eq.15), generated on a prompt "
        "set and scored by each value's scorer. Candidates already in the store are never recomputed, so a stopped "
        "sweep resumes where it left off."
    )
    if not methods:
        st.warning(f"No value vectors in {ws.root}/vectors yet. Build the demo: `python -m mva_core demo build`.")
        st.stop()

    # ---- Grid ----
    # e.g. after switching workspace: choices that are not this workspace's
    forget_stale("sweep_method", methods)
    forget_stale("sweep_values", values)
    forget_stale("sweep_prompts", prompt_sets)
    for key, default in [("sweep_step", 0.25), ("sweep_chunk", 8), ("sweep_C", float(ws.manifest.C)),
                         ("sweep_values", values), ("sweep_extra", [])]:
        if key not in st.session_state:
            st.session_state[key] = default
    c1, c2, c3, c4, c5 = st.columns(5)
    method = c1.selectbox("Method", methods, key="sweep_method",
                          format_func=lambda m: f"{m} ({compared[m].composition})")
    composition = compared[method].composition
    has_grid = compared[method].kind.has_grid  # a step, and a subset of the values, apply
    kinds = compared[method].kind.sweep_kinds()
    kind = c2.selectbox("Grid", kinds, index=kinds.index(composition), key=f"sweep_kind_{method}",
                        format_func=lambda k: get_kind(k).label(len(compared[method].vector_dirs)))
    C = float(c3.number_input("C (weight bound)", min_value=0.0, step=0.25, format="%.3f", key="sweep_C",
                              disabled=not get_kind(kind).extrapolates,
                              help=f"Every weight of the extrapolation grid lies in [0, C] (paper: C = 1; workspace.json: "
                                   f"{ws.manifest.C:g}). Weights above 1 are allowed: that is extrapolation."))
    C = get_kind(kind).bound(C)
    step = c4.number_input("Step", min_value=0.0, step=0.05, format="%.3f", key="sweep_step", disabled=not has_grid,
                           help="Spacing of the grid ticks 0, step, 2·step, … ≤ C.")
    chunk = int(c5.number_input("Candidates per generate call", min_value=1, max_value=256, step=1, key="sweep_chunk",
                                help="Each chunk is one weight-batched generation and is stored before the next starts."))
    v1, v2 = st.columns(2)
    chosen = v1.multiselect("Values to sweep", values, key="sweep_values", disabled=not has_grid,
                            help="The weights of values left out stay at 0. Methods without a weight grid (one vector "
                                 "alone, one model per preference) always use all values.")
    prompt_label = v2.selectbox("Prompt set", list(prompt_sets), key="sweep_prompts",
                                help="Candidates are stored per prompt set (their key includes the prompts), so results "
                                     "on one set never answer for, or overwrite, another's. Explore and Compare show "
                                     "workspace.json's set.")
    default_prompts = prompt_label == next(iter(prompt_sets))
    try:
        prompts = ws.prompts(prompt_sets[prompt_label])
    except DataFileError as exc:
        st.error(f"Prompt set {prompt_label} cannot be read: {exc}")
        st.stop()
    if has_grid and not chosen:
        st.error("Choose at least one value to sweep: the weights of the values left out are fixed at 0, so with none "
                 "selected there is no grid.")
        st.stop()

    # ---- Scorers ----
    registry = available_scorers()
    used = [v.scorer for v in ws.manifest.values]
    with st.expander(f"Scorers: {', '.join(f'{v.name} ← {v.scorer}' for v in ws.manifest.values)}"):
        st.dataframe(pd.DataFrame([{"value": v.name, "scorer": v.scorer, "measures": registry.get(
            v.scorer, "Hugging Face reward model" if v.scorer.startswith("hf:") else "?")} for v in ws.manifest.values]),
            hide_index=True, width="stretch")
        st.caption("Which scorer measures a value is set in workspace.json (`values`).")
        extras = st.multiselect("Extra scorers", [s for s in registry if s not in used], key="sweep_extra",
                                help="Also score this sweep's candidates with these (stored per candidate and prompt, "
                                     "raw, listed below the chart); the front stays on the values' scores.")

    try:
        groups = method_groups(ws, method, float(step), kind=kind if has_grid else None, C=C,
                               values=chosen if has_grid else None, prompts=None if default_prompts else prompts,
                               evaluator=lambda m, dirs: get_evaluator(str(ws.root), m, tuple(str(d) for d in dirs)))
    except ConfigError as exc:
        st.error(f"Bad grid: {exc}")
        st.stop()
    except MVAError as exc:  # vectors that do not fit the base model, a missing vector dir, ...
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
    prompts_file = None if default_prompts else str(prompt_sets[prompt_label])


    def stored_ids() -> list[int]:
        """Ids of this grid's candidates already in the store (content keys: a candidate stored by Explore counts)."""
        return [cid for ev, W in groups for cid in ev.stored(W).values()]


    stored = len(stored_ids())

    # ---- What is stored ----
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric("Grid candidates", len(grid))
    m2.metric("Already stored", stored)
    m3.metric("To generate", len(grid) - stored)
    m4.metric("Weight bound C", f"{C:g}")
    m5.metric("Prompts", len(prompts))
    if has_grid:
        swept = [values.index(v) for v in chosen]
        fixed = [v for v in values if v not in chosen]
        st.caption(f"{'Each weight takes' if not fixed else 'The weights of ' + ', '.join(chosen) + ' take'} the values "
                   + ", ".join(f"{t:g}" for t in np.unique(grid[:, swept]))
                   + (f" ({get_kind(kind).constraint})" if get_kind(kind).constraint else "")
                   + (f"; {', '.join(fixed)} stay at 0." if fixed else "."))
    if get_kind(kind).extrapolates and C > ws.manifest.C:
        st.info(f"C = {C:g} is above workspace.json's C = {ws.manifest.C:g}: these candidates are stored and shown as "
                f"points of {method} everywhere, but Explore's sliders stop at {ws.manifest.C:g}.")

    # ---- Run ----
    label = "Start sweep" if stored == 0 else f"Resume sweep ({len(grid) - stored} missing)" if stored < len(grid) \
        else "Run again (all stored: nothing to generate)"
    start = st.button(label, type="primary" if stored < len(grid) else "secondary", key="sweep_start")
    last = st.session_state.get("sweep_last")
    if last and not start:
        st.success(f"Last sweep ({last['method']}, {last['candidates']} candidates): {last['generated']} generated, "
                   f"{last['candidates'] - last['generated']} answered from the store, in {last['seconds']:.1f} s.")
        for note in last.get("notices", []):
            st.warning(note)
    progress_slot = st.empty()
    progress_slot_cancel = st.empty()
    if st.session_state.get("sweep_cancel"):  # pressing it reran the script, which stopped the sweep at the next token
        st.warning("Sweep cancelled: every finished chunk is stored; press Resume to go on.")

    # ---- Front ----
    x_name, y_name = axis_picker(values, "sweep")
    chart_slot = st.empty()
    st.caption("Cancel, or touching any control while a sweep runs, stops it at the next token; every finished "
               "chunk is kept, press Resume to go on.")


    def draw_front(n: int) -> None:
        """The method's stored candidates in z-score space (vs the base model), the front in red, this grid's ringed."""
        table = get_table(str(ws.root), table_version(ws), prompts_file)
        layers: list[Front | Mark] = []
        if not table.empty:
            cands = table[(table["method"] == method) & table["finite"]]
            mine = cands[cands["id"].isin(stored_ids())]
            layers = [Front(cands, hover_text(cands, values)),
                      Mark(mine, "in this grid", dict(symbol="circle-open", size=16, color="#333", line=dict(width=1.5)),
                           dict(hoverinfo="skip")),
                      Mark(CandidateTable.of(table, values).base().frame, "base model", dict(symbol="square", size=12,
                                                                                    color="#1f77b4"))]
        # A fresh key per redraw: the chart is replaced several times within one script run.
        chart_slot.plotly_chart(front_figure(x_name, y_name, layers, height=420), width="stretch", key=f"sweep_plot_{n}")


    draw_front(0)


    def draw_extra_scores() -> None:
        """The extra scorers' raw means for this grid's stored candidates."""
        table = get_table(str(ws.root), table_version(ws), prompts_file)
        cols = [f"s_{s}" for s in extras]
        if table.empty or not set(cols) <= set(table.columns):
            st.caption("Extra scores appear here once this grid's candidates are stored and scored.")
            return
        mine = table[(table["method"] == method) & table["id"].isin(stored_ids())]
        show = mine[["id", *[weight_column(v) for v in values], *[raw_column(v) for v in values], *cols]]
        st.dataframe(show.rename(columns={f"s_{s}": s for s in extras}), hide_index=True, width="stretch")


    if extras:
        st.subheader("Extra scores (raw mean over prompts)")
        draw_extra_scores()

    # ---- Sweep ----
    notices: list[str] = []


    def note(message: str) -> None:
        if message not in notices:  # each chunk's generate call may say the same
            notices.append(message)
            st.warning(message)

    if start:
        n_chunks = -(-len(grid) // chunk)
        bar = progress_slot.progress(0.0, text="Scoring the base model (the reference for z-scores)…")
        try:
            evaluate_base(ws, groups[0][0].base, prompts=prompts, extra_scorers=extras)
            t0 = time.monotonic()
            now = dict(done=0, chunk=1)  # candidates finished, chunk in flight
            bar.progress(0.0, text=f"0/{len(grid)} candidates · chunk 1 of {n_chunks}: generating…")
            progress_slot_cancel.button("Cancel (keeps every finished chunk)", key="sweep_cancel")

            def on_progress(stage: str, done: int, total: int) -> None:
                if stage != "candidates":  # a stage inside the current chunk: generate (tokens) / score
                    inside = done / max(total, 1) if stage == "generate" else 1.0
                    size = min(chunk, len(grid) - now["done"])
                    share = (now["done"] + inside * size) / len(grid)
                    what = f"token {done}/{total}" if stage == "generate" else f"{stage} {done}/{total}"
                    bar.progress(min(share, 1.0), text=f"{now['done']}/{len(grid)} candidates · chunk {now['chunk']} of "
                                                       f"{n_chunks}: {what} · {eta_text(t0, share)}")
                    return
                generated = len(stored_ids()) - stored
                bar.progress(done / total, text=f"{done}/{total} candidates · {generated} generated, "
                                                f"{max(done - generated, 0)} from the store · {eta_text(t0, done / total)}")
                now.update(done=done, chunk=now["chunk"] + 1)
                draw_front(now["chunk"])

            with notices_to(note):  # e.g. out of memory: the rows were halved and generation went on
                res = sweep_groups(method, groups, chunk=chunk, progress=on_progress, extra_scorers=extras,
                                   space=ws.space(kind, step, C) if has_grid else None)
        except MVAError as exc:  # a scorer that fails, …
            st.error(f"The sweep stopped: {exc}. Finished chunks are stored; press Resume to continue.")
            st.stop()
        st.session_state["sweep_last"] = dict(method=method, candidates=len(res.candidate_ids), generated=res.generated,
                                              seconds=time.monotonic() - t0, notices=notices)
        st.rerun()  # refresh the counts, the button label and the runs table

    # ---- Adaptive search ----
    st.subheader("Or search adaptively")
    if not compared[method].kind.searchable:
        st.caption(f"Adaptive search explores a weight box [0, C]^n; {method} has none.")
    else:
        st.caption(f"Instead of every point of the grid above (step {step:g}): its extremes (the base, each value alone "
                   "at C, all at C), then batches of the points where a surrogate (a Gaussian process per value on the "
                   "stored candidates) predicts the front's hypervolume grows most. Every candidate of the method "
                   "already stored counts for free; a stopped search resumes; a later sweep at this step reuses its "
                   "points.")
        c1, c2, c3 = st.columns(3)
        budget = int(c1.number_input("Budget (new evaluations)", 1, 2000, 25, key="search_budget"))
        search_batch = int(c2.number_input("Batch", 1, 64, 1, key="search_batch",
                                           help="Points chosen per surrogate fit and generated together; smaller "
                                                "batches follow the surrogate more closely, larger ones generate faster."))
        go_search = c3.button("Start search", key="search_start", type="primary")
        early_stop = st.checkbox(
            "Stop early when the rest of the budget is expected to add less hypervolume than the prompts' noise",
            value=False, key="search_early_stop",
            help="The expected gain of the remaining evaluations (the surrogate's, noise excluded) against the "
                 "bootstrap sd of the front's hypervolume over the prompts. Off: the whole budget is spent.")
        search_notices(ws, method)  # stopped after k of n (resume continues), or nothing to do
        search_slot, search_cancel_slot, history_slot = st.empty(), st.empty(), st.empty()

        def history_figure(hv: list[float], ref: np.ndarray, title: str) -> go.Figure:
            frame = pd.DataFrame({"evaluations": np.arange(1, len(hv) + 1), "hypervolume": hv})
            return px.line(frame, x="evaluations", y="hypervolume", markers=True, height=300,
                           title=f"{title} (ref {np.round(ref, 3).tolist()}, z units)")

        if go_search:
            t_search = time.monotonic()
            sbar = search_slot.progress(0.0, text="seed design…")
            # pressing it reruns the script, which stops the search at its next decoding step (every finished batch kept)
            search_cancel_slot.button("Cancel (keeps every finished evaluation)", key="search_cancel")

            def on_search(stage: str, done: int, total: int) -> None:
                if stage == "evaluations":
                    sbar.progress(min(done / max(total, 1), 1.0),
                                  text=f"{done}/{total} evaluations · {eta_text(t_search, done / max(total, 1))}")
                    draw_front(10_000 + done)
                    hv, ref = stored_history(ws, method)  # the curve grows as the batches are stored
                    if hv:
                        history_slot.plotly_chart(history_figure(hv, ref, f"Hypervolume of {method}'s candidates so far"),
                                                  width="stretch", key=f"search_live_{done}")
                elif stage == "generate":
                    sbar.progress(0.0 if total == 0 else min(done / total, 1.0), text=f"generating: token {done} of {total}")

            try:
                with notices_to(st.warning):
                    found, run_id = search_method(ws, method, budget, step=float(step), batch=search_batch, values=chosen,
                                                  progress=on_search, early_stop=early_stop)
                if run_id is None:
                    remember_nothing_new(method, found.nothing_new)
            except MVAError as exc:  # a scorer that fails, a bad step, …
                st.error(f"The search stopped: {exc}. What it evaluated is stored; press Start search to resume.")
                st.stop()
            st.rerun()
        searches = ws.store.runs()
        searches = searches[(searches["kind"] == "search") & (searches["method"] == method) & searches["log"].notna()]
        if not searches.empty:
            log = json.loads(searches["log"].iloc[-1])
            if log.get("stop_reason"):
                st.caption(f"Search run #{int(searches['id'].iloc[-1])} ended: {log['stop_reason']}"
                           + (f" ({log['saved']} evaluations of its budget left unspent)" if log.get("saved") else ""))
            if log.get("hv_history"):
                history_slot.plotly_chart(history_figure(log["hv_history"], np.asarray(log["ref"]),
                                                         f"Hypervolume history of search run #{int(searches['id'].iloc[-1])}"),
                                          width="stretch", key="search_history")

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
            prompts=runs["config"].map(lambda c: json.loads(c).get("n_prompts")),
            new_candidates=runs["id"].map(made).fillna(0).astype(int),
        )
        st.dataframe(runs[["id", "kind", "method", "status", "started", "seconds", "grid_points", "prompts", "new_candidates"]]
                     .sort_values("id", ascending=False), width="stretch", hide_index=True,
                     column_config={"new_candidates": st.column_config.NumberColumn(
                         "new candidates", help="Generated by this run; the rest of its grid came from the store.")})


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
