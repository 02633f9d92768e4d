"""Paper: MVA's Table 1 and Figs. 4–7 and MI-EPO's MIP/CRD table regenerated on this workspace, with intervals, from
the same `mva_core.report` structure `python -m mva_core report` writes to HTML and markdown."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mva_core.report import SUMMARY_RULE, FrontFigure, PaperReport, build_report
from mva_core.report_render import (
    FIG5_CAPTION, conditioned_frame, conditioned_pairs_frame, cosine_chart, cosine_scale, cosine_summary,
    differences_frame, fig5_chart, fig5_frame, front_chart, intervals_note, methods_frame, missing_frame, table1_frame,
    to_markdown,
)
from pages.shared import current_workspace, get_workspace, table_version


def vectors_stamp(root: str) -> tuple[tuple[str, int], ...]:
    """(adapter file, mtime) of every value vector: the report is rebuilt after a retraining."""
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in (Path(root) / "vectors").glob("*/*/adapter_model.*")))


@st.cache_data(show_spinner="Bootstrapping the paper's tables over the prompts…")
def get_report(root: str, version: int, stamp: tuple):
    return build_report(get_workspace(root), root)


def show_missing(report: PaperReport, prefix: str) -> None:
    """What `report` lacks for the table or figure `prefix`, with the commands that make it."""
    lacks = report.missing_for(prefix)
    for m in lacks:
        st.warning(f"**{m.item}**: {m.why}. " + ("`python -m mva_core report --train-missing` makes it, or run:"
                                                 if m.steps else "Made by hand:"))
        st.code("\n".join(m.commands), language="bash")


def render() -> None:
    """The Paper page: Table 1, Figs. 4-7 and MI-EPO's MIP/CRD regenerated on the current workspace."""
    ws = current_workspace()
    if ws is None:
        st.stop()
    root = str(ws.root)
    st.title("The paper, on this workspace")
    if len(ws.value_names) not in (2, 3):
        st.info(f"The paper's tables compare 2 or 3 values (MI-EPO's evaluation preferences are fixed for those); this "
                f"workspace has {len(ws.value_names)}.")
        st.stop()
    report = get_report(root, table_version(ws), vectors_stamp(root))
    st.caption(intervals_note(report) + " The same tables and figures as `python -m mva_core report --workspace "
               f"{root} --out DIR` (one offline HTML file and a markdown summary).")
    if report.caveat:
        st.warning(report.caveat)
    x_axis, y_axis = 0, 1
    if len(report.values) == 3:  # the front charts show two values at a time
        cx, cy = st.columns(2)
        x_axis = cx.selectbox("x axis", range(3), format_func=lambda i: report.values[i], key="paper_x")
        y_axis = cy.selectbox("y axis", range(3), index=1, format_func=lambda i: report.values[i], key="paper_y")

    # ---- Table 1 ----
    st.header("Table 1: ablation")
    st.caption("Base; w/o All (no HSIC, no extrapolation); w/o HSIC; w/o Extrap. (MVA's vectors on the simplex Σw = 1); "
               f"MVA. Summary rule: {SUMMARY_RULE}. The last columns are full MVA minus the row, paired over the same "
               "resampled prompts.")
    st.dataframe(table1_frame(report), hide_index=True, key="paper_table1")
    show_missing(report, "Table 1")

    # ---- Every method ----
    st.header("Every compared method")
    st.dataframe(methods_frame(report), hide_index=True, key="paper_methods")
    if report.fronts.series:
        st.plotly_chart(front_chart(report.fronts, report.values, report.ref, x_axis, y_axis), key="paper_fronts")
        st.caption(report.fronts.caption)

    def fronts_section(label: str, title: str, figure: FrontFigure, key: str) -> None:
        """A figure of fronts (Fig. 4, Fig. 7): its chart, its paired differences and what the workspace lacks for it."""
        st.header(f"{label}: {title}")
        st.caption(figure.caption)
        if figure.series:
            st.plotly_chart(front_chart(figure, report.values, report.ref, x_axis, y_axis), key=key)
        if figure.differences:
            st.dataframe(differences_frame(figure), hide_index=True, key=f"{key}_diff")
        show_missing(report, label)


    fronts_section("Fig. 4", "HSIC vs orthogonality", report.fig4, "paper_fig4")

    # ---- Fig. 5 ----
    st.header("Fig. 5: each value vector alone vs the per-value DPO vector")
    st.caption(FIG5_CAPTION)
    if any(r.mva or r.dpo for r in report.fig5):
        st.plotly_chart(fig5_chart(report, x_axis, y_axis), key="paper_fig5")
    st.dataframe(fig5_frame(report), hide_index=True, key="paper_fig5_table")
    show_missing(report, "Fig. 5")

    # ---- Fig. 6 ----
    st.header("Fig. 6: layer-wise cosine similarity")
    top = cosine_scale(report.fig6)
    if report.fig6:
        st.caption(f"One colour scale for every vector set: ±{top:.3g}, the largest |cosine| shown (white = orthogonal).")
    for k, cm in enumerate(report.fig6):
        st.plotly_chart(cosine_chart(cm, top), key=f"paper_fig6_{k}")
        st.caption(cosine_summary(cm))
    show_missing(report, "Fig. 6")

    fronts_section("Fig. 7", "α ∈ {1, 10, 50}", report.fig7, "paper_fig7")

    # ---- MI-EPO ----
    st.header("MI-EPO: MIP and CRD of the conditioned policies")
    st.dataframe(conditioned_frame(report), hide_index=True, key="paper_conditioned")
    if report.conditioned_pairs:
        st.dataframe(conditioned_pairs_frame(report), hide_index=True, key="paper_conditioned_pairs")
    show_missing(report, "MI-EPO")

    # ---- What lacks ----
    st.header("What this workspace lacks")
    if report.missing:
        st.dataframe(missing_frame(report.missing), hide_index=True, key="paper_missing")
    else:
        st.success("Nothing: every table and figure has its data.")
    st.download_button("Download report.md", to_markdown(report), file_name="report.md", mime="text/markdown",
                       key="paper_download_md")


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
