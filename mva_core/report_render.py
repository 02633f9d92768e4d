"""Rendering a `report.PaperReport`: its tables as DataFrames, its figures as Plotly figures, and the two files
`report` writes: one self-contained HTML page (plotly.js inlined: it opens offline, no script is fetched) and a
markdown summary. The Paper page renders the same tables and figures (pages/paper.py).
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .atomic import UMASK, ExportError
from .bootstrap import DIFFERENCE_INTERVAL, PER_METHOD_INTERVAL, Interval
from .report import SUMMARY_RULE, CosineMap, FrontFigure, Missing, PaperReport

HTML_FILE, MARKDOWN_FILE = "report.html", "report.md"
GENERATOR = "MVA Explorer report"  # marks the files `write_report` may replace
MD_HEAD = "# Paper report"
COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
          "#7f7f7f"]


# ---- Numbers ----

def fmt(iv: Interval | None, digits: int = 3, signed: bool = False) -> str:
    """`estimate [low, high]`; "—" for none or a non-finite estimate."""
    if iv is None or not np.isfinite(iv.estimate):
        return "—"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    bounds = f"[{f.format(iv.low)}, {f.format(iv.high)}]" if np.isfinite(iv.low) and np.isfinite(iv.high) else "[—]"
    return f"{f.format(iv.estimate)} {bounds}"


def intervals_note(report: PaperReport) -> str:
    """How every interval of the report is computed."""
    return (f"95 % {PER_METHOD_INTERVAL} bootstrap intervals over the {report.n_prompts} evaluation prompts "
            f"({report.n_resamples} resamples, seed {report.seed}; z-scores and fronts recomputed on every "
            f"resample; percentile where BCa is undefined); differences: paired 95 % {DIFFERENCE_INTERVAL} intervals "
            f"over the same resamples. Shared reference point (z units): "
            f"{[round(float(x), 4) for x in report.ref]}.")


# ---- Tables ----

def table1_frame(report: PaperReport) -> pd.DataFrame:
    """MVA's Table 1: per setting its candidates, front, per-value reward (mean over front models), HV, MIP, and
    full MVA − the setting."""
    rows = []
    for r in report.table1:
        row = {"setting": r.label, "definition": r.definition, "candidates": len(r.candidate_ids),
               "front": len(r.front_ids)}
        row.update({f"{v} (raw)": fmt(iv) for v, iv in zip(report.values, r.rewards)})
        row.update({"HV": fmt(r.hv, 4), "MIP": fmt(r.mip)})
        row["MVA − this: HV"] = fmt(r.diff_hv, 4, True) if r.diff_hv else ""
        for v, iv in zip(report.values, r.diff_rewards or [None] * len(report.values)):
            row[f"MVA − this: {v}"] = fmt(iv, 3, True) if iv else ""
        rows.append(row)
    return pd.DataFrame(rows)


def methods_frame(report: PaperReport) -> pd.DataFrame:
    return pd.DataFrame([{"method": m.method, "kind": m.kind, "candidates": m.candidates, "front": m.front,
                          "HV": fmt(m.hv, 4), "MIP": fmt(m.mip)} for m in report.methods])


def fig5_frame(report: PaperReport) -> pd.DataFrame:
    rows = []
    for r in report.fig5:
        for j, v in enumerate(report.values):
            rows.append({"vector alone": f"θ_{r.value}", "reward (z)": v,
                         "MVA θ (candidate)": f"{fmt(r.mva[j]) if r.mva else '—'}"
                                              + (f" (#{r.mva_id})" if r.mva_id is not None else ""),
                         "DPO-<value> (candidate)": f"{fmt(r.dpo[j]) if r.dpo else '—'}"
                                                       + (f" (#{r.dpo_id})" if r.dpo_id is not None else ""),
                         "MVA − DPO": fmt(r.diff[j], 3, True) if r.diff else "—"})
    return pd.DataFrame(rows)


def differences_frame(fig: FrontFigure) -> pd.DataFrame:
    return pd.DataFrame([{"difference": name, "ΔHV": fmt(iv, 4, True), "P(first better)": f"{p:.2f}",
                          "verdict": verdict} for name, iv, p, verdict in fig.differences])


def conditioned_frame(report: PaperReport) -> pd.DataFrame:
    rows = []
    for c in report.conditioned:
        crd = "—" if c.crd.value is None else (
            fmt(c.crd.interval, 4) if c.crd.interval is not None else f"{c.crd.value:.4g}")
        rows.append({"policy": c.method, "MIP": fmt(c.mip), "CRD": crd, "HV": fmt(c.hv, 4),
                     "CRD samples per p": c.crd.samples_per_preference or ""})
    return pd.DataFrame(rows)


def conditioned_pairs_frame(report: PaperReport) -> pd.DataFrame:
    return pd.DataFrame([{"difference": n, "ΔMIP": fmt(iv, 3, True)} for n, iv in report.conditioned_pairs])


def missing_frame(missing: Sequence[Missing]) -> pd.DataFrame:
    return pd.DataFrame([{"lacks": m.item, "why": m.why, "command": "\n".join(m.commands),
                          "--train-missing makes it": "yes" if m.steps else "no (by hand)"} for m in missing])


# ---- Figures ----

def front_chart(fig: FrontFigure, values: Sequence[str], ref: np.ndarray | None = None, x: int = 0,
                y: int = 1) -> go.Figure:
    """Each series' candidates (faint) and its Pareto front (line + markers) in z space of values x and y;
    candidates off the simplex (Σw ≠ 1, what extrapolation adds) drawn as open diamonds; the base model at 0."""
    out = go.Figure()
    for k, s in enumerate(fig.series):
        color = COLORS[k % len(COLORS)]
        hover = [f"{s.label} #{i}<br>w = {np.round(w, 3).tolist()}" for i, w in zip(s.ids, s.weights)]
        for off, symbol, name in ((False, "circle", "on simplex"), (True, "diamond-open", "off simplex (Σw ≠ 1)")):
            m = s.off_simplex == off
            if not m.any():
                continue
            out.add_trace(go.Scatter(x=s.z[m, x], y=s.z[m, y], mode="markers", legendgroup=s.label, showlegend=False,
                                     marker=dict(color=color, size=7, opacity=0.45, symbol=symbol),
                                     hovertext=[h + f"<br>{name}" for h, keep in zip(hover, m) if keep],
                                     hoverinfo="text", name=f"{s.label} ({name})"))
        front = np.flatnonzero(s.on_front)
        front = front[np.argsort(s.z[front, x])]
        hv = f", HV {fmt(s.hv, 3)}" if s.hv is not None else ""
        out.add_trace(go.Scatter(x=s.z[front, x], y=s.z[front, y], mode="lines+markers", legendgroup=s.label,
                                 name=f"{s.label}{hv}", line=dict(color=color, width=2),
                                 marker=dict(color=color, size=10,
                                             symbol=["diamond" if o else "circle" for o in s.off_simplex[front]]),
                                 hovertext=[hover[i] for i in front], hoverinfo="text"))
    out.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="base model",
                             marker=dict(color="black", size=12, symbol="star")))
    if ref is not None:
        out.add_trace(go.Scatter(x=[ref[x]], y=[ref[y]], mode="markers", name="reference point",
                                 marker=dict(color="gray", size=10, symbol="x")))
    out.update_layout(title=fig.title, xaxis_title=f"{values[x]} (z vs base)", yaxis_title=f"{values[y]} (z vs base)",
                      height=480, legend=dict(orientation="h", x=0, y=-0.18, yanchor="top"),
                      margin=dict(l=10, r=10, t=40, b=10))
    return out


def fig5_chart(report: PaperReport, x: int = 0, y: int = 1) -> go.Figure:
    """Fig. 5: per value, MVA's θ_v alone and the per-value DPO vector alone, with their BCa intervals as bars."""
    out = go.Figure()
    for k, r in enumerate(report.fig5):
        color = COLORS[k % len(COLORS)]
        for which, ivs, cid, symbol in (("MVA θ", r.mva, r.mva_id, "circle"), ("DPO", r.dpo, r.dpo_id, "square-open")):
            if ivs is None:
                continue
            ex, ey = ivs[x], ivs[y]
            out.add_trace(go.Scatter(
                x=[ex.estimate], y=[ey.estimate], mode="markers", name=f"{which}-{r.value} alone (#{cid})",
                marker=dict(color=color, size=12, symbol=symbol),
                error_x=dict(type="data", symmetric=False, array=[ex.high - ex.estimate],
                             arrayminus=[ex.estimate - ex.low]),
                error_y=dict(type="data", symmetric=False, array=[ey.high - ey.estimate],
                             arrayminus=[ey.estimate - ey.low])))
    out.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="base model",
                             marker=dict(color="black", size=12, symbol="star")))
    out.update_layout(title="Fig. 5: each value vector alone", xaxis_title=f"{report.values[x]} (z vs base)",
                      yaxis_title=f"{report.values[y]} (z vs base)", height=460,
                      legend=dict(orientation="h", x=0, y=-0.18, yanchor="top"), margin=dict(l=10, r=10, t=40, b=10))
    return out


