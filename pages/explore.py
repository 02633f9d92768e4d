"""Explore: drag one weight per value, evaluate the composed model live, see where it lands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mva_core.errors import MVAError
from mva_core.notices import notices_to
from mva_core.pareto import best_for_preference
from mva_core.export import export_candidate
from mva_core.metrics import reference_point, summarise, win_rates
from mva_core.results import single_vector_points
from mva_core.surrogate import MIN_CANDIDATES, fit_surrogate
from mva_core.table import raw_column, weight_column, z_column
from pages.choose_confidence import confidence_rings, front_probability, with_confidence
from pages.choose_elicit import elicit_panel
from pages.choose_pick import pick_box
from pages.explore_live import evaluate_live, once, partial_layer, stopped_notice
from pages.shared import (
    Front, Mark, axis_picker, current_workspace, forget_stale, front_figure, get_evaluator, get_table,
    get_candidates, get_workspace, hover_text, rank_text, table_columns, table_version,
)
from pages.explore_3d import all_values_section
from pages.explore_prediction import (
    kept_layers, kept_prediction, predict_at, prediction_mark, remember_prediction, stored_at, stored_mark,
    track_record_section,
)
from pages.explore_try import try_it

@st.cache_resource(show_spinner="Fitting the surrogate…", max_entries=16)
def get_surrogate(root: str, version: int, method: str):
    """One GP per value on the method's stored candidates (weights → z); refitted when the store changes."""
    cands = get_table(root, version)
    cands = cands[(cands["method"] == method) & cands["finite"]]
    values = get_workspace(root).value_names
    cols = [weight_column(v) for v in values]
    if len(cands) < MIN_CANDIDATES or not set(cols) <= set(cands.columns):
        return None
    return fit_surrogate(cands[cols].to_numpy(dtype=float), cands[[z_column(v) for v in values]].to_numpy(dtype=float),
                         cols)


def z_brush(cands: pd.DataFrame, values: list[str], method: str) -> dict[str, tuple[float, float]]:
    """One z range per value (the brush): candidates outside any range are greyed on every chart. Only the ranges
    narrower than the candidates' span are returned."""
    brush: dict[str, tuple[float, float]] = {}
    if cands.empty:
        return brush
    with st.expander("Brush: keep the candidates inside z ranges (filters the scatter, the 3-D front and the "
                     "parallel coordinates)"):
        for col, v in zip(st.columns(len(values)), values):
            lo = float(np.floor(cands[z_column(v)].min() * 100) / 100)
            hi = max(float(np.ceil(cands[z_column(v)].max() * 100) / 100), lo + 0.01)
            # keyed by the span too: new candidates widen it, and a stored range outside it would be refused
            chosen = col.slider(f"{v} (z)", lo, hi, (lo, hi), step=0.01, key=f"brush_{method}_{v}_{lo}_{hi}")
            if chosen != (lo, hi):
                brush[v] = (float(chosen[0]), float(chosen[1]))
    return brush


