"""What every page shares: the workspace picker and the cached engine objects (never mutated per session)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mva_core.results import candidate_table
from mva_core.models import BaseModel, load_base
from mva_core.sweep import BASE_METHOD, Evaluator
from mva_core.vectors import load_value_vector
from mva_core.errors import as_user_error
from mva_core.workspace import MANIFEST, Workspace, default_workspace, open_workspace


@st.cache_resource(show_spinner="Opening workspace…")
def _open_workspace(root: str, manifest_stamp: int) -> Workspace:
    return open_workspace(root)


def get_workspace(root: str) -> Workspace:
    """The workspace at `root`, reopened when its workspace.json changes (edits apply without a restart)."""
    return _open_workspace(root, manifest_stamp(root))


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
    """The sidebar's workspace, or None after showing why it cannot be opened (a damaged or invalid one)."""
    try:
        return get_workspace(st.session_state.get("workspace_path", str(default_workspace())))
    except Exception as exc:
        user_error = as_user_error(exc)
        if user_error is None:
            raise
        st.error(str(user_error))
        return None