def cosine_scale(maps: Sequence[CosineMap]) -> float:
    """The colour range ±top shared by every Fig. 6 map: the largest |cosine| of any (1 when none is defined), so
    the vector sets compare on one scale and near-orthogonal ones are not all white."""
    c = np.concatenate([m.frame["cosine"].to_numpy(dtype=float) for m in maps]) if maps else np.zeros(0)
    c = np.abs(c[np.isfinite(c)])
    return float(c.max()) if len(c) and c.max() > 0 else 1.0


def cosine_chart(cm: CosineMap, top: float = 1.0) -> go.Figure:
    """Fig. 6: rows = transformer blocks, columns = pair · layer type, colour = cos(ΔW_i, ΔW_j) on −top … +top."""
    df = cm.frame.assign(column=cm.frame["pair"] + " · " + cm.frame["module"])
    rows, cols = list(dict.fromkeys(df["block"])), list(dict.fromkeys(df["column"]))
    grid = df.pivot_table(index="block", columns="column", values="cosine", aggfunc="first", dropna=False)
    Z = grid.reindex(index=rows, columns=cols).to_numpy(dtype=float)
    out = go.Figure(go.Heatmap(z=Z, x=cols, y=[str(r) for r in rows], colorscale="RdBu", reversescale=True,
                               zmin=-top, zmax=top, zmid=0.0, colorbar=dict(title="cosine"), hoverongaps=False,
                               hovertemplate="block %{y} · %{x}<br>cosine %{z:.4f}<extra></extra>"))
    out.update_layout(title=f"Fig. 6: layer-wise cosine, {cm.label} (colour scale ±{top:.3g})",
                      xaxis_title="pair · layer type",
                      yaxis_title="block", height=max(260, 22 * len(rows) + 120), margin=dict(l=10, r=10, t=40, b=10))
    out.update_yaxes(autorange="reversed")
    return out


