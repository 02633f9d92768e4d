"""Diagnostics: how much do a method's value vectors overlap? Layer cosines (paper Fig.6), HSIC (MVA Eq.6),
gradient interference (MVA Eq.10) and the training curves with their HSIC term (Eq.14)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from mva_core.errors import MVAError
from mva_core.diagnostics import (
    DiagnosticsError, hsic_layer_table, hsic_matrix, hsic_null_table, layer_cosines, load_method_vectors,
    load_preference_pairs, preference_pair_files, shared_layers, training_curves, vector_cosines, vector_set_stamp,
    vector_training_curves,
)
from mva_core.hsic import ESTIMATORS, KERNELS, SAMPLE_MODES
from mva_core.interference_cache import cached_interference
from mva_core.vectors import ValueVector, VectorError
from mva_core.pareto import is_finite
from pages.shared import current_workspace, forget_stale, get_base, get_workspace

TRAIN_HINT = ("train with `python -m mva_core train --method mva --values a,b --data a=A.jsonl --data b=B.jsonl "
              "--workspace <this workspace>`")


@st.cache_resource(show_spinner="Loading the value vectors…")
def get_vectors(root: str, method: str, stamp: tuple) -> list[ValueVector]:
    """The method's vectors, shared by all sessions and never modified; `stamp` reloads them after retraining."""
    return load_method_vectors(get_workspace(root), method)


@st.cache_data(show_spinner="Cosines per layer…")
def get_cosines(root: str, method: str, stamp: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    vectors = get_vectors(root, method, stamp)
    return layer_cosines(vectors), vector_cosines(vectors)


@st.cache_data(show_spinner="HSIC between the vectors…")
def get_hsic(root: str, method: str, stamp: tuple, mode: str, kernel: str, estimator: str) -> pd.DataFrame:
    return hsic_matrix(get_vectors(root, method, stamp), mode=mode, kernel=kernel,  # type: ignore[arg-type]
                       estimator=estimator)  # type: ignore[arg-type]


@st.cache_data(show_spinner=False)
def get_layer_nulls(pair: tuple[str, str, str, str], layers: tuple[str, ...], mode: str, kernel: str, estimator: str,
                    n_permutations: int, _vectors: tuple[ValueVector, ValueVector]) -> pd.DataFrame:
    """Some layers of one pair, HSIC beside its null, keyed by the pair's (value, hash) (the same vectors under
    another method share it); a few layers per call, so that the page shows progress between calls."""
    return hsic_layer_table(list(_vectors), mode=mode, kernel=kernel, estimator=estimator,  # type: ignore[arg-type]
                            n_permutations=n_permutations, layers=layers)


@st.cache_data(show_spinner="HSIC beside its permutation null…")
def get_hsic_null(root: str, method: str, stamp: tuple, mode: str, kernel: str) -> pd.DataFrame:
    return hsic_null_table(get_vectors(root, method, stamp), mode=mode, kernel=kernel)  # type: ignore[arg-type]


def data_range(values: np.ndarray, marks: Sequence[float] = (), diverging: bool = False) -> tuple[float, float]:
    """The colour range a heatmap spans by default: the finite data (and the `marks` to be shown on its colour bar),
    so that 1.31 … 1.37 is not one colour; `diverging`: symmetric about 0 (± the largest |value|)."""
    finite = np.asarray([*np.ravel(values), *marks], dtype=float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return (-1.0, 1.0) if diverging else (0.0, 1.0)
    if diverging:
        top = float(np.abs(finite).max()) or 1.0
        return -top, top
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.05 * (hi - lo) if hi > lo else (0.05 * abs(hi) or 0.5)
    return lo - pad, hi + pad


def colorbar_ticks(zrange: tuple[float, float], marks: dict[str, float]) -> dict[str, Any]:
    """Five round ticks across `zrange` plus one labelled tick per mark ("null a · b 1.334"), for a colour bar."""
    lo, hi = zrange
    digits = max(0, 2 - int(np.floor(np.log10(max(hi - lo, 1e-12)))))  # 3 significant digits of the span
    vals = [round(float(x), digits) for x in np.linspace(lo, hi, 5)[1:-1]]
    text = [f"{x:.{digits}f}" for x in vals]
    for label, x in marks.items():
        if np.isfinite(x):
            vals.append(float(x))
            text.append(f"◀ {label} {x:.{digits + 1}f}")
    return dict(tickvals=vals, ticktext=text)


def heatmap(z: pd.DataFrame, title_x: str, title_y: str, zrange: tuple[float, float], text: bool,
            colorbar: str, height: int, marks: dict[str, float] | None = None) -> go.Figure:
    """Rows top to bottom as in `z`; a range below 0 gets a diverging scale centred on 0 (white); `marks` (e.g. a
    permutation null's mean) are labelled ticks on the colour bar."""
    diverging = zrange[0] < 0 < zrange[1]
    Z = z.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=Z, x=[str(c) for c in z.columns], y=[str(i) for i in z.index],
        colorscale="RdBu" if diverging else "Viridis", reversescale=diverging, zmin=zrange[0], zmax=zrange[1],
        zmid=0.0 if diverging else None,
        colorbar=dict(title=colorbar, **(colorbar_ticks(zrange, marks) if marks else {})),
        text=np.vectorize(lambda x: f"{x:.3g}" if is_finite(x) else "—", otypes=[str])(Z) if text else None,
        texttemplate="%{text}" if text else None, hoverongaps=False,
        hovertemplate=f"{title_y} %{{y}}<br>{title_x} %{{x}}<br>{colorbar} = %{{z:.4g}}<extra></extra>"))
    fig.update_layout(xaxis_title=title_x, yaxis_title=title_y, height=height, margin=dict(l=10, r=10, t=30, b=10))
    fig.update_yaxes(autorange="reversed")  # first block / first value at the top
    return fig


