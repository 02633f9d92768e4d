"""MVA Explorer — Streamlit entry: access gate, navigation, workspace picker, shared sidebar."""

import logging
import os

import streamlit as st

from mva_core.access import AccessError, admit
from mva_core.errors import as_user_error
from views.shared import sidebar

st.set_page_config(page_title="MVA Explorer", page_icon="⚖️", layout="wide")
# ---- Access: exposed, nothing of a workspace renders before the token is accepted ----
if not st.session_state.get("_mva_admitted"):
    try:
        admit(st.get_option("server.address"), st.query_params.get("token"))
    except AccessError as exc:
        st.error(str(exc))
        st.stop()
    st.session_state["_mva_admitted"] = True  # the session is admitted; the token itself is kept nowhere
    st.query_params.pop("token", None)  # and leaves the address bar
sidebar()
nav = st.navigation([
    st.Page("views/explore.py", title="Explore", icon=":material/tune:", default=True),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("views/sweep.py", title="Sweep", icon=":material/grid_on:"),
    st.Page("views/responses.py", title="Responses", icon=":material/chat:"),
    st.Page("views/diagnostics.py", title="Diagnostics", icon=":material/biotech:"),
    st.Page("views/paper.py", title="Paper", icon=":material/article:"),
    st.Page("views/export.py", title="Export", icon=":material/download:"),
])
try:
    nav.run()
except Exception as exc:  # an expected failure (damaged store, read-only, disk full…) is shown as its message
    user_error = as_user_error(exc)
    if user_error is not None:
        st.error(str(user_error))
    elif os.environ.get("MVA_DEBUG"):  # the tests (and developers) see a bug's traceback on the page
        raise
    else:  # a bug: its traceback goes to the server log, the page says so in one line
        logging.getLogger("mva_explorer").exception("internal error on a page")
        st.error(f"Internal error ({type(exc).__name__}): a bug in MVA Explorer, not your input. Its traceback is in "
                 "the server log; please report it. Other pages still work.")