def cosine_summary(cm: CosineMap) -> str:
    c = cm.frame["cosine"].to_numpy(dtype=float)
    c = c[np.isfinite(c)]
    if not len(c):
        return f"{cm.label}: no cosine defined"
    return (f"{cm.label}: mean |cosine| {np.abs(c).mean():.4f}, max |cosine| {np.abs(c).max():.4f} over {len(c)} "
            "layer pairs")


def figures(report: PaperReport) -> list[tuple[str, str, go.Figure | None]]:
    """(section, caption, figure) in report order; a figure that has nothing to draw is None."""
    out: list[tuple[str, str, go.Figure | None]] = [
        ("fronts", report.fronts.caption, front_chart(report.fronts, report.values, report.ref) if
         report.fronts.series else None),
        ("fig4", report.fig4.caption, front_chart(report.fig4, report.values, report.ref) if report.fig4.series
         else None),
        ("fig5", FIG5_CAPTION, fig5_chart(report) if any(r.mva or r.dpo for r in report.fig5) else None)]
    top = cosine_scale(report.fig6)
    out += [("fig6", cosine_summary(cm), cosine_chart(cm, top)) for cm in report.fig6] or [("fig6", "", None)]
    out.append(("fig7", report.fig7.caption, front_chart(report.fig7, report.values, report.ref) if
                report.fig7.series else None))
    return out


