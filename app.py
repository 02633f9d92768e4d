"""MVA Explorer — Streamlit entry: access gate, navigation, workspace picker, shared sidebar.

The pages are functions (`pages.<name>.render`), so nothing renders when a module under pages/ is imported. With a
pages/ folder beside this file, Streamlit 1.67 starts a server process in its legacy multipage mode (one page per
file) until some session calls st.navigation, and in that mode a first request to /sweep runs pages/sweep.py by
itself (streamlit/runtime/scriptrunner/script_runner.py, `_mpa_v1`). So every file under pages/ ends by calling
`main()` when run as a script, and `main()` in such a run first turns that mode off; the run goes on as an app
run: the gate first, then the page the URL asks for (tests/test_pages_layout.py).
"""

import logging
import os

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

import pages.compare
import pages.diagnostics
import pages.explore
import pages.export
import pages.paper
import pages.responses
import pages.sweep
from mva_core.access import AccessError, admit
from mva_core.errors import as_user_error
from pages.shared import sidebar


def app_pages() -> list[st.Page]:
    """The app's pages, in the navigation's order; url_path is the page's file name, the URL it had as a file
    (/compare, /sweep, ...), so existing links keep working."""
    return [
        st.Page(pages.explore.render, title="Explore", icon=":material/tune:", url_path="explore", default=True),
        st.Page(pages.compare.render, title="Compare", icon=":material/compare_arrows:", url_path="compare"),
        st.Page(pages.sweep.render, title="Sweep", icon=":material/grid_on:", url_path="sweep"),
        st.Page(pages.responses.render, title="Responses", icon=":material/chat:", url_path="responses"),
        st.Page(pages.diagnostics.render, title="Diagnostics", icon=":material/biotech:", url_path="diagnostics"),
        st.Page(pages.paper.render, title="Paper", icon=":material/article:", url_path="paper"),
        st.Page(pages.export.render, title="Export", icon=":material/download:", url_path="export"),
    ]


def main() -> None:
    """One run of the app: page config, the access gate, the sidebar, then the page the URL asks for."""
    if getattr(PagesManager, "uses_pages_directory", False):  # a legacy pages/ mode run (see the module docstring)
        # st.navigation turns that mode off for this server process and makes the rest of this run an app run: on
        # the page the URL asks for, widgets keyed as in any run. Hidden: the visible one comes past the gate.
        st.navigation(app_pages(), position="hidden")
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
    nav = st.navigation(app_pages())
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
            st.error(f"Internal error ({type(exc).__name__}): a bug in MVA Explorer, not your input. Its traceback is "
                     "in the server log; please report it. Other pages still work.")


if __name__ == "__main__":  # Streamlit runs the main script as __main__ (and so does each page file, via main())
    main()
