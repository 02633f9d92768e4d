"""Shared AppTest plumbing: open the app on a workspace, go to a page, read Plotly arrays."""

import base64
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(monkeypatch, root, page: str | None = None) -> AppTest:
    """Run app.py on workspace `root`; with `page` (e.g. "views/sweep.py"), switch to it."""
    monkeypatch.setenv("MVA_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def plotly_array(a):
    """Plotly serialises numeric arrays as {'bdata': base64, 'dtype': ...}."""
    if isinstance(a, dict):
        return np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"])
    return np.asarray(a)