FIG5_CAPTION = ("Each value's vector alone at weight 1: MVA's θ_v (the w = e_v candidate of `mva`) beside the "
                "per-value DPO vector (`dpo-<value>`, the `mva-no-hsic` vector). MVA's first value has no earlier "
                "vector to decorrelate from (Eq.14), so with the same data and seed it is the DPO vector itself.")


# ---- Markdown ----

def markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)"
    def cell(x: object) -> str:
        return str(x).replace("|", "\\|").replace("\n", "<br>")
    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _fronts_md(report: PaperReport, label: str, title: str, figure: FrontFigure) -> list[str]:
    """A figure of fronts (Fig. 4, Fig. 7) in markdown: its series' table, its paired differences, what it lacks."""
    lines = ["", f"## {label}: {title}", "", figure.caption, "",
             markdown_table(pd.DataFrame([{"series": s.label, "candidates": len(s.ids),
                                           "front": int(s.on_front.sum()), "HV": fmt(s.hv, 4), "MIP": fmt(s.mip)}
                                          for s in figure.series]))]
    if figure.differences:
        lines += ["", markdown_table(differences_frame(figure))]
    return lines + _missing_md(report.missing_for(label))


def _missing_md(missing: Sequence[Missing]) -> list[str]:
    if not missing:
        return []
    out = ["", "Missing here:"]
    for m in missing:
        out.append(f"- **{m.item}**: {m.why}. " + ("`report --train-missing` makes it; " if m.steps else
                                                   "made by hand; ") + "commands:")
        out += [f"  - `{c}`" for c in m.commands]
    return out


def to_markdown(report: PaperReport) -> str:
    """The report's tables and the figures' numbers as markdown (report.md)."""
    lines = [f"{MD_HEAD}: {report.workspace}", "",
             f"<!-- generator: {GENERATOR} -->", "",
             f"Values: {', '.join(report.values)}. {intervals_note(report)}"]
    if report.caveat:
        lines += ["", f"**Caveat:** {report.caveat}."]
    lines += ["", "## Table 1: ablation (MVA)", "", f"Summary rule: {SUMMARY_RULE}.", "",
              markdown_table(table1_frame(report))]
    lines += _missing_md(report.missing_for("Table 1"))
    lines += ["", "## Every compared method", "", markdown_table(methods_frame(report))]
    lines += _fronts_md(report, "Fig. 4", "HSIC vs orthogonality", report.fig4)
    lines += ["", "## Fig. 5: each value vector alone vs the per-value DPO vector", "", FIG5_CAPTION, "",
              markdown_table(fig5_frame(report))]
    lines += _missing_md(report.missing_for("Fig. 5"))
    lines += ["", "## Fig. 6: layer-wise cosine similarity between value vectors", ""]
    lines += [f"- {cosine_summary(cm)}" for cm in report.fig6] or ["(no vector set with one vector per value)"]
    lines += _missing_md(report.missing_for("Fig. 6"))
    lines += _fronts_md(report, "Fig. 7", "α ∈ {1, 10, 50}", report.fig7)
    lines += ["", "## MI-EPO: MIP and CRD of the conditioned policies", "", markdown_table(conditioned_frame(report))]
    if report.conditioned_pairs:
        lines += ["", markdown_table(conditioned_pairs_frame(report))]
    whys = sorted({c.crd.why for c in report.conditioned if c.crd.value is None and c.crd.why})
    if whys:
        lines += ["", "CRD —: " + "; ".join(whys) + "."]
    lines += _missing_md(report.missing_for("MI-EPO"))
    lines += ["", "## What this workspace lacks", ""]
    lines += _missing_md(report.missing)[2:] or ["Nothing: every table and figure has its data."]
    lines += ["", f"Built from the stored data in {report.seconds:.1f} s."]
    return "\n".join(lines) + "\n"


# ---- HTML ----

def _html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p>(none)</p>"
    return df.to_html(index=False, escape=True, border=0, classes="t").replace("\\n", "<br>")


