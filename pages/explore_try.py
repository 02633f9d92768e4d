"""Explore's "Try it" box: a chat message at the sliders' weights through the serving engine (mva_core.serve_engine)
over the model the page already holds (no second copy), with the curl / openai snippet that asks a server for the
same point."""

from __future__ import annotations

from typing import Sequence

import streamlit as st

from mva_core.errors import MVAError
from mva_core.serve import Dial, request_snippets
from mva_core.serve_engine import ServeEngine
from mva_core.workspace import Workspace
from pages.shared import get_evaluator, get_workspace, manifest_stamp


@st.cache_resource(show_spinner="Starting the serving engine…")
def _dial(root: str, stamp: int, method: str) -> Dial:
    """One engine per (workspace, method), over the shared evaluator's weight-batched model: every session's
    message decodes in its batch, each row its own weights."""
    ev = get_evaluator(root, method)
    return Dial(get_workspace(root), method, ServeEngine(ev.model, ev.base.tokenizer), ev.base.tokenizer)


def try_it(ws: Workspace, method: str, weights: Sequence[float], conditioned: bool) -> None:
    """The box; `weights` are the sliders' (a conditioned policy's p is not a point the server composes)."""
    with st.expander("Try it: chat at these weights, and how to ask the server for them"):
        if conditioned:
            st.caption("The server composes value vectors; a policy conditioned on p is not served. Pick a weight "
                       "method (e.g. mva) to try a point.")
            return
        point = dict(zip(ws.value_names, [round(float(w), 4) for w in weights]))
        message = st.text_input("Message", value="How do I bake bread?", key="explore_try_message")
        if st.button("Send", key="explore_try_send", disabled=not message.strip()):
            with st.spinner(f"Generating at {point}…"):
                try:
                    dial = _dial(str(ws.root), manifest_stamp(str(ws.root)), method)
                    st.session_state["explore_try_reply"] = (point, message, dial.reply(message, weights))
                except MVAError as exc:
                    st.error(str(exc))
        shown = st.session_state.get("explore_try_reply")
        if shown is not None:
            at, asked, reply = shown
            st.markdown(f"**At {at}** · *{asked}*")
            st.text(reply)
        snippets = request_snippets(ws.root, method, ws.value_names, weights, message)
        st.caption(f"Serve it: `{snippets['serve']}` (localhost:8000; the model name form is "
                   f"`{snippets['model']}`)")
        tab_curl, tab_py = st.tabs(["curl", "openai client"])
        tab_curl.code(snippets["curl"], language="bash")
        tab_py.code(snippets["openai"], language="python")


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
