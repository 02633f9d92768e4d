"""Pages tell a user's mistake from our bug (issue 26 item 5): a user error (an `MVAError`) is shown as its message;
anything else is a bug, whose traceback goes to the server log while the page shows one line saying so, never the
bug's text dressed as advice. AppTest on the real app.py."""

from __future__ import annotations

import logging

import pytest

from mva_core.sweep import Evaluator, evaluate_base
from tests.apptest import open_page
from tests.tiny import make_tiny_workspace


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    ws = make_tiny_workspace(tmp_path_factory.mktemp("errors"), n_prompts=1)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    ev.evaluate([[1.0, 0.0], [0.0, 1.0]])
    return ws.root


def test_a_bug_is_one_line_on_the_page_and_a_traceback_in_the_log(ws_root, monkeypatch, caplog):
    monkeypatch.delenv("MVA_DEBUG", raising=False)

    def broken(*args, **kwargs):
        raise ValueError("math domain error")  # a ValueError of our own making, not a user's mistake

    monkeypatch.setattr("mva_core.pareto.non_dominated_rank", broken)
    with caplog.at_level(logging.ERROR, logger="mva_explorer"):
        at = open_page(monkeypatch, ws_root, "pages/compare.py")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Internal error (ValueError): a bug in MVA Explorer"), errors
    assert "math domain error" not in errors[0]  # the bug's own text is not shown as if it were advice
    logged = [r for r in caplog.records if r.name == "mva_explorer"]
    assert logged and "math domain error" in logged[0].exc_text and "Traceback" in logged[0].exc_text


def test_with_mva_debug_the_bug_raises(ws_root, monkeypatch):
    monkeypatch.setenv("MVA_DEBUG", "1")
    monkeypatch.setattr("mva_core.pareto.non_dominated_rank", lambda *a, **k: 1 / 0)
    monkeypatch.setenv("MVA_WORKSPACE", str(ws_root))
    from streamlit.testing.v1 import AppTest

    from tests.apptest import APP

    at = AppTest.from_file(APP, default_timeout=180).run()
    assert at.exception and "division by zero" in at.exception[0].message


def test_a_user_error_shows_its_message(ws_root, tmp_path, monkeypatch):
    """A workspace whose workspace.json is broken: the message names the file and the fix (a WorkspaceError)."""
    monkeypatch.delenv("MVA_DEBUG", raising=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "workspace.json").write_text("{not json")
    monkeypatch.setenv("MVA_WORKSPACE_ROOTS", str(tmp_path))
    at = open_page(monkeypatch, bad)
    assert not at.exception
    assert any("is not valid JSON" in e.value for e in at.error), [e.value for e in at.error]