def layer_null_figure(layers: pd.DataFrame) -> go.Figure:
    """Rows = blocks, columns = pair · layer type; colour = (HSIC − null mean) / null sd, text = p-value, hover =
    HSIC, null mean, p."""
    df = layers.assign(column=layers["pair"] + " · " + layers["module"])
    rows, cols = list(dict.fromkeys(df["block"])), list(dict.fromkeys(df["column"]))
    grid = {name: df.pivot_table(index="block", columns="column", values=name, aggfunc="first", dropna=False)
            .reindex(index=rows, columns=cols).to_numpy(dtype=float) for name in ("null_z", "hsic", "null_mean",
                                                                                   "p_value")}
    top = max(3.0, float(np.nanmax(np.abs(grid["null_z"]), initial=0.0)))
    fig = go.Figure(go.Heatmap(
        z=grid["null_z"], x=cols, y=rows, colorscale="RdBu", reversescale=True, zmin=-top, zmax=top, zmid=0.0,
        colorbar=dict(title="null sd from<br>null mean"), customdata=np.dstack([grid["hsic"], grid["null_mean"],
                                                                                grid["p_value"]]),
        text=np.vectorize(lambda p: f"{p:.2f}" if is_finite(p) else "", otypes=[str])(grid["p_value"]),
        texttemplate="%{text}", hoverongaps=False,
        hovertemplate="block %{y} · %{x}<br>HSIC %{customdata[0]:.5g}<br>null mean %{customdata[1]:.5g}<br>"
                      "%{z:+.2f} null sd<br>p = %{customdata[2]:.3f}<extra></extra>"))
    fig.update_layout(xaxis_title="pair · layer type", yaxis_title="block", height=max(260, 22 * len(rows) + 120),
                      margin=dict(l=10, r=10, t=30, b=10))
    fig.update_yaxes(autorange="reversed")
    return fig


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def curves_panels(df: pd.DataFrame) -> dict[str, str]:
    """Column -> title of each panel `curves_figure` draws for `df`: the logged loss split into its DPO part and its
    weighted penalty (MVA Eq.14: L = L_DPO + α·P), so a total of ≈ 13.8 is not read as a DPO loss; the logged
    total only for runs that recorded no weight (its split unknown)."""
    has_term = df["penalty_term"].notna().any()
    penalty = next(iter(df.loc[df["penalty_term"].notna(), "penalty"].dropna()), "hsic") if has_term else None
    term = ("L_wc (MI-EPO's weight-consistency term)" if penalty == "weight_consistency"
            else f"Σⱼ {str(penalty).upper()}(θᵢ, θⱼ)")
    weight = "β_w" if penalty == "weight_consistency" else "α"
    panels = {"dpo_part": "DPO part L_DPO (log 2 ≈ 0.693 at the start; should fall)" if has_term
              else "DPO loss (log 2 ≈ 0.693 at the start; should fall)"}
    if (df["dpo_part"].isna() & df["loss"].notna()).any():
        panels["loss"] = f"logged loss L_DPO + {weight} × penalty (weight not recorded: not split)"
    if (df["weighted_penalty"].fillna(0.0) != 0.0).any():
        panels["weighted_penalty"] = f"penalty part {weight} × {term} in the loss"
    panels["reward_accuracy"] = "reward accuracy"
    if has_term:
        panels["penalty_term"] = (f"{term} unweighted (MI-EPO, our formulation)" if penalty == "weight_consistency"
                                  else f"{term} unweighted, earlier vectors j")
    if df["penalty_share"].notna().any():
        panels["penalty_share"] = f"penalty's share of the loss ({weight} × penalty / loss)"
    return panels


