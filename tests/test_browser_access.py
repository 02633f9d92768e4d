"""Issue 19 "done when", in headless Chromium on `streamlit run app.py --server.address 0.0.0.0`:

- no MVA_AUTH_TOKEN: every page shows the one-line refusal, nothing else of the app;
- MVA_AUTH_TOKEN set: a browser without the token (or with a wrong one, or on a page's own URL) sees no workspace
  data; one opened with ?token= sees the app, the token leaves its address bar, and it stays admitted page to page;
- a fresh server's first request to a page's own URL (/export, /compare) still runs app.py's gate first, and the
  navigation lists only app.py's pages. (With the pages/ folder beside app.py, Streamlit 1.67 runs in its legacy
  multipage mode until some session has called st.navigation, and runs pages/export.py itself on a first request to
  /export: every pages/ file then calls app.main(), which reruns as the app; tests/test_pages_layout.py checks that
  first request for a page and for helper modules.)
- the token is in no server log line; visitors see no Deploy button or developer menu (item 7).
"""

from __future__ import annotations

import secrets
import shutil

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, serve_app

ALERT = '[data-testid="stAlert"]'


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    from mva_core.workspace import DEMO_WORKSPACE

    root = tmp_path_factory.mktemp("access_browser") / "ws"
    shutil.copytree(DEMO_WORKSPACE, root)
    return root


def page_text(page) -> str:
    return page.inner_text("body")


def shut(page, ws, expect: str) -> None:
    """The page shows `expect` in its one alert and nothing of the app or the workspace."""
    page.wait_for_selector(ALERT, timeout=60_000)
    page.wait_for_timeout(1500)  # a late element would show up now
    alerts = page.locator(ALERT)
    assert alerts.count() == 1 and expect in alerts.first.inner_text(), alerts.all_inner_texts()
    for absent in ('.js-plotly-plot', '[data-testid="stSidebar"]', '[data-testid="stSidebarNav"]',
                   '[data-testid="stDataFrame"]', '[data-testid="stSlider"]', '[data-testid="stTextInput"]',
                   '[data-testid="stException"]'):
        assert page.locator(absent).count() == 0, absent
    text = page_text(page)
    assert str(ws) not in text and "warmth" not in text and "brevity" not in text, text[:500]


@pytest.mark.slow
def test_exposed_app_refuses_without_a_token_and_opens_with_it(ws, tmp_path):
    from playwright.sync_api import sync_playwright

    token = secrets.token_urlsafe(24)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

        # ---- Exposed with no token configured: refuses to serve ----
        with serve_app(ws, tmp_path / "no_token.log", address="0.0.0.0", env={"MVA_AUTH_TOKEN": ""}) as (url, _):
            page = browser.new_page()
            for path in ("/export", "", f"?token={token}"):  # first a page's own URL, on a server no session has used
                page.goto(url + path, timeout=60_000)
                shut(page, ws, "MVA_AUTH_TOKEN is not set, so it refuses to serve; start it with MVA_AUTH_TOKEN=")
            page.close()

        # ---- Exposed with a token ----
        log = tmp_path / "token.log"
        with serve_app(ws, log, address="0.0.0.0", env={"MVA_AUTH_TOKEN": token}) as (url, _):
            # the server's first request is a page's own URL with the token: it goes through app.py's gate
            friend = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            friend.goto(f"{url}/compare?token={token}", timeout=60_000)
            friend.wait_for_selector(".js-plotly-plot", timeout=120_000)
            assert friend.locator(ALERT).filter(has_text="token").count() == 0
            friend.wait_for_function("() => !location.search.includes('token')", timeout=20_000)
            # only the pages app.py lists: Streamlit's legacy pages/ mode (a page per file) is off
            links = friend.locator('[data-testid="stSidebarNav"] a')
            assert [t.split()[-1] for t in links.all_inner_texts()] == \
                ["Explore", "Compare", "Sweep", "Responses", "Diagnostics", "Paper", "Export"], links.all_inner_texts()

            stranger = browser.new_context().new_page()
            asked, wrong = "this app is shared with a token", "the token in this link is wrong"
            for path, expect in [("/sweep", asked), ("", asked), ("/compare", asked), (f"?token={token[:-1]}", wrong),
                                 ("?token=", asked)]:
                stranger.goto(url + path, timeout=60_000)
                shut(stranger, ws, expect)
            assert "Deploy" not in page_text(friend)  # client.toolbarMode = "viewer"
            friend.locator('[data-testid="stSidebarNav"] a[href$="/compare"]').click()
            friend.wait_for_function("() => location.pathname.endsWith('/compare')", timeout=30_000)
            friend.wait_for_selector("h1:has-text('Compare methods')", timeout=120_000)
            assert friend.locator('[data-testid="stException"]').count() == 0
            assert "this app is shared with a token" not in page_text(friend)

            stranger.reload()  # the friend's admission is theirs alone
            shut(stranger, ws, "this app is shared with a token")
            friend.goto(url, timeout=60_000)  # a new session (reload): asks again
            shut(friend, ws, "this app is shared with a token")
        browser.close()
    assert token not in log.read_text() and token[:-1] not in log.read_text()
