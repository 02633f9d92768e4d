"""What every page shares: the workspace picker and the cached engine objects (never mutated per session)."""

from __future__ import annotations

import streamlit as st

from mva_core.results import candidate_table
from mva_core.sweep import Evaluator
from mva_core.workspace import Workspace, WorkspaceError, default_workspace, open_workspace


@st.cache_resource(show_spinner="Opening workspace…")
def get_workspace(root: str) -> Workspace:
    return open_workspace(root)


@st.cache_resource(show_spinner="Loading the base model and value vectors…")
def get_evaluator(root: str, method: str) -> Evaluator:
    """One per (workspace, method), shared by all sessions: weights travel with each call, not in the model."""
    return Evaluator(get_workspace(root), method)


@st.cache_data(show_spinner=False)
def get_table(root: str, version: int):
    """Candidate table; `version` (the store's candidate count) invalidates it when results land."""
    return candidate_table(get_workspace(root))


def table_version(ws: Workspace) -> int:
    return ws.store.version()


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
