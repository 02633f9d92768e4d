"""Shared AppTest plumbing: open the app on a workspace, go to a page, read Plotly arrays."""

import base64
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(monkeypatch, root, page: str | None = None) -> AppTest:
    """Run app.py on workspace `root`; with `page` (e.g. "pages/sweep.py"), switch to it."""
    monkeypatch.setenv("MVA_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    if page is not None:
        switch_page(at, page).run()
    assert not at.exception, at.exception
    return at


def navigation(at: AppTest) -> list[tuple[str, str]]:
    """(title, url path) of every page the last run's st.navigation listed, in order (the default page's url path
    is "")."""
    return [(info["page_name"], info["url_pathname"]) for info in at._registered_pages.values()]


def switch_page(at: AppTest, page: str) -> AppTest:
    """Go to the page of file `page` (e.g. "pages/sweep.py") on the next run, as a browser opening /sweep would.

    app.py's pages are functions, so AppTest.switch_page (which matches a page's script file) cannot find them;
    a page's identity in Streamlit is the hash of its url_path, which app.py pins to the file name. Refuses a page
    the last run's navigation does not list (Streamlit would silently show the default page instead)."""
    url_path = Path(page).stem
    listed = [info for info in at._registered_pages.values() if "url_pathname" in info]  # [] if no nav ran yet
    if listed and calc_hash(url_path) not in {info["page_script_hash"] for info in listed}:
        raise ValueError(f"{page!r} is not a page of app.py's navigation: {navigation(at)}")
    at._page_hash = calc_hash(url_path)
    return at


def plotly_array(a):
    """Plotly serialises numeric arrays as {'bdata': base64, 'dtype': ...}."""
    if isinstance(a, dict):
        return np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"])
    return np.asarray(a)
