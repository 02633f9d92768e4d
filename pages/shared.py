"""What every page shares: the workspace picker, the cached engine objects (never mutated per session), the
workspace-switch guard, the axis picker and the front chart."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mva_core.access import check_workspace_path, workspace_roots
from mva_core.kinds import off_simplex
from mva_core.pareto import is_finite
from mva_core.results import load_table
from mva_core.table import CandidateTable, methods_present, raw_column, weight_column, z_column
from mva_core.models import BaseModel, load_base
from mva_core.sweep import Evaluator
from mva_core.vectors import load_value_vector
from mva_core.errors import as_user_error
from mva_core.demo import DEMOS, working_copy
from mva_core.workspace import MANIFEST, Workspace, default_workspace, open_workspace


@st.cache_resource(show_spinner="Opening workspace…")
def _open_workspace(root: str, manifest_stamp: int) -> Workspace:
    return open_workspace(root)


def get_workspace(root: str) -> Workspace:
    """The workspace at `root`, reopened when its workspace.json changes (edits apply without a restart)."""
    return _open_workspace(root, manifest_stamp(root))


def open_allowed(path: str) -> Workspace:
    """The workspace a visitor named (sidebar, Compare's other workspaces) when it lies under the allowed roots
    ($MVA_WORKSPACE_ROOTS; symlinks and `..` resolved first); OutsideRootsError (a WorkspaceError) otherwise."""
    return get_workspace(str(check_workspace_path(path, workspace_roots())))


@st.cache_resource(show_spinner="Loading the base model…")
def _load_base(spec: str) -> BaseModel:
    return load_base(spec)


def get_base(root: str) -> BaseModel:
    """The workspace's base model, loaded once and shared by every evaluator and session (never mutated)."""
    return _load_base(get_workspace(root).manifest.base)


@st.cache_resource(show_spinner="Loading the value vectors…")
def _evaluator(root: str, manifest_stamp: int, method: str, vector_dirs: tuple[str, ...] | None) -> Evaluator:
    vectors = [load_value_vector(d) for d in vector_dirs] if vector_dirs is not None else None
    return Evaluator(get_workspace(root), method, base=get_base(root), vectors=vectors)


def get_evaluator(root: str, method: str, vector_dirs: tuple[str, ...] | None = None) -> Evaluator:
    """One per (workspace, method, vectors), shared by all sessions: weights travel with each call, not in the
    model. `vector_dirs` picks one model of a method that has one per preference (dpo-lw, modpo, dpo-seqt)."""
    return _evaluator(root, manifest_stamp(root), method, vector_dirs)


def manifest_stamp(root: str) -> int:
    """workspace.json's modification time (ns), 0 when missing: the cache key that reloads an edited manifest."""
    try:
        return (Path(root) / MANIFEST).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_data(show_spinner=False)
def get_candidates(root: str, version: int, prompts_file: str | None = None) -> CandidateTable:
    """Candidate table; `version` (the store's candidate count) invalidates it when results land. `prompts_file`:
    the candidates of that prompt set (default workspace.json's)."""
    ws = get_workspace(root)
    return load_table(ws, prompts=None if prompts_file is None else ws.prompts(prompts_file))


def get_table(root: str, version: int, prompts_file: str | None = None) -> pd.DataFrame:
    """`get_candidates(...).frame`: the candidate table as the DataFrame a page renders."""
    return get_candidates(root, version, prompts_file).frame


def table_version(ws: Workspace) -> int:
    return ws.store.version()


def methods_with_candidates(ws: Workspace, table: pd.DataFrame) -> list[str]:
    """Methods that have stored candidates: the workspace's comparison rows first (grid methods first), then
    candidates of vectors no method reads any more."""
    return methods_present(table, [m.name for m in ws.compared_methods()])


# Choices a user makes on one page and expects to find again after visiting another: Explore's weights, the
# conditioned policy's p, the preference pick, the method and axes. Streamlit forgets a widget's state when its
# page is not shown; writing the value back on every run keeps it.
KEPT_ACROSS_PAGES = ("w_", "cp_", "p_", "explore_method", "explore_x", "explore_y", "explore_axes3d")


def keep_choices_across_pages() -> None:
    for key in list(st.session_state):
        if isinstance(key, str) and key.startswith(KEPT_ACROSS_PAGES):
            st.session_state[key] = st.session_state[key]


def sidebar() -> None:
    keep_choices_across_pages()
    default = str(default_workspace())
    shipped = {name: spec for name, spec in DEMOS.items() if (spec.root / MANIFEST).is_file()}

    def open_shipped() -> None:  # the picked demo's directory goes into the Workspace box
        name = st.session_state.get("shipped_demo")
        if name in shipped:
            st.session_state["workspace"] = str(working_copy(name))

    with st.sidebar:
        if shipped:
            st.selectbox("Shipped demos", list(shipped), index=None, key="shipped_demo", on_change=open_shipped,
                         placeholder="open a shipped demo…",
                         format_func=lambda n: f"{n}: {', '.join(v.name for v in shipped[n].values)}",
                         help="The demo workspaces shipped in data/ (`python -m mva_core demo build --demo all`), "
                              "opened as a working copy (data/workspace, data/workspace-<name>; git-ignored).")
        st.session_state.setdefault("workspace", default)  # one way: open_shipped writes it too
        path = st.text_input("Workspace", key="workspace",
                             help="A directory with workspace.json (default: $MVA_WORKSPACE or data/workspace), "
                                  "under the directories this app may open ($MVA_WORKSPACE_ROOTS).")
    # An emptied box means "the default", never the current directory.
    st.session_state["workspace_path"] = path.strip() or default


def current_workspace() -> Workspace | None:
    """The sidebar's workspace, or None after showing why it cannot be opened (outside the allowed roots, damaged
    or invalid)."""
    try:
        return open_allowed(st.session_state.get("workspace_path", str(default_workspace())))
    except Exception as exc:
        user_error = as_user_error(exc)
        if user_error is None:
            raise
        st.error(str(user_error))
        return None


# ---- Workspace-switch guard ----

def forget_stale(key: str, options: Collection[Any]) -> None:
    """Forget the session's choice under widget `key` when `options` no longer hold it (e.g. after switching
    workspace), so the widget starts again from its default; a multi-choice with any stale item is forgotten whole
    (another workspace's candidate ids name other candidates)."""
    if key not in st.session_state:
        return
    chosen = st.session_state[key]
    if any(c not in options for c in (chosen if isinstance(chosen, list) else [chosen])):
        del st.session_state[key]


def pick_method(ws: Workspace, table: pd.DataFrame, key: str) -> str:
    """The method whose candidates a page shows: a selectbox (`key`) over the methods with stored candidates; stops
    the page with a hint when there are none."""
    methods = methods_with_candidates(ws, table)
    if not methods:
        st.info("No candidates stored yet: evaluate one on the Explore page or run a sweep.")
        st.stop()
    forget_stale(key, methods)  # e.g. after switching workspace
    return st.selectbox("Method", methods, key=key)


# ---- Front chart ----

def axis_picker(values: Sequence[str], key: str) -> tuple[str, str]:
    """The two values a 2-D chart plots: the first two (one value: on both axes); with three or more, the user's
    choice in two selectboxes keyed `<key>_x` and `<key>_y`."""
    x_name, y_name = (list(values) * 2)[:2]
    if len(values) > 2:
        c1, c2 = st.columns(2)
        for axis, default in ((f"{key}_x", values[0]), (f"{key}_y", values[1])):  # kept across pages: state only
            forget_stale(axis, values)
            st.session_state.setdefault(axis, default)
        x_name = c1.selectbox("x axis", values, key=f"{key}_x")
        y_name = c2.selectbox("y axis", values, key=f"{key}_y")
    return x_name, y_name


def duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m {s:02d}s" if m else f"{s}s"


def eta_text(started: float, fraction: float) -> str:
    """Elapsed time and the time left at the rate so far, from the share of the work done (0 … 1)."""
    elapsed = time.monotonic() - started
    left = "—" if fraction <= 0 else duration(elapsed / fraction * (1 - fraction))
    return f"elapsed {duration(elapsed)} · ETA {left}"


def table_columns(values: Sequence[str]) -> dict[str, Any]:
    """Column labels and precision for candidate tables: weights to 2 decimals, rewards and z-scores to 3, the
    rank as the dominance layer it is (0 = on the front)."""
    config: dict[str, Any] = {"rank": st.column_config.NumberColumn("dominance layer (0 = front)", format="%d")}
    for v in values:
        config[weight_column(v)] = st.column_config.NumberColumn(weight_column(v), format="%.2f")
        config[raw_column(v)] = st.column_config.NumberColumn(raw_column(v), format="%.3f", help="mean reward (scorer units)")
        config[z_column(v)] = st.column_config.NumberColumn(z_column(v), format="%+.3f",
                                                         help="z-score vs the base model on the same prompts")
    return config


def rank_text(rank: Any) -> str:
    """A candidate's dominance layer as shown: "on front" for layer 0, else "layer k (dominated)"; "—" for one
    with a non-finite score (it is on no layer)."""
    if not is_finite(rank):
        return "—"
    return "on front" if int(rank) == 0 else f"layer {int(rank)} (dominated)"


def hover_text(rows: pd.DataFrame, values: Sequence[str], title: str = "candidate", weight: str = "w") -> list[str]:
    """One hover text per row: `title` and id, its finite weights (`weight`_<value>; "p" for the preference a
    conditioned policy read), z-score and raw mean per value, front rank."""
    return [f"{title} {r['id']}<br>"
            + "<br>".join(f"{weight}_{v} = {r[weight_column(v)]:.2f}" for v in values if is_finite(r.get(weight_column(v))))
            + "<br>" + "<br>".join(f"{v}: z={r[z_column(v)]:.2f} raw={r[raw_column(v)]:.3f}" for v in values)
            + f"<br>{rank_text(r['rank'])}" for _, r in rows.iterrows()]


@dataclass
class Front:
    """One method's finite candidates on a front chart. Alone (`color` None): dominated grey, the front red with a
    dotted line. One of several (a `color`): faint dots, the front as a line named `name`. A front over more values
    than the two drawn (`is_projected`) gets no line: its points are marked."""

    rows: pd.DataFrame  # z_<value>, on_front, id
    hover: list[str]  # one per row
    name: str = ""
    color: str | None = None
    staircase: bool = False  # two values: draw the front line as the edge of the region it dominates
    # a 2-D view of a front over more values (None: inferred, more than two z_ columns): no line joins its points,
    # which are non-dominated in all values and zigzag across the cloud in any two of them
    projected: bool | None = None

    def is_projected(self) -> bool:
        if self.projected is not None:
            return self.projected
        return sum(1 for c in self.rows.columns if str(c).startswith(z_column(""))) > 2


@dataclass
class Mark:
    """Points drawn over (or between) the fronts: the base model, your point, a policy's runs, the reference point.
    `style`: further go.Scatter settings (mode, text, hovertext, customdata, line, …)."""

    rows: pd.DataFrame  # z_<value>
    name: str
    marker: dict
    style: dict = field(default_factory=dict)


ON_SIMPLEX_SYMBOL, OFF_SIMPLEX_SYMBOL = "circle", "diamond"
OFF_SIMPLEX_LABEL = "off the simplex (extrapolated)"


def simplex_symbols(rows: pd.DataFrame) -> list[str]:
    """One marker symbol per candidate row: a diamond where its weights lie off the simplex (|Σ w − 1| > 1e-9, what
    extrapolation adds, MVA Eq.15–18), a circle on it (and where the rows carry no weights)."""
    off = off_simplex(rows["weights"].tolist()) if "weights" in rows and len(rows) else [False] * len(rows)
    return [OFF_SIMPLEX_SYMBOL if o else ON_SIMPLEX_SYMBOL for o in off]


def front_figure(x_name: str, y_name: str, layers: Sequence[Front | Mark], height: int = 560) -> go.Figure:
    """Candidates in z-score space (vs the base model), `layers` drawn in order: the chart Explore, Sweep and
    Compare share. Front points carry their candidate id as customdata (a click opens it); a front's candidates
    off the simplex are diamonds, with a legend entry saying so (`simplex_symbols`)."""
    x, y = z_column(x_name), z_column(y_name)
    fig = go.Figure()
    any_off = False
    for layer in layers:
        if isinstance(layer, Mark):
            style = {"mode": "markers", **layer.style}
            fig.add_trace(go.Scatter(x=layer.rows[x], y=layer.rows[y], name=layer.name, marker=layer.marker, **style))
            continue
        rows = layer.rows.assign(hover=layer.hover)
        rows = rows.assign(symbol=simplex_symbols(rows))
        any_off |= bool((rows["symbol"] == OFF_SIMPLEX_SYMBOL).any())
        front = rows[rows["on_front"].astype(bool)].sort_values(x)  # bool: an empty object column would pick columns
        projected = layer.is_projected()
        if layer.color is None:
            for on_front, name, style in [(False, "dominated", dict(color="#9aa5b1", size=8)),
                                          (True, "Pareto front (all values)" if projected else "Pareto front",
                                           dict(color="#d62728", size=11, line=dict(width=1, color="#7f1112")))]:
                part = rows[rows["on_front"] == on_front]
                fig.add_trace(go.Scatter(x=part[x], y=part[y], mode="markers", name=name,
                                         marker={**style, "symbol": part["symbol"].tolist()},
                                         hovertext=part["hover"], hoverinfo="text", customdata=part["id"]))
            if not projected:
                fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines", name="front line",
                                         line=dict(color="#d62728", dash="dot"), hoverinfo="skip"))
            continue
        fig.add_trace(go.Scatter(x=rows[x], y=rows[y], mode="markers", name=f"{layer.name} (all)",
                                 marker=dict(color=layer.color, size=6, opacity=0.35, symbol=rows["symbol"].tolist()),
                                 hovertext=rows["hover"], hoverinfo="text", customdata=rows["id"],
                                 legendgroup=layer.name, showlegend=False))
        if projected:  # its front points marked, not joined
            fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="markers", name=f"{layer.name} front (all values)",
                                     marker=dict(color=layer.color, size=10, line=dict(width=1, color="#222"),
                                                 symbol=front["symbol"].tolist()),
                                     legendgroup=layer.name, hovertext=front["hover"], hoverinfo="text",
                                     customdata=front["id"]))
            continue
        fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines+markers", name=layer.name,
                                 line=dict(color=layer.color, width=2, shape="vh" if layer.staircase else "linear"),
                                 marker=dict(color=layer.color, size=10, symbol=front["symbol"].tolist()),
                                 legendgroup=layer.name, hoverinfo="skip"))
    if any_off:  # the legend says what the diamonds are (a trace with no point of its own)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=OFF_SIMPLEX_LABEL, hoverinfo="skip",
                                 marker=dict(symbol=OFF_SIMPLEX_SYMBOL, size=10, color="#666")))
    fig.update_layout(xaxis_title=f"{x_name} (z vs base)", yaxis_title=f"{y_name} (z vs base)", height=height,
                      legend=dict(orientation="h", x=0, y=-0.15, yanchor="top"), margin=dict(l=10, r=10, t=30, b=10))
    return fig


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
