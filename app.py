"""MVA Explorer — Streamlit entry: navigation, workspace picker, shared sidebar."""

import streamlit as st

from pages.shared import sidebar

st.set_page_config(page_title="MVA Explorer", page_icon="⚖️", layout="wide")
sidebar()
nav = st.navigation([
    st.Page("pages/explore.py", title="Explore", icon="🎚️", default=True),
    st.Page("pages/sweep.py", title="Sweep", icon="🧮"),
    st.Page("pages/responses.py", title="Responses", icon="💬"),
])
nav.run()
