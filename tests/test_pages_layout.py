"""pages/ as DESIGN §2 lays it out, without Streamlit's legacy pages/ mode opening a door past app.py's gate (issue 26
item 6).

With a pages/ folder beside app.py, Streamlit 1.67 serves a fresh process in its legacy multipage mode (a page per
file, `_mpa_v1` in streamlit/runtime/scriptrunner/script_runner.py) until some session has called st.navigation; in
that mode a first request to /sweep runs pages/sweep.py itself. So:

- the navigation lists exactly app.py's 7 pages; helper modules (shared, choose_*, ...) are no pages;
- no module under pages/ renders anything when imported (a page is its `render` function);
- on a real `streamlit run app.py` server that requires a token, the first request, to /sweep or to a helper's name
  (/shared), shows the gate's one line and nothing of the page; with the token, /sweep renders the Sweep page.
"""

from __future__ import annotations

import ast
import secrets
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import APP, navigation, open_page, switch_page
from tests.tiny import make_tiny_workspace

ROOT = Path(APP).parent
APP_PAGES = [("Explore", ""), ("Compare", "compare"), ("Sweep", "sweep"), ("Responses", "responses"),
             ("Diagnostics", "diagnostics"), ("Paper", "paper"), ("Export", "export")]  # "": the default page
PAGE_FILES = {"explore", "compare", "sweep", "responses", "diagnostics", "paper", "export"}  # pages/<name>.py


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return make_tiny_workspace(tmp_path_factory.mktemp("pages_layout"), n_prompts=2).root


def test_the_layout_is_designs():
    """DESIGN §2: app.py, pages/, mva_core/, data/, tests/ at the top; no views/ left."""
    for name in ("app.py", "pages", "mva_core", "data", "tests", "requirements.txt", "README.md"):
        assert (ROOT / name).exists(), name
    assert not (ROOT / "views").exists()


def test_the_navigation_lists_exactly_app_pys_pages(tiny_root, monkeypatch):
    at = open_page(monkeypatch, tiny_root)
    assert navigation(at) == APP_PAGES
    assert at.title[0].value == "Explore the value trade-off"  # the default page rendered
    helpers = sorted(p.stem for p in (ROOT / "pages").glob("*.py") if p.stem not in PAGE_FILES | {"__init__"})
    assert {"shared", "choose_pick", "explore_live"} <= set(helpers)  # the helpers below are real modules
    for helper in helpers:
        with pytest.raises(ValueError, match="is not a page of app.py's navigation"):
            switch_page(at, f"pages/{helper}.py")
    switch_page(at, "pages/sweep.py").run()  # a page by its URL, as a link to /sweep opens it
    assert not at.exception and at.title[0].value == "Sweep a weight grid"
    assert navigation(at) == APP_PAGES


def test_a_page_is_its_render_function_and_a_helper_has_none():
    """Every page app.py lists is `pages.<url>.render`; no other module under pages/ defines `render`."""
    for path in sorted((ROOT / "pages").glob("*.py")):
        tree = ast.parse(path.read_text())
        defines = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert ("render" in defines) == (path.stem in PAGE_FILES), path.name


def elements(at: AppTest) -> list[str]:
    """The type of every element a run rendered, main area and sidebar (blocks walked, not listed)."""
    return [node.type for node in [*at.main, *at.sidebar] if node.type not in ("main", "sidebar")
            and not isinstance(getattr(node, "children", None), dict)]


IMPORT_ALL = '''
import importlib, sys
sys.path.insert(0, {root!r})
names = {names!r}
for name in [m for m in sys.modules if m == "app" or m == "pages" or m.startswith("pages.")]:
    del sys.modules[name]
for name in names:
    importlib.import_module(name)
'''


def test_importing_the_pages_renders_nothing(tiny_root, monkeypatch):
    """Each module under pages/ (and app.py as a module), imported fresh inside a Streamlit run, renders no element
    and registers no navigation: what renders is what app.main() and a page's render() call."""
    monkeypatch.setenv("MVA_WORKSPACE", str(tiny_root))
    names = ["app"] + [f"pages.{p.stem}" for p in sorted((ROOT / "pages").glob("*.py")) if p.stem != "__init__"]
    assert len(names) >= 19, names
    at = AppTest.from_string(IMPORT_ALL.format(root=str(ROOT), names=names), default_timeout=120).run()
    assert not at.exception, at.exception
    assert elements(at) == []
    assert all("url_pathname" not in info for info in at._registered_pages.values())  # no st.navigation ran
    # the check can fail: a module that renders at import shows up
    bad = AppTest.from_string(IMPORT_ALL.format(root=str(ROOT), names=names) + "import streamlit as st\n"
                              "st.title('rendered at import')\n", default_timeout=120).run()
    assert elements(bad) == ["title"]


# ---- A real server, fresh for each first request ----

@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory):
    from mva_core.workspace import DEMO_WORKSPACE

    root = tmp_path_factory.mktemp("pages_browser") / "ws"
    shutil.copytree(DEMO_WORKSPACE, root)
    return root


@pytest.mark.slow
def test_a_fresh_servers_first_request_to_a_page_file_goes_through_the_gate(demo_ws, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS, serve_app
    from tests.test_browser_access import ALERT, shut

    token = secrets.token_urlsafe(24)
    asked = "this app is shared with a token"
    env = {"MVA_AUTH_TOKEN": token}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for first in ("/sweep", "/shared", "/choose_pick"):  # a page's file, helper modules' files
            log = tmp_path / f"{first.strip('/')}.log"
            with serve_app(demo_ws, log, address="0.0.0.0", env=env) as (url, _):
                stranger = browser.new_page()
                stranger.goto(url + first, timeout=60_000)  # the server's first request: legacy pages/ mode
                shut(stranger, demo_ws, asked)
                assert "Sweep a weight grid" not in stranger.inner_text("body")
                stranger.close()
            assert "Traceback" not in log.read_text(), log.read_text()[-3000:]

        with serve_app(demo_ws, tmp_path / "token.log", address="0.0.0.0", env=env) as (url, _):
            friend = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            friend.goto(f"{url}/sweep?token={token}", timeout=60_000)  # the first request, with the token
            friend.wait_for_selector("h1:has-text('Sweep a weight grid')", timeout=120_000)
            assert friend.locator(ALERT).filter(has_text="token").count() == 0
            assert friend.locator('[data-testid="stException"]').count() == 0
            assert "warmth" in friend.inner_text("body")  # the workspace's values: the page rendered its data
            friend.wait_for_function("() => location.pathname.endsWith('/sweep')", timeout=20_000)
            links = friend.locator('[data-testid="stSidebarNav"] a')
            assert [t.split()[-1] for t in links.all_inner_texts()] == [t for t, _ in APP_PAGES], \
                links.all_inner_texts()
            stranger = browser.new_page()  # a second session on the same server: still shut
            stranger.goto(url + "/sweep", timeout=60_000)
            shut(stranger, demo_ws, asked)
        browser.close()
