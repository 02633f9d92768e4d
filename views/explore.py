"""Explore: drag one weight per value, evaluate the composed model live, see where it lands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mva_core.export import ExportError
from mva_core.pareto import best_for_preference
from mva_core.results import export_candidate, summarise
from mva_core.sweep import BASE_METHOD
from views.shared import current_workspace, get_evaluator, get_table, table_version

ws = current_workspace()
if ws is None:
    st.stop()
values = ws.value_names
# Sliders compose one vector per value (weight grids over such a set), or set the preference p a conditioned
# policy (MO-ODPO, MI-EPO) reads in its prompt.
compositions = {m.name: m.kind for m in ws.compared_methods() if m.kind.has_grid or m.kind.conditioned}
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
    if st.session_state.get("explore_method") not in methods:  # e.g. after switching workspace
        st.session_state.pop("explore_method", None)
    method = st.selectbox("Method (vector set)", methods, key="explore_method",
                          format_func=lambda m: f"{m} (policy conditioned on p)" if compositions[m].conditioned else m)
    conditioned = compositions[method].conditioned
    if conditioned:
        st.caption("One policy; the sliders set the preference p written into its prompt (normalised to sum 1).")
        raw = [float(st.slider(f"p: {v}", 0.0, 1.0, value=0.5, step=0.05, key=f"cp_{v}")) for v in values]
        weights = [x / sum(raw) for x in raw] if sum(raw) > 0 else raw
    else:
        weights = [float(st.slider(f"weight: {v}", 0.0, float(ws.manifest.C), value=min(0.5, ws.manifest.C),
                                   step=0.05, key=f"w_{v}")) for v in values]
    evaluate = st.button("Evaluate", type="primary", width="stretch", key="explore_evaluate",
                         disabled=conditioned and sum(weights) == 0,
                         help="Set at least one p above 0." if conditioned and sum(weights) == 0 else None)
    with st.expander("Preference p (highlight the front candidate maximising p·z)"):
        p_raw = [st.number_input(f"p: {v}", min_value=0.0, value=0.0, step=0.1, key=f"p_{v}") for v in values]
preference = np.asarray(p_raw) / sum(p_raw) if sum(p_raw) > 0 else None

# ---- Evaluate ----
if evaluate:
    label = "preference p" if conditioned else "weights"
    with st.status(f"Evaluating {label} {dict(zip(values, np.round(weights, 3).tolist()))}…", expanded=True) as status:
        bar = st.progress(0.0, text="loading model")
        ev = get_evaluator(str(ws.root), method)

        def on_progress(stage: str, done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"{stage}: {done}/{total}")

        try:
            result = ev.evaluate([weights], source="live", progress=on_progress)
        except ValueError as exc:
            status.update(label="Evaluation failed", state="error")
            st.error(str(exc))
            st.stop()
        st.session_state["explore_candidate"] = result.candidate_ids[0]
        cached = "answered from the store" if result.generated == 0 else "generated and scored"
        status.update(label=f"Candidate {result.candidate_ids[0]} {cached}", state="complete", expanded=False)

table = get_table(str(ws.root), table_version(ws))
if table.empty:
    st.info("No candidates yet: press Evaluate or run a sweep.")
    st.stop()
shown = table[table["method"].isin([method, BASE_METHOD])]
zc = [f"z_{v}" for v in values]
mine = st.session_state.get("explore_candidate")

# ---- Metrics ----
summary, ref = summarise(shown, values)
s = next((m for m in summary if m.method == method), None)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Candidates", 0 if s is None else s.candidates)
c2.metric("Front size", 0 if s is None else s.front_size)
c3.metric("Hypervolume", "—" if s is None else f"{s.hypervolume:.3f}")
c4.metric("Excluded (non-finite)", 0 if s is None else s.excluded)
st.caption(f"Reference point (per-value minimum over all shown candidates): {np.round(ref, 3).tolist()}")

# ---- Plot ----
x_name, y_name = (values + values)[:2] if len(values) < 2 else values[:2]
if len(values) > 2:
    x_name = st.selectbox("x axis", values, index=0, key="explore_x")
    y_name = st.selectbox("y axis", values, index=1, key="explore_y")


def hover(df) -> list[str]:
    return [
        f"candidate {r.id}<br>" + "<br>".join(f"w_{v} = {r[f'w_{v}']:.2f}" for v in values if f"w_{v}" in r and r[f'w_{v}'] == r[f'w_{v}'])
        + "<br>" + "<br>".join(f"{v}: z={r[f'z_{v}']:.2f} raw={r[f'raw_{v}']:.3f}" for v in values)
        + f"<br>rank {int(r['rank']) if r['rank'] == r['rank'] else '—'}"
        for _, r in df.iterrows()
    ]


fig = go.Figure()
cands = shown[(shown["method"] == method) & shown["finite"]]
for on_front, name, style in [(False, "dominated", dict(color="#9aa5b1", size=8)),
                              (True, "Pareto front", dict(color="#d62728", size=11))]:
    part = cands[cands["on_front"] == on_front]
    fig.add_trace(go.Scatter(x=part[f"z_{x_name}"], y=part[f"z_{y_name}"], mode="markers", name=name,
                             marker=style, hovertext=hover(part), hoverinfo="text", customdata=part["id"]))
front = cands[cands["on_front"]].sort_values(f"z_{x_name}")
fig.add_trace(go.Scatter(x=front[f"z_{x_name}"], y=front[f"z_{y_name}"], mode="lines", name="front line",
                         line=dict(color="#d62728", dash="dot"), hoverinfo="skip"))
base = shown[shown["method"] == BASE_METHOD]
fig.add_trace(go.Scatter(x=base[f"z_{x_name}"], y=base[f"z_{y_name}"], mode="markers", name="base model",
                         marker=dict(symbol="square", size=12, color="#1f77b4"), hovertext=hover(base), hoverinfo="text"))
# Each value's vector alone at weight 1 (paper Fig.5): where one vector takes the model on its own. The method's
# own one-hot candidates; for a value without one, the workspace's "dpo-<value>" row.
onehot = cands[cands["weights"].map(lambda w: len(w) == len(values) and sorted(w) == [0.0] * (len(w) - 1) + [1.0])]
onehot = onehot.assign(label=[values[int(np.argmax(w))] for w in onehot["weights"]])
missing = [v for v in values if v not in set(onehot["label"])]
dpo = table[table["method"].isin([f"dpo-{v}" for v in missing]) & table["finite"]]
singles = pd.concat([onehot, dpo.assign(label=dpo["method"])], ignore_index=True)
fig.add_trace(go.Scatter(x=singles[f"z_{x_name}"], y=singles[f"z_{y_name}"], mode="markers+text", name="single vectors",
                         text=singles["label"].tolist(), textposition="top center", customdata=singles["id"],
                         marker=dict(symbol="diamond-open", size=16, color="#2ca02c", line=dict(width=2)),
                         hovertext=["each value's vector alone at weight 1<br>" + h for h in hover(singles)],
                         hoverinfo="text"))
preferred = None
if preference is not None and cands["on_front"].any():
    front_rows = cands[cands["on_front"]]
    preferred = front_rows.iloc[best_for_preference(front_rows[zc].to_numpy(dtype=float), preference)]
    fig.add_trace(go.Scatter(x=[preferred[f"z_{x_name}"]], y=[preferred[f"z_{y_name}"]], mode="markers",
                             name="preferred by p", hoverinfo="skip",
                             marker=dict(symbol="circle-open", size=24, color="#9467bd", line=dict(width=3))))
if mine is not None and (table["id"] == mine).any():
    me = table[table["id"] == mine]
    fig.add_trace(go.Scatter(x=me[f"z_{x_name}"], y=me[f"z_{y_name}"], mode="markers", name="your point",
                             marker=dict(symbol="star", size=20, color="#ff7f0e", line=dict(width=1, color="black")),
                             hovertext=hover(me), hoverinfo="text"))
fig.update_layout(xaxis_title=f"{x_name} (z vs base)", yaxis_title=f"{y_name} (z vs base)", height=560,
                  legend=dict(orientation="h", x=0, y=-0.15, yanchor="top"), margin=dict(l=10, r=10, t=30, b=10))
event = st.plotly_chart(fig, width="stretch", key="explore_plot", on_select="rerun",
                        selection_mode=("points", "box", "lasso"))
st.caption("Click a point, or drag a box / lasso (chart toolbar), to open those candidates below.")
if preferred is not None:
    st.info(f"Preference p = {np.round(preference, 3).tolist()}: the front candidate maximising p·z is "
            f"#{int(preferred['id'])}, weights {np.round(preferred['weights'], 3).tolist()}.")

# ---- Three or more values ----
if len(values) >= 3:
    st.subheader("All values at once")
    axes = st.multiselect("3-D axes", values, default=values[:3], max_selections=3, key="explore_axes3d")
    if len(axes) == 3:
        fig3 = go.Figure()
        for on_front, name, color in [(False, "dominated", "#9aa5b1"), (True, "Pareto front", "#d62728")]:
            part = cands[cands["on_front"] == on_front]
            fig3.add_trace(go.Scatter3d(x=part[f"z_{axes[0]}"], y=part[f"z_{axes[1]}"], z=part[f"z_{axes[2]}"],
                                        mode="markers", name=name, marker=dict(color=color, size=4 if not on_front else 6),
                                        hovertext=hover(part), hoverinfo="text"))
        fig3.add_trace(go.Scatter3d(x=base[f"z_{axes[0]}"], y=base[f"z_{axes[1]}"], z=base[f"z_{axes[2]}"],
                                    mode="markers", name="base model", marker=dict(symbol="square", size=6, color="#1f77b4")))
        fig3.update_layout(height=520, margin=dict(l=0, r=0, t=10, b=0), scene=dict(
            xaxis_title=f"{axes[0]} (z)", yaxis_title=f"{axes[1]} (z)", zaxis_title=f"{axes[2]} (z)"))
        st.plotly_chart(fig3, width="stretch", key="explore_3d")
    # one line per candidate across every value's z-score; front candidates in red
    dims = [dict(label=f"{v} (z)", values=cands[f"z_{v}"]) for v in values]
    st.plotly_chart(go.Figure(go.Parcoords(
        line=dict(color=cands["on_front"].astype(int), colorscale=[[0, "#c5ccd3"], [1, "#d62728"]]),
        dimensions=dims)).update_layout(height=380, margin=dict(l=40, r=40, t=40, b=10)),
        width="stretch", key="explore_parcoords")
    st.caption("Parallel coordinates: one line per candidate through its z-score on every value; red = on the front. "
               "Drag along an axis to filter.")

# ---- Selected candidates ----
selected = sorted({int(p["customdata"][0] if isinstance(p.get("customdata"), list) else p["customdata"])
                   for p in (event.selection.points if event else []) if p.get("customdata") is not None})
ids = cands["id"].astype(int).tolist()
pick = st.selectbox("Candidate details", [None, *ids], key="explore_detail",
                    format_func=lambda i: "choose a candidate (or select points on the chart)" if i is None
                    else f"#{i} · weights {np.round(cands.loc[cands['id'] == i, 'weights'].iloc[0], 3).tolist()}")
detail = [c for c in (selected or ([pick] if pick is not None else [])) if c in ids]
if len(detail) > 1:  # several selected: one compact row each, the full detail folded below
    st.markdown(f"**{len(detail)} candidates selected**")
    rows = cands[cands["id"].isin(detail)].sort_values("id")
    st.dataframe(rows[["id", *[f"w_{v}" for v in values if f"w_{v}" in rows], *[f"raw_{v}" for v in values], *zc,
                       "rank", "on_front"]], hide_index=True, width="stretch")
for cid in detail:
    r = cands[cands["id"] == cid].iloc[0]
    with st.expander(f"Candidate #{cid} · weights {np.round(r['weights'], 3).tolist()} · "
                     f"rank {'—' if r['rank'] != r['rank'] else int(r['rank'])}", expanded=len(detail) == 1):
        cols = st.columns(len(values))
        for col, v in zip(cols, values):
            col.metric(v, f"{r[f'raw_{v}']:.3f}", f"{r[f'z_{v}']:+.2f} z vs base")
        st.dataframe(ws.store.responses([cid]).drop(columns=["candidate_id", "prompt_idx"]), width="stretch",
                     hide_index=True)

# ---- Your candidate ----
if mine is not None and (table["id"] == mine).any():
    row = table[table["id"] == mine].iloc[0]
    st.subheader(f"Your candidate #{mine}")
    cols = st.columns(len(values) + 1)
    for col, v in zip(cols, values):
        col.metric(v, f"{row[f'raw_{v}']:.3f}", f"{row[f'z_{v}']:+.2f} z vs base")
    cols[-1].metric("Front rank", "—" if row["rank"] != row["rank"] else int(row["rank"]))
    resp = ws.store.responses([int(mine)])
    st.dataframe(resp.drop(columns=["candidate_id", "prompt_idx"]), width="stretch", hide_index=True)
    if st.button("Export merged model", key="explore_export"):
        out = ws.inside("exports", f"candidate-{int(mine)}-merged")
        with st.spinner("Merging, writing safetensors, reloading to verify…"):
            try:
                path = export_candidate(ws, int(mine), "merged", out, force=True)
                st.success(f"Exported to {path} (loads with AutoModelForCausalLM.from_pretrained).")
            except (ExportError, ValueError) as exc:
                st.error(str(exc))
