"""MVA Explorer — Streamlit entry: navigation, workspace picker, shared sidebar."""

import streamlit as st

from views.shared import sidebar

st.set_page_config(page_title="MVA Explorer", page_icon="⚖️", layout="wide")
sidebar()
nav = st.navigation([
    st.Page("views/explore.py", title="Explore", icon=":material/tune:", default=True),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("views/sweep.py", title="Sweep", icon=":material/grid_on:"),
    st.Page("views/responses.py", title="Responses", icon=":material/chat:"),
    st.Page("views/diagnostics.py", title="Diagnostics", icon=":material/biotech:"),
    st.Page("views/export.py", title="Export", icon=":material/download:"),
])
nav.run()
