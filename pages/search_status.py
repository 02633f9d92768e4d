"""The Sweep page's adaptive search: what its last run left (issue 31 item 3): stopped after k of n evaluations (a
Cancel, the header Stop, a killed process), or nothing to do because its whole budget is already stored."""

from __future__ import annotations

import json

import streamlit as st

from mva_core.workspace import Workspace

NOTE_KEY = "search_note"  # why the last Start search evaluated and recorded nothing (shown once)


def search_notices(ws: Workspace, method: str) -> None:
    """Above the search's controls: the note of a search that had nothing to do, and the method's last search run
    if it stopped: how many of its evaluations are stored, and that Start search with its settings resumes it."""
    note = st.session_state.pop(NOTE_KEY, None)
    if note is not None and note[0] == method:
        st.info(f"Nothing to search: {note[1]}.")
    runs = ws.store.runs()
    runs = runs[(runs["kind"] == "search") & (runs["method"] == method)] if len(runs) else runs
    if runs.empty or runs["status"].iloc[-1] != "stopped":
        return
    last = runs.iloc[-1]
    config = json.loads(last["config"])
    cands = ws.store.candidates(method)
    k = int((cands["run_id"] == last["id"]).sum()) if len(cands) else 0
    why = json.loads(last["log"]).get("reason") if isinstance(last["log"], str) else None
    how = "stopped by Cancel" if why == "cancelled" else "failed" if why == "failed" else "stopped"
    st.warning(f"Search run #{int(last['id'])} {how} after {k} of {config['budget']} evaluations; resume continues "
               f"from there: Start search with the same settings (budget {config['budget']}, batch "
               f"{config['batch']}, step {config['step']:g}) evaluates only the {config['budget'] - k} left.")


def remember_nothing_new(method: str, why: str) -> None:
    """Keep why a search evaluated nothing, for the notice after the page reruns."""
    st.session_state[NOTE_KEY] = (method, why)


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
