"""AppTest of switching the sidebar's workspace on a page whose method choice the new workspace lacks: the page
opens on that workspace's first method, without an error. The guard is pages/shared.forget_stale; Streamlit 1.67
also drops a stale selectbox choice by itself, so this checks the outcome on every page, not which of the two did it."""

import pytest

from mva_core.sweep import Evaluator, evaluate_base
from tests.apptest import open_page
from tests.tiny import make_tiny_workspace

PAGES = [("pages/explore.py", "explore_method"), ("pages/export.py", "export_method"),
         ("pages/responses.py", "responses_method"), ("pages/sweep.py", "sweep_method"),
         ("pages/diagnostics.py", "diag_method")]


@pytest.fixture(scope="module")
def two_workspaces(tmp_path_factory):
    roots = []
    for name, method in [("first", "mva-no-hsic"), ("second", "mva")]:
        ws = make_tiny_workspace(tmp_path_factory.mktemp(name), method=method, n_prompts=1)
        ev = Evaluator(ws, method)
        evaluate_base(ws, ev.base)
        ev.evaluate([[1.0, 0.0], [0.0, 1.0]])
        roots.append(ws.root)
    return roots


@pytest.mark.parametrize("page, key", PAGES)
@pytest.mark.slow
def test_switching_workspace_forgets_a_method_it_lacks(two_workspaces, monkeypatch, page, key):
    first, second = two_workspaces
    monkeypatch.setenv("MVA_WORKSPACE_ROOTS", str(first.parent.parent))  # the sidebar opens only under the roots
    at = open_page(monkeypatch, first, page)
    box = at.selectbox(key=key)
    default = box.value  # the first workspace's first method
    assert default != "mva" and "mva" not in [box.value, *box.options]  # options are formatted labels
    box.set_value(box.options[-1] if page != "pages/sweep.py" else default).run()  # sweep's labels carry the kind
    assert not at.exception, at.exception

    at.text_input(key="workspace").set_value(str(second)).run()
    assert not at.exception, at.exception
    assert at.selectbox(key=key).value == "mva"  # the second workspace's only method

    at.text_input(key="workspace").set_value(str(first)).run()  # and back: that workspace's first method again
    assert not at.exception, at.exception
    assert at.selectbox(key=key).value == default
