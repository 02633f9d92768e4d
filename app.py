"""MVA Explorer — Streamlit entry: navigation, workspace picker, shared sidebar."""

import streamlit as st

from views.shared import sidebar

st.set_page_config(page_title="MVA Explorer", page_icon="⚖️", layout="wide")
sidebar()
nav = st.navigation([
    st.Page("views/explore.py", title="Explore", icon="🎚️", default=True),
    st.Page("views/compare.py", title="Compare", icon="📊"),
    st.Page("views/sweep.py", title="Sweep", icon="🧮"),
    st.Page("views/responses.py", title="Responses", icon="💬"),
    st.Page("views/diagnostics.py", title="Diagnostics", icon="🔬"),
    st.Page("views/export.py", title="Export", icon="📦"),
])
nav.run()
