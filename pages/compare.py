"""Compare methods: their fronts on one chart, hypervolume / MIP with one shared reference point, per-value bests."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import streamlit as st

from mva_core.errors import MVAError
from mva_core.pareto import preference_vectors
from mva_core.metrics import (
    best_per_value, compare_table, compare_with_intervals, crd_by_method, follows_p_by_method, generation_cost,
    reference_point, win_rates_at,
)
from mva_core.results import merge_workspace_tables
from mva_core.table import CandidateTable, weight_column, z_column
from pages.choose_compare import attainment_layers, confidence_section
from pages.compare_design import explored_mark, get_design_table, include_explored_toggle
from pages.shared import (
    Front, Mark, axis_picker, current_workspace, front_figure, get_workspace, hover_text, open_allowed,
    table_version,
)

@st.cache_data(show_spinner="Bootstrapping over the prompts…")
def get_intervals(root: str, version: int, methods: tuple[str, ...], ref: tuple[float, ...], include: bool):
    ws_ = get_workspace(root)
    return compare_with_intervals(ws_, get_design_table(root, version, include), list(methods),
                                  np.asarray(ref)) if methods else None


@st.cache_data(show_spinner=False)
def get_crd(root: str, version: int, methods: tuple[str, ...], include: bool):
    return crd_by_method(get_workspace(root), get_design_table(root, version, include), list(methods))


@st.cache_data(show_spinner=False)
def get_follows_p(root: str, version: int, methods: tuple[str, ...], include: bool):
    return follows_p_by_method(get_workspace(root), get_design_table(root, version, include), list(methods))


@st.cache_data(show_spinner=False)
def get_cost(root: str, version: int, methods: tuple[str, ...]):
    return generation_cost(get_workspace(root), list(methods))


@st.cache_data(show_spinner=False)
def get_win_rates(root: str, version: int, methods: tuple[str, ...], p: tuple[float, ...],
                  include: bool) -> pd.DataFrame:
    return win_rates_at(get_workspace(root), get_design_table(root, version, include), list(methods), p)


def forest_figure(boot, order: list[str]) -> go.Figure:
    """One row per method: HV and MIP, each a marker at its estimate on a segment from low to high (a BCa interval
    need not hold its estimate, so the segment is drawn from its ends, not as error bars around the marker)."""
    names = [m for m in order if m in boot.methods][::-1]  # first chosen at the top
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=("hypervolume", "MIP"))
    for col, metric in ((1, "hv"), (2, "mip")):
        iv = [getattr(boot.methods[m], metric) for m in names]
        fig.add_trace(go.Scatter(x=[x for i in iv for x in (i.low, i.high, None)],
                                 y=[y for m in names for y in (m, m, None)], mode="lines", showlegend=False,
                                 line=dict(color="#1f77b4", width=2), hoverinfo="skip"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[i.estimate for i in iv], y=names, mode="markers", showlegend=False,
                                 marker=dict(size=9, color="#1f77b4"),
                                 customdata=[[i.low, i.high, i.method] for i in iv],
                                 hovertemplate="%{y}: %{x:.4f} [%{customdata[0]:.4f}, %{customdata[1]:.4f}] "
                                               "(%{customdata[2]})<extra></extra>"), row=1, col=col)
    fig.update_layout(height=60 + 34 * len(names), margin=dict(l=10, r=10, t=30, b=10))
    return fig


def render() -> None:
    """The Compare page: methods' fronts on one chart and their metrics with one shared reference point."""
    ws = current_workspace()
    if ws is None:
        st.stop()
    values = ws.value_names

    st.title("Compare methods")
    st.caption(
        "Each method's candidates, z-scored against the base model on the same prompts. A method's front = its "
        "candidates no other candidate of the same method dominates (MVA Eq.20). Hypervolume is measured from ONE "
        "reference point shared by every method, so the numbers compare; MIP (MI-EPO) is the mean, over the "
        "evaluation preference vectors p, of p·z of the front candidate a user with preference p would pick."
    )
    # each method on its sweep design: points evaluated on Explore only if included (pages/compare_design.py)
    include = include_explored_toggle(ws, table_version(ws))
    table = get_design_table(str(ws.root), table_version(ws), include)
    # ---- Other workspaces ----
    others = st.text_area("Other workspaces to compare (one path per line)", key="compare_other_ws",
                          help="Workspaces with the same values; their methods appear as '<method> @ <folder>'. "
                               "z-scores stay per workspace, each against its own base model.")
    loaded = [(ws, table)]  # (workspace, table) of every workspace compared; the current one first
    for line in [ln.strip() for ln in others.splitlines() if ln.strip()]:
        try:
            other = open_allowed(line)
        except MVAError as exc:
            st.error(f"{line}: {exc}")
            continue
        if other.value_names != values:
            st.error(f"{line} measures {other.value_names}, this workspace {values}; compare workspaces with the same values")
            continue
        loaded.append((other, get_design_table(str(other.root), table_version(other), include)))
    merged = merge_workspace_tables(loaded)
    if len(merged.base_methods) > 1:
        st.caption("Rows are named '<method> @ <workspace folder>'. z-scores are per workspace, each against its own "
                   "base model on its own prompts: compare across workspaces only if they share base model and prompts.")
    composition = {name: m.kind for name, m in merged.methods.items()}
    present = merged.present()
    if not present:
        st.info("No candidates yet: run a sweep (Sweep page or `python -m mva_core sweep --method mva`).")
        st.stop()

    # ---- Methods ----
    if st.session_state.get("compare_present") != present:  # a workspace was added, removed or switched
        st.session_state["compare_present"] = present
        st.session_state.pop("compare_methods", None)  # show all again
    if "compare_methods" not in st.session_state:
        st.session_state["compare_methods"] = present
    chosen = st.multiselect("Methods", present, key="compare_methods")
    if not chosen:
        st.info("Choose at least one method.")
        st.stop()
    compared = merged.compared(chosen)  # the chosen methods and every workspace's base model
    shown = CandidateTable.of(compared, values).without_base().frame
    bases = merged.bases()

    # ---- Reference point ----
    default_ref = reference_point(compared, values)
    st.markdown("**Reference point** (z units; default: each value's minimum over all compared candidates and the "
                "base model). Every method's hypervolume is measured from this one point.")
    ref_cols = st.columns(len(values))
    typed = np.array([c.number_input(v, value=float(round(default_ref[i], 4)), step=0.05, format="%.4f",
                                     key=f"compare_ref_{v}_{zlib.crc32(','.join(sorted(chosen)).encode())}")
                      for i, (c, v) in enumerate(zip(ref_cols, values))])
    # the box shows 4 decimals: an untouched box means the exact default (the number the CLI and the report use)
    ref = np.where(typed == np.round(default_ref, 4), default_ref, typed)
    result, ref = compare_table(compared, values, ref)
    result = result.sort_values("method", key=lambda m: m.map(chosen.index), ignore_index=True)  # the chart's order
    # Intervals over the evaluation prompts, CRD and win rates: within one workspace (another workspace's prompts cannot
    # be paired, and its samples and base model are its own)
    single = len(merged.base_methods) == 1 and CandidateTable.of(table, values).base_id() is not None
    own = tuple(m for m in chosen if m in set(table["method"]))
    boot = get_intervals(str(ws.root), table_version(ws), own, tuple(float(x) for x in ref), include) if single else None
    crd = get_crd(str(ws.root), table_version(ws), own, include) if single else {}
    result.insert(result.columns.get_loc("MIP") + 1, "CRD",
                  [crd[m].value if m in crd and crd[m].value is not None else np.nan for m in result["method"]])
    if any(c.interval is not None for c in crd.values()):
        result.insert(result.columns.get_loc("CRD") + 1, "CRD 95% CI",
                      [f"[{crd[m].interval.low:.4g}, {crd[m].interval.high:.4g}]"
                       if m in crd and crd[m].interval is not None else "—" for m in result["method"]])
    follows = get_follows_p(str(ws.root), table_version(ws), own, include) if single else {}
    if any(f.value is not None for f in follows.values()):  # a conditioned policy among the chosen
        result["follows p"] = [follows[m].value if m in follows and follows[m].value is not None else np.nan
                               for m in result["method"]]
        result["follows p 95% CI"] = [f"[{follows[m].interval.low:+.2f}, {follows[m].interval.high:+.2f}]"
                                      if m in follows and follows[m].interval is not None else "—"
                                      for m in result["method"]]
    cost = get_cost(str(ws.root), table_version(ws), own) if single else {}
    result["rows / token"] = [cost[m].rows_per_token if m in cost and cost[m].rows_per_token else np.nan
                              for m in result["method"]]
    result["s / candidate"] = [cost[m].seconds_per_candidate if m in cost and cost[m].seconds_per_candidate else np.nan
                               for m in result["method"]]
    if boot is not None:
        for metric, col in (("hv", "hypervolume"), ("mip", "MIP")):
            ci = {name: getattr(m, metric) for name, m in boot.methods.items()}
            result.insert(result.columns.get_loc(col) + 1, f"{col} 95% CI",
                          [f"[{ci[m].low:.4f}, {ci[m].high:.4f}]" if m in ci else "—" for m in result["method"]])

    # ---- Fronts ----
    x_name, y_name = axis_picker(values, "compare")
    palette = px.colors.qualitative.D3
    # (diamonds are a front's candidates off the simplex: pages.shared.simplex_symbols)
    symbols = iter(["triangle-up", "star", "pentagon", "hexagram", "triangle-down", "cross", "star-square", "triangle-left"])
    layers: list[Front | Mark] = []
    for i, method in enumerate(chosen):
        part = shown[(shown["method"] == method) & shown["finite"]]
        color = palette[i % len(palette)]
        kind = composition.get(method)  # None for candidates of old vectors
        if kind is not None and kind.preference_in_prompt:  # one policy steered by p: its runs in order of p, dashed
            steer = part.sort_values(weight_column(values[0]))
            layers.append(Mark(steer, f"{method} (p = 0→1 on {values[0]})",
                               dict(color=color, size=9, symbol="circle-open", line=dict(width=2)),
                               dict(mode="lines+markers", line=dict(color=color, width=2, dash="dash"), hoverinfo="text",
                                    hovertext=hover_text(steer, values, f"{method} · candidate", weight="p"))))
            continue
        if kind is not None and not kind.continuous:  # one model per point: markers only, a symbol of their own
            layers.append(Mark(part, method, dict(color=color, size=14, symbol=next(symbols, "triangle-up"),
                                                  line=dict(width=1, color="#222")),
                               dict(hovertext=hover_text(part, values, f"{method} · candidate"), hoverinfo="text")))
            continue
        layers.append(Front(part, hover_text(part, values, f"{method} · candidate"), method, color,
                            staircase=len(values) == 2))
    for j, (label, part) in enumerate(bases.groupby("method", sort=False)):
        layers.append(Mark(part, "base model" if len(bases["method"].unique()) == 1 else merged.base_label(label),
                           dict(symbol=["square", "square-open", "square-x", "square-cross"][j % 4], size=12,
                                color="#444", line=dict(width=2, color="#444"))))
    explored = explored_mark(ws, table_version(ws), chosen, include)  # drawn, labelled; in the metrics only if included
    if explored is not None:
        layers.append(explored)
    layers.append(Mark(pd.DataFrame([ref], columns=[z_column(v) for v in values]), "reference point",
                       dict(symbol="x", size=12, color="#888")))
    colors = {m: palette[i % len(palette)] for i, m in enumerate(chosen)}
    if single and st.toggle("Attainment bands (10–90 % over prompt resamples)", value=True, key="compare_bands"):
        layers[:0] = attainment_layers(ws, own, colors, x_name, y_name, ref)  # under the fronts (issue 29 item 4)
    st.plotly_chart(front_figure(x_name, y_name, layers, height=540), width="stretch", key="compare_plot")
    st.caption(("Lines: the front of a grid method (its non-dominated candidates); " if len(values) == 2 else
                f"Marked points: the front of a grid method in all {len(values)} values (its non-dominated "
                "candidates), drawn in the two shown, so no line joins them and a front point may look dominated "
                "here; ") +
               "faint dots: its other candidates; "
               "diamonds: candidates off the simplex (Σ w ≠ 1), what extrapolation adds to SOUP's interpolation. "
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
        "CRD": st.column_config.NumberColumn(format="%.4g", help="CRD (MI-EPO) = mean over the evaluation preferences p "
                                             "of det Cov of the z-scored rewards of every response sampled for p (all "
                                             "prompts × samples of the candidate p is scored with); its interval "
                                             "resamples the prompts as HV's does. Empty when the candidates were "
                                             "decoded greedily."),
        **{f"best {v}": st.column_config.NumberColumn(format="%.3f", help=f"The method's highest z-score on {v}.")
           for v in values},
        "rows / token": st.column_config.NumberColumn(format="%d", help="Model rows a candidate runs per generated token: "
                                                      "1 for a model composed in its weights (MVA, SOUP, …); n + 1 for "
                                                      "a decode-time mixture (mod: the base and each value's model, "
                                                      "every token)."),
        "s / candidate": st.column_config.NumberColumn(format="%.2f", help="Wall seconds of generation per candidate "
                                                       "(all its prompts; scoring not counted), measured over the "
                                                       "method's sweeps that generated candidates; empty where none "
                                                       "was timed (answered from the store, or swept before timing)."),
        "follows p": st.column_config.NumberColumn(format="%+.2f", help="A conditioned policy's Spearman rank correlation "
                                                   "between the preference p it was asked for and the trade-off it "
                                                   "realised: per value i, p_i against z_i − the mean z of the other "
                                                   "values over its runs (2 values: p_1 against z_1 − z_2), averaged "
                                                   "over the values. +1 follows p, 0 ignores it, −1 goes against it."),
        **{f"{col} 95% CI": st.column_config.TextColumn(help="95 % BCa (bias-corrected and accelerated) bootstrap "
                                                        "interval over the evaluation prompts; see the caption under "
                                                        "the interval chart.")
           for col in ("hypervolume", "MIP", "CRD") if f"{col} 95% CI" in result.columns},
    })
    if any(f.value is not None for f in follows.values()):
        st.caption("follows p: does a conditioned policy lean further towards a value the more p asks for it (the "
                   "dashed runs above, in order of p)? Its interval resamples the prompts as HV's does; an interval "
                   "holding 0 is no evidence that p is followed.")
    why = sorted({c.why for c in crd.values() if c.value is None})
    if not single:
        st.caption("CRD: measured within one workspace with its base model; remove the other workspaces to see it.")
    elif why:
        st.caption("CRD empty: " + "; ".join(why) + ".")
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

    # ---- Intervals and differences ----
    if boot is None:
        st.caption("Intervals need the base model's responses (the reference of every z-score; a sweep evaluates it) "
                   "and one workspace (its prompts pair the methods): "
                   + ("remove the other workspaces to see them." if len(merged.base_methods) > 1 else "run a sweep first."))
    else:
        st.subheader("How sure: intervals over the evaluation prompts")
        if boot.caveat:
            st.warning(boot.caveat)
        st.plotly_chart(forest_figure(boot, chosen), width="stretch", key="compare_forest")
        fallback = [f"{name} {label}" for name, m in boot.methods.items() if name in chosen
                    for label, iv in (("HV", m.hv), ("MIP", m.mip)) if np.isfinite(iv.low) and iv.method != "BCa"]
        st.caption(f"95 % BCa (bias-corrected and accelerated) bootstrap intervals: {boot.n_resamples} resamples of the "
                   f"{len(ws.prompts())} prompts, each recomputing the z-scores against the base model, the fronts and "
                   "HV from the shared reference point. A front's HV and MIP are maxima over noisy candidates, so the "
                   "estimate sits low among its own resamples; BCa corrects for that where a percentile interval would "
                   "sit too high (issue 27; coverage measured in tests/test_bootstrap_coverage.py). Overlapping "
                   "intervals mean the data cannot order the methods; the paired difference below is the one to read."
                   + (f" Percentile instead of BCa (BCa undefined): {', '.join(fallback)}." if fallback else ""))
        names = [m for m in chosen if m in boot.methods]
        if len(names) >= 2:
            c1, c2 = st.columns(2)
            a = c1.selectbox("Method A", names, index=0, key="compare_diff_a")
            b = c2.selectbox("Method B", names, index=1, key="compare_diff_b")
            d = boot.difference(a, b)
            if a != b and d is not None:
                st.markdown(f"HV({a}) − HV({b}) = **{d.hv_diff.estimate:+.4f}** [{d.hv_diff.low:+.4f}, "
                            f"{d.hv_diff.high:+.4f}] (95 % percentile interval, paired: the same resampled prompts); "
                            f"{a} ahead in {d.p_a_better:.0%} of resamples; **{d.verdict(a, b)}**.")

    if single:
        confidence_section(ws, shown, own, colors)  # shares of the joint front, 3-D attainment (issue 29)

    # ---- Win rates against the base model ----
    if single:
        st.subheader("Win rates against the base model")
        P = preference_vectors(len(values)) if len(values) in (2, 3) else None
        if P is None:
            st.caption(f"Win rates are shown for a method's candidate of an evaluation preference p; there are none for "
                       f"{len(values)} values (MI-EPO: 2 or 3).")
        else:
            labels = [", ".join(f"{v} {x:g}" for v, x in zip(values, p)) for p in P]
            i = st.selectbox("Preference p", range(len(P)), index=len(P) // 2, format_func=lambda k: labels[k],
                             key="compare_win_p")
            wins = get_win_rates(str(ws.root), table_version(ws), own, tuple(float(x) for x in P[i]), include)
            st.dataframe(wins, width="stretch", hide_index=True, column_config={
                "id": st.column_config.NumberColumn("candidate", help="The method's candidate for p: the run with p for "
                                                    "a conditioned policy, else its front candidate maximising p·z."),
                **{f"win_{v}": st.column_config.ProgressColumn(f"wins {v}", min_value=0.0, max_value=1.0, format="%.2f",
                                                               help=f"Share of the prompts on which the candidate's {v} "
                                                                    "reward beats the base model's (ties count half).")
                   for v in values}})
            st.caption("Per value, the share of evaluation prompts on which the method's candidate for p scores higher "
                       "than the base model on the same prompt (ties count half; 0.5 = no better than the base). "
                       "For a judge's pairwise verdict instead of a reward: `python -m mva_core judge`.")


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
