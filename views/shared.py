"""What every page shares: the workspace picker and the cached engine objects (never mutated per session)."""

from __future__ import annotations

import streamlit as st

from mva_core.results import candidate_table
from mva_core.models import BaseModel, load_base
from mva_core.sweep import BASE_METHOD, Evaluator
from mva_core.vectors import load_value_vector
from mva_core.workspace import Workspace, WorkspaceError, default_workspace, open_workspace


@st.cache_resource(show_spinner="Opening workspace…")
def get_workspace(root: str) -> Workspace:
    return open_workspace(root)


@st.cache_resource(show_spinner="Loading the base model…")
def get_base(root: str) -> BaseModel:
    """The workspace's base model, loaded once and shared by every evaluator and session (never mutated)."""
    return load_base(get_workspace(root).manifest.base)


@st.cache_resource(show_spinner="Loading the value vectors…")
def get_evaluator(root: str, method: str, vector_dirs: tuple[str, ...] | None = None) -> Evaluator:
    """One per (workspace, method, vectors), shared by all sessions: weights travel with each call, not in the
    model. `vector_dirs` picks one model of a method that has one per preference (dpo-lw, modpo, dpo-seqt)."""
    vectors = [load_value_vector(d) for d in vector_dirs] if vector_dirs is not None else None
    return Evaluator(get_workspace(root), method, base=get_base(root), vectors=vectors)


@st.cache_data(show_spinner=False)
def get_table(root: str, version: int, prompts_file: str | None = None):
    """Candidate table; `version` (the store's candidate count) invalidates it when results land. `prompts_file`:
    the candidates of that prompt set (default workspace.json's)."""
    ws = get_workspace(root)
    return candidate_table(ws, prompts=None if prompts_file is None else ws.prompts(prompts_file))


def table_version(ws: Workspace) -> int:
    return ws.store.version()


def methods_with_candidates(ws: Workspace, table) -> list[str]:
    """Methods that have stored candidates: the workspace's comparison rows first (grid methods first), then
    candidates of vectors no method reads any more."""
    present = set(table["method"]) - {BASE_METHOD} if not table.empty else set()
    rows = [m.name for m in ws.compared_methods()]
    return [m for m in rows if m in present] + sorted(present - set(rows))


def sidebar() -> None:
    default = str(default_workspace())
    with st.sidebar:
        path = st.text_input("Workspace", value=default, key="workspace",
                             help="A directory with workspace.json (default: $MVA_WORKSPACE or data/workspace).")
    # An emptied box means "the default", never the current directory.
    st.session_state["workspace_path"] = path.strip() or default


def current_workspace() -> Workspace | None:
    try:
        return get_workspace(st.session_state.get("workspace_path", str(default_workspace())))
    except WorkspaceError as exc:
        st.error(str(exc))
        return None
