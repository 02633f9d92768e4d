"""Compare methods: their fronts on one chart, hypervolume / MIP with one shared reference point, per-value bests."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from mva_core.results import best_per_value, compare_table
from mva_core.sweep import BASE_METHOD
from views.shared import current_workspace, get_table, get_workspace, table_version

ws = current_workspace()
if ws is None:
    st.stop()
values = ws.value_names
table = get_table(str(ws.root), table_version(ws))

st.title("Compare methods")
st.caption(
    "Each method's candidates, z-scored against the base model on the same prompts. A method's front = its "
    "candidates no other candidate of the same method dominates (MVA Eq.20). Hypervolume is measured from ONE "
    "reference point shared by every method, so the numbers compare; MIP (MI-EPO) is the mean, over the "
    "evaluation preference vectors p, of p·z of the front candidate a user with preference p would pick."
)
# ---- Other workspaces ----
others = st.text_area("Other workspaces to compare (one path per line)", key="compare_other_ws",
                      help="Workspaces with the same values; their methods appear as '<method> @ <folder>'. "
                           "z-scores stay per workspace, each against its own base model.")
loaded = []  # (label suffix, workspace, table) of every workspace compared; the current one first
for line in [ln.strip() for ln in others.splitlines() if ln.strip()]:
    try:
        other = get_workspace(line)
    except ValueError as exc:
        st.error(f"{line}: {exc}")
        continue
    if other.root.resolve() == ws.root.resolve() or any(o.root.resolve() == other.root.resolve() for _, o, _ in loaded):
        continue
    if other.value_names != values:
        st.error(f"{line} measures {other.value_names}, this workspace {values}; compare workspaces with the same values")
        continue
    loaded.append(("", other, get_table(str(other.root), table_version(other))))
if loaded:
    loaded.insert(0, ("", ws, table))
    names = [w.root.name for _, w, _ in loaded]
    loaded = [(f" @ {n}" if names.count(n) == 1 else f" @ {n} ({i + 1})", w, t)
              for i, ((_, w, t), n) in enumerate(zip(loaded, names))]
    st.caption("Rows are named '<method> @ <workspace folder>'. z-scores are per workspace, each against its own "
               "base model on its own prompts: compare across workspaces only if they share base model and prompts.")
else:
    loaded = [("", ws, table)]
order, composition, parts = [], {}, []
for suffix, w, t in loaded:
    for m in w.compared_methods():
        order.append(m.name + suffix)
        composition[m.name + suffix] = m.kind
    parts.append(t.assign(method=t["method"] + suffix) if suffix and not t.empty else t)
table = pd.concat(parts, ignore_index=True)
base_methods = {BASE_METHOD + suffix for suffix, _, _ in loaded}
if table.empty or set(table["method"]) <= base_methods:
    st.info("No candidates yet: run a sweep (Sweep page or `python -m mva_core sweep --method mva`).")
    st.stop()

# ---- Methods ----
present = [m for m in order if m in set(table["method"])] + sorted(set(table["method"]) - set(order) - base_methods)
if "compare_methods" not in st.session_state or st.session_state.get("compare_present") != present:
    st.session_state["compare_present"] = present  # a workspace was added or removed: show all again
    st.session_state["compare_methods"] = present
else:  # e.g. after switching workspace: drop names this workspace lacks
    st.session_state["compare_methods"] = [m for m in st.session_state["compare_methods"] if m in present]
chosen = st.multiselect("Methods", present, key="compare_methods")
if not chosen:
    st.info("Choose at least one method.")
    st.stop()
shown = table[table["method"].isin(chosen)]
# the base models join the comparison's reference point (DESIGN "Metrics": minimum over all candidates) but are
# not a method of their own
bases = table[table["method"].isin(base_methods)]
compared = pd.concat([shown, bases.assign(method=BASE_METHOD)], ignore_index=True)

# ---- Reference point ----
default_ref = compare_table(compared, values)[1]
st.markdown("**Reference point** (z units; default: each value's minimum over all compared candidates and the "
            "base model). Every method's hypervolume is measured from this one point.")
ref_cols = st.columns(len(values))
ref = np.array([c.number_input(v, value=float(round(default_ref[i], 4)), step=0.05, format="%.4f",
                               key=f"compare_ref_{v}_{zlib.crc32(','.join(sorted(chosen)).encode())}")
                for i, (c, v) in enumerate(zip(ref_cols, values))])
result, ref = compare_table(compared, values, ref)
result = result.sort_values("method", key=lambda m: m.map(chosen.index), ignore_index=True)  # the chart's order
result.insert(result.columns.get_loc("MIP") + 1, "CRD", "—")

# ---- Fronts ----
x_name, y_name = (values * 2)[:2]
if len(values) > 2:
    a1, a2 = st.columns(2)
    x_name = a1.selectbox("x axis", values, index=0, key="compare_x")
    y_name = a2.selectbox("y axis", values, index=1, key="compare_y")
fig = go.Figure()
palette = px.colors.qualitative.D3
symbols = iter(["diamond", "triangle-up", "star", "pentagon", "hexagram", "triangle-down", "cross", "star-square"])
for i, method in enumerate(chosen):
    part = shown[(shown["method"] == method) & shown["finite"]]
    color = palette[i % len(palette)]
    front = part[part["on_front"]].sort_values(f"z_{x_name}")
    hover = [f"{method} · candidate {r.id}<br>weights {np.round(r.weights, 3).tolist()}<br>"
             + "<br>".join(f"{v}: z={getattr(r, f'z_{v}'):.2f} raw={getattr(r, f'raw_{v}'):.3f}" for v in values)
             + f"<br>rank {r.rank:.0f}" for r in part.itertuples()]
    kind = composition.get(method)  # None for candidates of old vectors
    if kind is not None and kind.conditioned:  # one policy steered by p: its runs in order of p, dashed
        steer = part.sort_values(f"w_{values[0]}")
        hover = [f"{method} · candidate {r.id}<br>p in the prompt "
                 + ", ".join(f"{v}={getattr(r, f'w_{v}'):.2f}" for v in values) + "<br>"
                 + "<br>".join(f"{v}: z={getattr(r, f'z_{v}'):.2f} raw={getattr(r, f'raw_{v}'):.3f}" for v in values)
                 for r in steer.itertuples()]
        fig.add_trace(go.Scatter(x=steer[f"z_{x_name}"], y=steer[f"z_{y_name}"], mode="lines+markers",
                                 name=f"{method} (p = 0→1 on {values[0]})", hovertext=hover, hoverinfo="text",
                                 line=dict(color=color, width=2, dash="dash"),
                                 marker=dict(color=color, size=9, symbol="circle-open", line=dict(width=2))))
        continue
    if kind is not None and kind.single_models:  # one model per point: markers only, a symbol of their own
        fig.add_trace(go.Scatter(x=part[f"z_{x_name}"], y=part[f"z_{y_name}"], mode="markers", name=method,
                                 marker=dict(color=color, size=14, symbol=next(symbols, "diamond"),
                                             line=dict(width=1, color="#222")),
                                 hovertext=hover, hoverinfo="text"))
        continue
    fig.add_trace(go.Scatter(x=part[f"z_{x_name}"], y=part[f"z_{y_name}"], mode="markers", name=f"{method} (all)",
                             marker=dict(color=color, size=6, opacity=0.35), hovertext=hover, hoverinfo="text",
                             legendgroup=method, showlegend=False))
    fig.add_trace(go.Scatter(x=front[f"z_{x_name}"], y=front[f"z_{y_name}"], mode="lines+markers", name=method,
                             line=dict(color=color, width=2, shape="hv" if len(values) == 2 else "linear"),
                             marker=dict(color=color, size=10), legendgroup=method, hoverinfo="skip"))
for j, (label, part) in enumerate(bases.groupby("method", sort=False)):
    fig.add_trace(go.Scatter(x=part[f"z_{x_name}"], y=part[f"z_{y_name}"], mode="markers",
                             name="base model" if len(bases["method"].unique()) == 1 else label.replace(BASE_METHOD, "base model", 1),
                             marker=dict(symbol=["square", "square-open", "square-x", "square-cross"][j % 4], size=12,
                                         color="#444", line=dict(width=2, color="#444"))))
fig.add_trace(go.Scatter(x=[ref[values.index(x_name)]], y=[ref[values.index(y_name)]], mode="markers",
                         name="reference point", marker=dict(symbol="x", size=12, color="#888")))
fig.update_layout(xaxis_title=f"{x_name} (z vs base)", yaxis_title=f"{y_name} (z vs base)", height=540,
                  legend=dict(orientation="h", x=0, y=-0.15, yanchor="top"), margin=dict(l=10, r=10, t=30, b=10))
st.plotly_chart(fig, width="stretch", key="compare_plot")
st.caption("Lines: the front of a grid method (its non-dominated candidates); faint dots: its other candidates. "
           "Large symbols: methods that are one model per point (dpo-<value>, dpo-seqt, dpo-lw, …). Dashed: one "
           "preference-conditioned policy (mo-odpo, mi-epo) run with each evaluation preference p in its prompt, in "
           "order of p; a policy that follows p sweeps across the trade-off.")

# ---- Table ----
st.subheader("Metrics")
st.dataframe(result, width="stretch", hide_index=True, column_config={
    "front size": st.column_config.NumberColumn(help="Candidates of the method no other candidate of the same "
                                                "method dominates (MVA Eq.20)."),
    "hypervolume": st.column_config.NumberColumn(format="%.4f", help="Volume dominated by the method's front above "
                                                 "the shared reference point (pymoo HV); larger is better."),
    "MIP": st.column_config.NumberColumn(format="%.4f", help="Mean over the evaluation preference vectors p of p·z "
                                         "of the front candidate maximising p·z (MI-EPO)."),
    "CRD": st.column_config.TextColumn(help="CRD (MI-EPO) = mean det Cov of the rewards of several sampled responses "
                                       "per preference. The store keeps one greedy response per candidate and prompt, "
                                       "so there are no per-sample rewards to measure it: not shown."),
    **{f"best {v}": st.column_config.NumberColumn(format="%.3f", help=f"The method's highest z-score on {v}.")
       for v in values},
})
st.caption("CRD: — because it needs several sampled responses per preference (MI-EPO); the sweeps here decode "
           "greedily and store one response per candidate and prompt.")
csv = result.assign(**{f"ref {v}": ref[i] for i, v in enumerate(values)}).to_csv(index=False)
st.download_button("Download table (CSV)", csv, file_name="compare.csv", mime="text/csv", key="compare_csv")

# ---- Per-value bests (paper Fig.4) ----
st.subheader("Each method's best candidate per value")
bars = best_per_value(shown, values)
st.plotly_chart(px.bar(bars, x="value", y="z", color="method", barmode="group", height=360,
                       hover_data={"candidate": True}, category_orders={"value": values, "method": chosen},
                       color_discrete_sequence=palette, labels={"z": "best z-score (vs base)"}),
                width="stretch", key="compare_bars")
st.caption("For each value, the highest z-score any candidate of the method reaches (possibly a different "
           "candidate per value; hover for its id): how far a method can push each value.")