def curves_figure(df: pd.DataFrame, overlay: pd.DataFrame | None = None) -> go.Figure:
    """Per step, one colour per value: the DPO part of the loss, the weighted penalty, reward accuracy, the
    unweighted penalty term and its share (`curves_panels`); `overlay`'s penalty term (another method's run)
    dotted in the same colours. The logged total appears only where its split is unknown."""
    panels = curves_panels(df)
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=list(panels.values()))
    for k, (value, part) in enumerate(df.groupby("value", sort=False)):
        color = COLORS[k % len(COLORS)]
        for row, col in enumerate(panels, start=1):
            rows = part[part["dpo_part"].isna()] if col == "loss" else part
            if rows[col].notna().any():
                fig.add_trace(go.Scatter(x=rows["step"], y=rows[col], mode="lines", name=value, legendgroup=value,
                                         showlegend=row == 1, line=dict(color=color), meta=col), row=row, col=1)
    if overlay is not None and "penalty_term" in panels:
        for k, (value, part) in enumerate(overlay.groupby("value", sort=False)):
            if part["penalty_term"].notna().any():
                fig.add_trace(go.Scatter(x=part["step"], y=part["penalty_term"], mode="lines",
                                         name=f"{value} · {part['method'].iloc[0]}", meta="penalty_term",
                                         line=dict(color=COLORS[k % len(COLORS)], dash="dot")),
                              row=list(panels).index("penalty_term") + 1, col=1)
    if "penalty_share" in panels:
        fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=len(panels), col=1)
    fig.update_xaxes(title_text="step", row=len(panels), col=1)
    fig.update_layout(height=200 * len(panels) + 60, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", y=1.1))
    return fig


def render() -> None:
    """The Diagnostics page: layer cosines (Fig. 6), HSIC (Eq.6), interference (Eq.10), training curves."""
    ws = current_workspace()
    if ws is None:
        st.stop()
    root = str(ws.root)

    st.title("Diagnose the value vectors")
    st.caption("MVA composes base + Σ wᵢ·θᵢ (Eq.15); that works best when the value vectors θᵢ do not overlap, which "
               "is what Value Decorrelation Training (Eq.14, an HSIC penalty) aims for. This page measures the overlap "
               "of one method's vectors four ways: their weight changes layer by layer, their statistical dependence "
               "(HSIC), whether their training gradients pull against each other, and how training went.")
    methods = ws.methods()
    if not methods:
        st.warning(f"No value vectors in {ws.root / 'vectors'} yet: {TRAIN_HINT}, or build the demo with "
                   "`python -m mva_core demo build`.")
        st.stop()
    forget_stale("diag_method", methods)  # e.g. after switching workspace
    method = st.selectbox("Method (vector set)", methods, key="diag_method",
                          help="The methods with one value vector per value under vectors/<method>/.")
    try:
        stamp = vector_set_stamp(ws, method)
        vectors = get_vectors(root, method, stamp)
    except (DiagnosticsError, VectorError) as exc:
        st.error(str(exc))
        st.stop()
    values = [v.value for v in vectors]

    # ---- Layer-wise cosine similarity ----
    st.header("Layer-wise cosine similarity")
    st.caption("For every target layer both vectors adapt, the cosine between their weight changes ΔW = (α/r)·B·A, "
               "flattened (paper Fig.6). 0 (white): the two values change that layer in unrelated directions; "
               "+1 (red): the same direction, so composing them double-counts; −1 (blue): opposite directions, so "
               "they cancel. Rows are transformer blocks, columns a pair of values and a layer type.")
    if len(vectors) < 2:
        st.info("One value vector only: similarities need at least two values.")
    else:
        cos, whole = get_cosines(root, method, stamp)
        cos = cos.assign(column=cos["pair"] + " · " + cos["module"])
        grid = cos.pivot_table(index="block", columns="column", values="cosine", aggfunc="first", dropna=False)
        grid = grid.reindex(index=list(dict.fromkeys(cos["block"])), columns=list(dict.fromkeys(cos["column"])))
        fixed = st.toggle("Colour scale −1 … +1 (the same for every method)", key="diag_cosine_fixed",
                          help="Off (default): ± the largest |cosine| shown, so the layers' differences are visible. On: "
                               "−1 … +1, so a cosine of 0.01 looks like the near-orthogonality it is.")
        top = 1.0 if fixed else data_range(grid.to_numpy(dtype=float), diverging=True)[1]
        if not fixed:
            st.caption(f"Colour scale ±{top:.3g} (the largest |cosine| shown), not ±1: pale cells are near 0 on this "
                       "scale, and a cell at the scale's end is ±" + f"{top:.3g}, not ±1.")
        st.plotly_chart(heatmap(grid, "pair · layer type", "block", (-top, top), False, "cosine",
                                max(260, 22 * len(grid) + 120)), width="stretch", key="diag_cosine_plot")
        pairs = [(a, b) for i, a in enumerate(values) for b in values[i + 1:]]
        cols = st.columns(min(len(pairs), 4))
        for k, (a, b) in enumerate(pairs):
            cols[k % len(cols)].metric(f"whole-vector cosine {a} · {b}", f"{whole.loc[a, b]:+.3f}",
                                       help="All shared layers' ΔW concatenated into one vector each.")

    # ---- HSIC ----
    st.header("HSIC between the vectors (MVA Eq.6)")
    st.caption("HSIC measures statistical dependence, linear or not, between two sets of paired samples; summed over "
               "the target layers, it is the term MVA's training penalises (Eq.14). Samples per layer: rows of LoRA A "
               "(`lora_A`, what the paper's code uses) or rows of ΔW (`delta`, the full version). The diagonal "
               "HSIC(θᵢ, θᵢ) is each vector's dependence on itself, the scale an off-diagonal entry compares to; "
               "an off-diagonal value well below it means the vectors are close to independent.")
    c1, c2, c3 = st.columns(3)
    mode = c1.radio("Samples", SAMPLE_MODES, horizontal=True, key="diag_hsic_mode",
                    help="lora_A: row k of Aᵢ paired with row k of Aⱼ, the paper's code's approximation; relabelling "
                         "LoRA's rank components changes it while ΔW stays the same. delta: rows of ΔW, which no "
                         "relabelling changes.")
    kernel = c2.radio("Kernel", KERNELS, horizontal=True, key="diag_hsic_kernel",
                      help="Gaussian with the median-heuristic bandwidth (Eq.6); linear for a covariance-like view.")
    estimator = c3.radio("Estimator", sorted(ESTIMATORS), horizontal=True, key="diag_hsic_estimator",
                         help="biased: MVA Eq.6, with a floor above 0 at few samples (r = 8 rows of lora_A); unbiased: "
                              "Song et al. 2012, zero in expectation for independent vectors (can be negative).")
    try:
        H = get_hsic(root, method, stamp, mode, kernel, estimator)
        null = get_hsic_null(root, method, stamp, mode, kernel) if len(vectors) >= 2 else None
        # the null level of each pair (what unrelated vectors of these shapes give), marked on the colour bar
        marks = {} if null is None else {
            f"null {r['pair']}": float(r["unbiased_null_mean"] if estimator == "unbiased" else r["null_mean"])
            for _, r in null.iterrows()}
        Hz = H.to_numpy(dtype=float)
        zrange = data_range(Hz, list(marks.values()), diverging=bool(np.nanmin(Hz, initial=0.0) < 0))  # unbiased: < 0
        st.plotly_chart(heatmap(H, "θⱼ", "θᵢ", zrange, True, "HSIC", 160 + 60 * len(values), marks), width="stretch",
                        key="diag_hsic_plot")
        st.caption(f"Colours span {zrange[0]:.4g} … {zrange[1]:.4g}, the values shown"
                   + (" and the permutation null's mean (◀ on the colour bar)" if marks else "") + ".")
        if null is not None:
            st.markdown("**Beside its permutation null** (each layer's θⱼ samples shuffled, 200 times): an HSIC is "
                        "evidence of dependence only if it stands above what unrelated vectors of these shapes give.")
            st.table(null.set_index("pair").style.format("{:.5f}").format("{:.3f}", subset=["p_value", "unbiased_p_value"]))
            st.caption("p = (1 + #{shuffles ≥ observed}) / (1 + 200). hsic_unbiased: Song et al. 2012's estimator, zero "
                       "in expectation for independent vectors; the biased one (Eq.6) has a floor above 0 at small r.")
    except (DiagnosticsError, VectorError) as exc:
        st.error(str(exc))

    # ---- HSIC per layer beside its null ----
    if len(vectors) >= 2:
        st.subheader(f"Per layer, beside its permutation null ({mode}, {estimator})")
        st.caption("For every pair and every layer both vectors adapt: how far the layer's HSIC sits from what the same "
                   "samples give with the pairing broken (θⱼ's rows shuffled), in null standard deviations. Red: more "
                   "dependent than chance; white: indistinguishable from unrelated vectors; blue: less dependent than "
                   "any shuffle — in `lora_A` mode that is a row pairing training chose, not independence. The number "
                   "in a cell is its p-value (share of shuffles at least as dependent); by chance alone 5 % of the "
                   "layers show p < 0.05.")
        n_perm = st.select_slider("Shuffles per layer", [50, 100, 200, 500], value=100, key="diag_layer_perms",
                                  help="More shuffles: finer p-values (1/(n + 1) at best), longer to compute (delta mode "
                                       "on the demo: about 10 s per pair for 100).")
        parts = []  # (pair k, θᵢ, θⱼ, up to 10 of their shared layers)
        pairs = [(a, b) for i, a in enumerate(vectors) for b in vectors[i + 1:]]
        for k, (a, b) in enumerate(pairs):
            shared = shared_layers(a, b)
            parts += [(k, a, b, tuple(shared[s:s + 10]), s, len(shared)) for s in range(0, len(shared), 10)]
        bar = st.progress(0.0, text="HSIC per layer beside its null…")
        try:
            frames = []
            for done, (k, a, b, chunk, start, total) in enumerate(parts):
                bar.progress(done / len(parts), text=f"pair {k + 1} of {len(pairs)} ({a.value} · {b.value}): layers "
                                                     f"{start + 1}–{start + len(chunk)} of {total}, {n_perm} shuffles each…")
                frames.append(get_layer_nulls((a.value, a.hash, b.value, b.hash), chunk, mode, kernel, estimator, n_perm,
                                              (a, b)))
            layers = pd.concat(frames, ignore_index=True)
        except (DiagnosticsError, VectorError) as exc:
            bar.empty()
            st.error(str(exc))
        else:
            bar.empty()
            st.plotly_chart(layer_null_figure(layers), width="stretch", key="diag_layer_null_plot")
            summary = layers.groupby("pair", sort=False).agg(
                layers=("layer", "size"), hsic=("hsic", "sum"), null_mean=("null_mean", "sum"),
                above=("p_value", lambda p: int((p < 0.05).sum())), below=("null_z", lambda z: int((z < -2).sum())))
            st.caption(" · ".join(
                f"{pair}: {r.above:.0f} of {r.layers:.0f} layers with p < 0.05, {r.below:.0f} more than 2 null sd below "
                "their null; "
                f"Σ HSIC {r.hsic:.4g} vs Σ null means {r.null_mean:.4g}" for pair, r in summary.iterrows()))
            with st.expander("The table"):
                st.dataframe(layers.drop(columns=["value_i", "value_j", "block", "module"]), hide_index=True,
                             width="stretch", key="diag_layer_null_table")

    # ---- Interference ----
    st.header("Gradient interference (MVA Eq.10)")
    st.caption("gᵢ is the gradient of value i's DPO loss (β = 0.1, reference = base model) on a few of its preference "
               "pairs, with respect to the weights of the adapted layers. A training step for value i changes value "
               "j's loss by about −η·gᵢᵀgⱼ (Eq.10): a positive cosine means the step for i also lowers j's loss "
               "(aligned), a negative one that it raises it (the values interfere), near 0 that they do not interact.")
    try:
        pair_files = preference_pair_files(ws, method)
    except DiagnosticsError as exc:
        pair_files = None
        st.info(str(exc))
    if pair_files is not None:
        st.caption("Preference pairs: " + ", ".join(f"{v} ← `{f}`" for v, f in pair_files.items()))
        at = st.radio("Take the gradients at", ["own", "composed"], horizontal=True, key="diag_interference_at",
                      format_func=lambda a: {"own": "each value's own model (base + θᵢ)",
                                             "composed": "one composed model (base + Σ wᵢ·θᵢ)"}[a],
                      help="Own: where each vector's training ended. Composed: one candidate for all values; all "
                           "weights 0 is the base model, where every vector's training starts.")
        weights = None
        if at == "composed":
            wcols = st.columns(len(values))
            weights = [float(col.number_input(f"w: {v}", 0.0, float(max(ws.manifest.C, 1.0)), value=0.0, step=0.1,
                                              key=f"diag_w_{v}")) for col, v in zip(wcols, values)]
        n_pairs = st.slider("Preference pairs per value", 1, 32, 4, key="diag_n_pairs",
                            help="A seeded sample of each value's pairs: more pairs, less noise, longer to compute "
                                 "(each pair costs forward and backward passes of the model: 10–20 s per pair and value for "
                                 "the 135M demo model on 2 CPU cores).")
        if st.button("Compute interference", type="primary", key="diag_interference_go"):
            with st.status("Computing the DPO-loss gradients…", expanded=True) as status:
                bar = st.progress(0.0, text="loading the base model")
                try:
                    base = get_base(root)
                    pairs = load_preference_pairs(ws, method)

                    def on_progress(stage: str, done: int, total: int) -> None:
                        bar.progress(min(done / max(total, 1), 1.0), text=f"{stage}: {done}/{total} micro-batches")

                    result, from_cache = cached_interference(base, vectors, pairs, weights=weights, n_pairs=n_pairs,
                                                             progress=on_progress)
                except MVAError as exc:  # DiagnosticsError, VectorError, ModelLoadError, bad pair data
                    status.update(label="Interference failed", state="error")
                    st.error(str(exc))
                else:
                    st.session_state["diag_interference"] = {"method": method, "stamp": stamp, "result": result,
                                                             "from_cache": from_cache}
                    where = "each at its own model" if result.at == "own" else f"at {result.at}"
                    how = "from the cache (computed before for these vectors, pairs and settings)" if from_cache else ""
                    status.update(label=f"Gradients of {len(values)} values, {where} {how}".strip(), state="complete",
                                  expanded=False)
        done = st.session_state.get("diag_interference")
        if done is not None and done["method"] == method and done["stamp"] == stamp:
            res = done["result"]
            left, right = st.columns(2)
            with left:
                cos_df = pd.DataFrame(res.cosine, index=res.values, columns=res.values)
                st.plotly_chart(heatmap(cos_df, "gⱼ", "gᵢ", (-1.0, 1.0), True, "cos(gᵢ, gⱼ)", 160 + 60 * len(values)),
                                width="stretch", key="diag_interference_plot")
            with right:
                st.dataframe(pd.DataFrame({"value": res.values, "DPO loss": res.losses, "‖g‖": res.norms,
                                           "pairs": res.n_pairs}), hide_index=True, width="stretch")
                st.dataframe(pd.DataFrame(res.dot, index=res.values, columns=res.values).rename_axis("gᵢᵀgⱼ"),
                             width="stretch")
            st.caption(f"At {'each value’s own model' if res.at == 'own' else res.at}; each g has "
                       f"{res.n_parameters:,} entries (the adapted layers' weights). "
                       + ("Answered from the cache: computed before for the same vectors (by content hash), pairs and "
                          "settings; it lives in your cache dir ($MVA_INTERFERENCE_CACHE), not in the workspace."
                          if done.get("from_cache") else "Cached for the next visit (keyed by the vectors' content)."))

    # ---- Training curves ----
    st.header("Training curves")
    st.caption("Per optimizer step, the training loss L = L_DPO + α·Σⱼ HSIC(θᵢ, θⱼ) (Eq.14) in its two parts: the DPO "
               "part (starts at log 2 ≈ 0.693 and should fall) and the penalty part α × the term against the earlier "
               "vectors (none for the first value); then the reward accuracy (share of pairs in the batch where the "
               "policy prefers the chosen response more than the base does) and the term unweighted. For mva-no-hsic "
               "(α = 0) the term is only recorded, not trained on: compare it with mva's.")
    curves = training_curves(ws.store.runs())
    # Every recorded run (keyed by its id), and every method's vectors' own metadata (vectors trained by `demo build`
    # or elsewhere; keyed "vectors:<method>")
    sources: dict[int | str, pd.DataFrame] = {}
    labels: dict[int | str, str] = {}
    alpha = lambda a: f"{a:g}" if is_finite(a) else "method default"  # noqa: E731 (NaN: the run used the default)
    for run in curves.drop_duplicates("run_id").itertuples():
        sources[int(run.run_id)] = curves[curves["run_id"] == run.run_id]
        labels[int(run.run_id)] = f"run #{int(run.run_id)} · {run.method} · α = {alpha(run.alpha)} · {run.status}"
    for m in methods:
        own = vector_training_curves(get_vectors(root, m, vector_set_stamp(ws, m)))
        if not own.empty:
            sources[f"vectors:{m}"], labels[f"vectors:{m}"] = own, f"{m} · saved with its vectors (mva_vector.json)"
    if not sources:
        st.info(f"No training curves in this workspace: {TRAIN_HINT}; its per-step loss, reward accuracy and HSIC "
                "term then appear here.")
    else:
        keys = list(sources)[::-1]  # newest runs first, then the vectors' metadata
        # a run recorded under the row's name, or the row's own vectors (mva-alpha50's metadata says method "mva")
        opens = [k for k in keys if (k == f"vectors:{method}" if isinstance(k, str)
                                     else str(sources[k]["method"].iloc[0]) == method)]
        if st.session_state.get("diag_curves_for") != method or st.session_state.get("diag_run") not in keys:
            st.session_state["diag_curves_for"] = method  # opens on the method chosen at the top of the page
            st.session_state["diag_run"] = (opens or keys)[0]
        key = st.selectbox("Training curves of", keys, format_func=labels.get, key="diag_run")
        shown = sources[key]
        # what the penalty did: mva's HSIC term beside mva-no-hsic's (the same term, trained with α = 0)
        twin = {"mva": "mva-no-hsic", "mva-no-hsic": "mva"}.get(str(shown["method"].iloc[0]))
        overlay = sources.get(f"vectors:{twin}") if twin else None
        st.plotly_chart(curves_figure(shown, overlay), width="stretch", key="diag_curves_plot")
        shares = shown.dropna(subset=["penalty_share"]).groupby("value", sort=False)["penalty_share"]
        if len(shares):
            st.caption("The penalty's share of the training loss, weight × penalty / loss, first → last step: " + "; ".join(
                f"{value} {s.iloc[0]:.1%} → {s.iloc[-1]:.1%}" for value, s in shares) + ". Near 100 %: the optimizer "
                "mostly works on the penalty, not on DPO.")
        elif shown["penalty_term"].notna().any():
            st.caption("This run recorded no penalty weight (α), so the penalty's share of the loss is not shown: runs "
                       "from before the weight was recorded.")
        if overlay is not None:
            st.caption(f"Dotted in the penalty panel: {twin}'s HSIC term per step, measured the same way (α = "
                       f"{alpha(overlay['alpha'].iloc[0])}): the gap is what the penalty changed.")


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