def _missing_html(missing: Sequence[Missing]) -> str:
    if not missing:
        return ""
    items = "".join(f"<li><b>{html.escape(m.item)}</b>: {html.escape(m.why)}. "
                    f"{'<code>report --train-missing</code> makes it' if m.steps else 'made by hand'}:"
                    + "".join(f"<pre>{html.escape(c)}</pre>" for c in m.commands) + "</li>" for m in missing)
    return f"<div class='missing'><p>Missing here:</p><ul>{items}</ul></div>"


def to_html(report: PaperReport) -> str:
    """One self-contained page: the tables, the figures (plotly.js inlined once: no script is fetched), what lacks."""
    from plotly.offline import get_plotlyjs

    def chart(fig: go.Figure | None) -> str:
        if fig is None:
            return "<p>(nothing to draw: see what lacks below)</p>"
        return fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                           config={"displaylogo": False})

    charts = {}
    for key, caption, fig in figures(report):
        charts.setdefault(key, []).append(f"<p class='cap'>{html.escape(caption)}</p>{chart(fig)}")
    esc = html.escape
    body = [f"<h1>Paper report: {esc(report.workspace)}</h1>",
            f"<p>Values: {esc(', '.join(report.values))}. {esc(intervals_note(report))}</p>"]
    if report.caveat:
        body.append(f"<p class='caveat'><b>Caveat:</b> {esc(report.caveat)}.</p>")
    sections = [
        ("Table 1: ablation (MVA)", f"<p>Summary rule: {esc(SUMMARY_RULE)}.</p>" + _html_table(table1_frame(report))
         + _missing_html(report.missing_for("Table 1"))),
        ("Every compared method", _html_table(methods_frame(report)) + "".join(charts["fronts"])),
        ("Fig. 4: HSIC vs orthogonality", "".join(charts["fig4"]) + _html_table(differences_frame(report.fig4))
         + _missing_html(report.missing_for("Fig. 4"))),
        ("Fig. 5: each value vector alone vs the per-value DPO vector",
         "".join(charts["fig5"]) + _html_table(fig5_frame(report)) + _missing_html(report.missing_for("Fig. 5"))),
        ("Fig. 6: layer-wise cosine similarity", "".join(charts["fig6"]) + _missing_html(report.missing_for("Fig. 6"))),
        ("Fig. 7: α ∈ {1, 10, 50}", "".join(charts["fig7"]) + _html_table(differences_frame(report.fig7))
         + _missing_html(report.missing_for("Fig. 7"))),
        ("MI-EPO: MIP and CRD", _html_table(conditioned_frame(report)) + _html_table(conditioned_pairs_frame(report))
         + _missing_html(report.missing_for("MI-EPO"))),
        ("What this workspace lacks", _missing_html(report.missing) or "<p>Nothing.</p>"),
    ]
    body += [f"<h2>{esc(title)}</h2>{content}" for title, content in sections]
    body.append(f"<p class='cap'>Built from the stored data in {report.seconds:.1f} s.</p>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table.t{border-collapse:collapse;"
             "font-size:13px}table.t td,table.t th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
             ".cap{color:#555}.missing{background:#fff6e0;padding:.5em}pre{margin:.2em 0;white-space:pre-wrap}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><meta name='generator' content='{GENERATOR}'>"
            f"<title>Paper report: {esc(report.workspace)}</title><style>{style}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>{''.join(body)}</body></html>")


# ---- Files ----

def _ours(path: Path) -> bool:
    """Was this file written by `write_report` (its generator mark within the first lines)?"""
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return GENERATOR in head


def write_report(report: PaperReport, out: str | Path) -> tuple[Path, Path]:
    """DIR/report.html and DIR/report.md (DIR made if missing). Each file is written beside its target and renamed
    into place; an existing report of ours is replaced, any other file of those names is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; name a directory for report.html and report.md")
    targets = {out / HTML_FILE: to_html(report), out / MARKDOWN_FILE: to_markdown(report)}
    for path in targets:
        if path.exists() and not _ours(path):
            raise ExportError(f"{path} exists and was not written by `report`; choose another --out, or move it")
    out.mkdir(parents=True, exist_ok=True)
    for path, text in targets.items():
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=out)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            tmp.chmod(0o666 & ~UMASK)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return out / HTML_FILE, out / MARKDOWN_FILE