def render() -> None:
    """The Explore page: weight sliders, the live evaluation, the front with your point, the try-it box."""
    ws = current_workspace()
    if ws is None:
        st.stop()
    values = ws.value_names
    # Sliders compose one vector per value (weight grids over such a set), or set the preference p a conditioned
    # policy (MO-ODPO, MI-EPO) reads in its prompt.
    compositions = {m.name: m.kind for m in ws.compared_methods() if m.kind.continuous}
    methods = list(compositions)

    st.title("Explore the value trade-off")
    st.caption(
        f"Candidate model = base + Σ wᵢ·θᵢ (MVA Eq.15), each wᵢ in [0, {ws.manifest.C:g}]. Scores are mean rewards on "
        f"{len(ws.prompts())} validation prompts, z-normalised against the base model. "
        + (ws.manifest.description or "")
    )
    if not methods:
        st.warning(f"No value vectors in {ws.root}/vectors yet. Build the demo: `python -m mva_core demo build`.")
        st.stop()

    # ---- Controls ----
    with st.sidebar:
        forget_stale("explore_method", methods)
        method = st.selectbox("Method (vector set)", methods, key="explore_method",
                              format_func=lambda m: f"{m} (policy conditioned on p)" if compositions[m].preference_in_prompt else m)
        conditioned = compositions[method].preference_in_prompt
        if compositions[method].mixes_at_decoding:  # mod: no one model; each token from the n + 1 models' log-probs
            st.caption("Decode-time (MOD): each token from (1 − Σ wᵢ)·log p_base + Σ wᵢ·log pᵢ over the base and each "
                       f"value's model, {compositions[method].rows_per_token(len(values))} rows per token; not one model, "
                       "so not exportable as one.")
        if conditioned:
            st.caption("One policy; the sliders set the preference p written into its prompt (normalised to sum 1).")
            for v in values:  # initialised one way (session state), as the kept choices are written back that way
                st.session_state.setdefault(f"cp_{v}", 0.5)
            raw = [float(st.slider(f"p: {v}", 0.0, 1.0, step=0.05, key=f"cp_{v}")) for v in values]
            weights = [x / sum(raw) for x in raw] if sum(raw) > 0 else raw
        else:
            for v in values:
                st.session_state.setdefault(f"w_{v}", min(0.5, float(ws.manifest.C)))
            weights = [float(st.slider(f"weight: {v}", 0.0, float(ws.manifest.C), step=0.05, key=f"w_{v}"))
                       for v in values]
        evaluate = st.button("Evaluate", type="primary", width="stretch", key="explore_evaluate",
                             disabled=conditioned and sum(weights) == 0,
                             help="Set at least one p above 0." if conditioned and sum(weights) == 0 else None)

    # ---- Pick by preference ----
    with st.expander("Pick by preference p: the front candidate maximising p·z", expanded=True):
        pc = st.columns(len(values) + 1)
        for v in values:
            st.session_state.setdefault(f"p_{v}", 0.0)
        p_raw = [pc[i].number_input(f"p: {v}", min_value=0.0, step=0.1, key=f"p_{v}") for i, v in enumerate(values)]
        scope = pc[-1].radio("Among", ["this method", "all methods"], key="explore_pick_scope", horizontal=True)
    preference = np.asarray(p_raw) / sum(p_raw) if sum(p_raw) > 0 else None

    _before = get_table(str(ws.root), table_version(ws)) if evaluate else None
    if _before is not None and not _before.empty:  # what the surrogate says before the measurement, kept beside it
        remember_prediction(method, weights, predict_at(get_surrogate(str(ws.root), table_version(ws), method), values,
                                                        weights),
                            not stored_at(_before[_before["method"] == method], values, weights).empty)

    # ---- Evaluate ----
    if st.session_state.get("explore_cancel"):  # the click reran the script, which stopped generating at the next token
        stopped_notice(method, weights)
    if evaluate:
        label = "preference p" if conditioned else "weights"
        notes = st.container()  # outside the status box, which folds away when the evaluation is done
        with st.status(f"Evaluating {label} {dict(zip(values, np.round(weights, 3).tolist()))}…", expanded=True) as status:
            bar = st.progress(0.0, text="1/3 loading the model and value vectors…")
            st.button("Cancel", key="explore_cancel", help="Stops at the next token; the point so far stays on the chart, "
                                                           "marked partial; nothing of it is stored.")
            ev = get_evaluator(str(ws.root), method)
            try:  # any-time: the point after the first batch of prompts, tightening batch by batch (pages/explore_live.py)
                with notices_to(once(notes.warning)):  # e.g. out of memory: the rows were halved, generation went on
                    result = evaluate_live(ev, method, weights, bar, str(ws.root))
            except MVAError as exc:  # a scorer that fails, vectors that do not fit, …
                status.update(label="Evaluation failed", state="error")
                st.error(str(exc))
                st.stop()
            st.session_state["explore_candidate"] = result.candidate_id
            cached = "answered from the store" if not result.history else f"generated and scored in {result.elapsed_s:.1f} s"
            status.update(label=f"Candidate {result.candidate_id} {cached}", state="complete", expanded=False)

    try_it(ws, method, weights, conditioned)  # ---- Try it: a chat message at these weights (pages/explore_try.py) ----

    candidates = get_candidates(str(ws.root), table_version(ws))
    table = candidates.frame
    if table.empty:
        st.info("No candidates yet: press Evaluate or run a sweep.")
        st.stop()
    shown = candidates.for_methods([method]).frame
    zc = [z_column(v) for v in values]
    mine = st.session_state.get("explore_candidate")

    # ---- Metrics ----
    shared = st.toggle("Hypervolume from Compare's shared reference point", key="explore_shared_ref",
                       help="Off: the per-value minimum over this method's candidates and the base model. On: over every "
                            "method's candidates, the point the Compare page, `compare --json` and `demo report` use.")
    summary, ref = summarise(shown, values, reference_point(candidates) if shared else None)
    s = next((m for m in summary if m.method == method), None)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Candidates", 0 if s is None else s.candidates)
    c2.metric("Front size", 0 if s is None else s.front_size)
    c3.metric("Hypervolume", "—" if s is None else f"{s.hypervolume:.3f}")
    c4.metric("Excluded (non-finite)", 0 if s is None else s.excluded)
    st.caption(f"Hypervolume measured from the reference point {np.round(ref, 3).tolist()} (z units): the per-value "
               f"minimum over {'every method' if shared else 'this method'}'s candidates and the base model.")

    # ---- Plot ----
    x_name, y_name = axis_picker(values, "explore")
    cands = shown[(shown["method"] == method) & shown["finite"]]
    base = candidates.base().frame
    singles = single_vector_points(table, method, values)
    brush = z_brush(cands, values, method) if len(values) >= 3 else {}
    inside = np.ones(len(cands), dtype=bool)
    for v, (lo, hi) in brush.items():
        inside &= cands[z_column(v)].between(lo, hi).to_numpy()
    outside = cands[~inside]
    sure = front_probability(ws, cands)  # P(front) under prompt resampling (issue 29 item 1)
    layers = [Front(cands[inside], with_confidence(hover_text(cands[inside], values), sure[inside])),
              confidence_rings(cands[inside], sure[inside]),
              Mark(outside, "outside the brush", dict(color="#d5dbe1", size=7, opacity=0.6),
                   dict(hovertext=hover_text(outside, values), hoverinfo="text", customdata=outside["id"])),
              Mark(base, "base model", dict(symbol="square", size=12, color="#1f77b4"),
                   dict(hovertext=hover_text(base, values), hoverinfo="text")),
              Mark(singles, "single vectors", dict(symbol="diamond-open", size=16, color="#2ca02c", line=dict(width=2)),
                   dict(mode="markers+text", text=singles["label"].tolist(), textposition="top center",
                        customdata=singles["id"], hoverinfo="text",
                        hovertext=["each value's vector alone at weight 1<br>" + h for h in hover_text(singles, values)]))]
    # ---- Surrogate: where the sliders' point will land, before anything is generated ----
    model = get_surrogate(str(ws.root), table_version(ws), method)
    here = stored_at(cands, values, weights)  # a stored point at the sliders: shown, not predicted
    kept = kept_prediction(method, weights, here)  # the prediction made before it was measured, until sliders move
    predicted = predict_at(model, values, weights) if here.empty else None
    if predicted is not None:
        layers.append(prediction_mark(predicted, x_name, y_name, "predicted (surrogate)",
                                      "predicted at these weights (±1 sd), not generated"))
    if not here.empty and not (mine is not None and (here["id"] == mine).any()):  # else drawn as "your point"
        layers.append(stored_mark(here, values))
    if kept is not None:
        layers += kept_layers(kept, here, x_name, y_name)
    preferred = None
    pool = cands if scope == "this method" else candidates.without_base().frame.loc[lambda f: f["finite"]]
    if preference is not None and pool["on_front"].any():
        front_rows = pool[pool["on_front"]]
        best = front_rows.iloc[[best_for_preference(front_rows[zc].to_numpy(dtype=float), preference)]]
        preferred = best.iloc[0]
        layers.append(Mark(best, "preferred by p",
                           dict(symbol="circle-open", size=24, color="#9467bd", line=dict(width=3)), dict(hoverinfo="skip")))
    partial = partial_layer(method, weights, x_name, y_name)  # stopped early: shown, marked, on no front
    if partial is not None:
        layers.append(partial)
    if mine is not None and (table["id"] == mine).any():
        me = table[table["id"] == mine]
        layers.append(Mark(me, "your point", dict(symbol="star", size=20, color="#ff7f0e", line=dict(width=1, color="black")),
                           dict(hovertext=hover_text(me, values), hoverinfo="text")))
    layers += pick_box(ws, candidates, method, compositions[method], model)  # best X with Y at least y (issue 29)
    layers += elicit_panel(ws, cands, method, x_name, y_name, "cp_" if conditioned else "w_")  # which is better? (#29)
    event = st.plotly_chart(front_figure(x_name, y_name, layers), width="stretch", key="explore_plot", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    selected = sorted({int(p["customdata"][0] if isinstance(p.get("customdata"), list) else p["customdata"])
                       for p in (event.selection.points if event else []) if p.get("customdata") is not None})
    st.caption("Red rings: how sure a point is of the front, as opaque as the share of prompt resamples (1000, as on "
               "Compare) in which it is on this method's front; hover for the share.")
    st.caption("Click a point, or drag a box / lasso (chart toolbar), to open those candidates below"
               + (" and highlight them in the parallel coordinates." if len(values) >= 3 else "."))
    if kept is not None:
        st.caption(f"At the sliders: candidate #{kept['candidate']} as measured (filled star) beside what the surrogate "
                   "predicted there before measuring (open star, ±1 sd; dotted: the gap). Move a slider to predict anew.")
    elif not here.empty:
        st.caption(f"At the sliders: stored candidate #{int(here['id'].iloc[-1])} (filled star), measured, not predicted.")
    track_record_section(table, values)
    if model is not None:
        st.caption(f"Open star: the surrogate's prediction at the sliders' weights (a Gaussian process per value fitted on "
                   f"this method's {model.n_candidates} stored candidates; bars ±1 sd), shown before anything is generated; "
                   "Evaluate measures it. Leave-one-out error: "
                   + " · ".join(f"{v} {e:.3f} z" for v, e in zip(values, model.loo_mae)) + ".")
    if preferred is not None:
        pid, pmethod = int(preferred["id"]), str(preferred["method"])
        st.info(f"Preference p = {np.round(preference, 3).tolist()}: the front candidate maximising p·z is "
                f"#{pid}, weights {np.round(preferred['weights'], 3).tolist()} ({pmethod}, p·z = "
                f"{float(preferred[zc].to_numpy(dtype=float) @ preference):.3f}).")

        def open_preferred() -> None:
            st.session_state["explore_method"] = pmethod if pmethod in methods else method
            st.session_state["explore_detail"] = pid

        def load_preferred() -> None:
            open_preferred()
            slider = "cp_" if compositions[st.session_state["explore_method"]].preference_in_prompt else "w_"
            for v in values:
                st.session_state[f"{slider}{v}"] = float(np.clip(preferred.get(weight_column(v), 0.0), 0.0, ws.manifest.C))

        b1, b2, b3 = st.columns(3)
        b1.button("Open its details", key="explore_pick_open", on_click=open_preferred, width="stretch")
        b2.button("Load its weights into the sliders", key="explore_pick_load", on_click=load_preferred,
                  width="stretch", disabled=pmethod not in methods)
        if b3.button("Export it (merged model)", key="explore_pick_export", width="stretch"):
            with st.spinner("Merging, writing safetensors, reloading to verify…"):
                path = export_candidate(ws, pid, "merged", ws.inside("exports", f"candidate-{pid}-merged"), force=True)
            st.success(f"Exported to {path}.")

    # ---- Three or more values: the 3-D front and parallel coordinates, linked to the brush and the selection ----
    if len(values) >= 3:
        all_values_section(cands, inside, base, values, predicted, table[table["id"] == mine] if mine is not None else None,
                           brush, selected, None if kept is None else kept["predicted"], here)

    # ---- Selected candidates ----
    def candidate_wins(cid: int) -> dict[str, float] | None:
        """Per value, the share of prompts on which candidate `cid` beats the base model (None without a base)."""
        if base.empty:
            return None
        row = win_rates(ws, [cid], int(base["id"].iloc[-1])).iloc[0]
        return {v: float(row[f"win_{v}"]) for v in values}



    ids = cands["id"].astype(int).tolist()
    pick = st.selectbox("Candidate details", [None, *ids], key="explore_detail",
                        format_func=lambda i: "choose a candidate (or select points on the chart)" if i is None
                        else f"#{i} · weights {np.round(cands.loc[cands['id'] == i, 'weights'].iloc[0], 3).tolist()}")
    detail = [c for c in (selected or ([pick] if pick is not None else [])) if c in ids]
    if len(detail) > 1:  # several selected: one compact row each, the full detail folded below
        st.markdown(f"**{len(detail)} candidates selected**")
        rows = cands[cands["id"].isin(detail)].sort_values("id")
        st.dataframe(rows[["id", *[weight_column(v) for v in values if weight_column(v) in rows], *[raw_column(v) for v in values], *zc,
                           "rank", "on_front"]], hide_index=True, width="stretch", column_config=table_columns(values))
    for cid in detail:
        r = cands[cands["id"] == cid].iloc[0]
        with st.expander(f"Candidate #{cid} · weights {np.round(r['weights'], 3).tolist()} · "
                         f"{rank_text(r['rank'])}", expanded=len(detail) == 1):
            cols = st.columns(len(values))
            wins = candidate_wins(cid)
            for col, v in zip(cols, values):
                col.metric(v, f"{r[raw_column(v)]:.3f}", f"{r[z_column(v)]:+.2f} z vs base",
                           help=None if wins is None else f"beats the base model on {wins[v]:.0%} of the prompts "
                                                          "(same prompt, ties count half)")
            if wins is not None:
                st.caption("Win rate vs the base model, per prompt: " + " · ".join(f"{v} {wins[v]:.0%}" for v in values))
            st.dataframe(ws.store.responses([cid]).drop(columns=["candidate_id", "prompt_idx"]), width="stretch",
                         hide_index=True)

    # ---- Your candidate ----
    if mine is not None and (table["id"] == mine).any():
        row = table[table["id"] == mine].iloc[0]
        st.subheader(f"Your candidate #{mine}")
        cols = st.columns(len(values) + 1)
        for col, v in zip(cols, values):
            col.metric(v, f"{row[raw_column(v)]:.3f}", f"{row[z_column(v)]:+.2f} z vs base")
        cols[-1].metric("Dominance layer (0 = front)", rank_text(row["rank"]))
        resp = ws.store.responses([int(mine)])
        st.dataframe(resp.drop(columns=["candidate_id", "prompt_idx"]), width="stretch", hide_index=True)
        if st.button("Export merged model", key="explore_export"):
            out = ws.inside("exports", f"candidate-{int(mine)}-merged")
            with st.spinner("Merging, writing safetensors, reloading to verify…"):
                try:
                    path = export_candidate(ws, int(mine), "merged", out, force=True)
                    st.success(f"Exported to {path} (loads with AutoModelForCausalLM.from_pretrained).")
                except MVAError as exc:
                    st.error(str(exc))


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
