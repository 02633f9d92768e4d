"""Issue 19 items 1-2: an exposed app asks for a token, and opens workspaces only under the allowed roots.

The rules (mva_core.access) against hand-written cases; then the app itself in AppTest with the server address set
as `streamlit run --server.address 0.0.0.0` sets it: nothing of a workspace is rendered before the token is
accepted, and the token is never shown. tests/test_browser_access.py checks the same on a real server.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from mva_core.access import (
    MIN_TOKEN_LENGTH, OutsideRootsError, TokenMissingError, TokenNotConfiguredError, WrongTokenError, admit,
    check_workspace_path, is_loopback, required_token, token_matches, workspace_roots,
)
from mva_core.workspace import REPO_ROOT, WorkspaceError
from tests.apptest import APP, switch_page
from tests.tiny import make_tiny_workspace

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.mark.parametrize("address, loopback", [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.4.5.6", True), ("::1", True),
    ("[::1]", True), (None, False), ("", False), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
    ("10.0.0.1", False), ("myhost.example.org", False), ("localhost.evil.com", False),
])
def test_which_addresses_are_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_token_is_required_when_exposed_or_configured():
    assert required_token("localhost", {}) is None
    assert required_token("localhost", {"MVA_AUTH_TOKEN": "  "}) is None
    assert required_token("127.0.0.1", {"MVA_AUTH_TOKEN": TOKEN}) == TOKEN  # configured: asked (a proxy may expose it)
    assert required_token("0.0.0.0", {"MVA_AUTH_TOKEN": f"  {TOKEN}\n"}) == TOKEN
    for env in ({}, {"MVA_AUTH_TOKEN": ""}, {"MVA_AUTH_TOKEN": "   "}):
        with pytest.raises(TokenNotConfiguredError, match=r"MVA_AUTH_TOKEN is not set, so it refuses to serve; start "
                                                          r"it with MVA_AUTH_TOKEN=\$\(python -c"):
            required_token("0.0.0.0", env)
    with pytest.raises(TokenNotConfiguredError, match="every interface"):
        required_token(None, {})  # Streamlit's unset address listens everywhere
    for address in ("0.0.0.0", "localhost"):
        with pytest.raises(TokenNotConfiguredError, match=f"is 5 characters .* at least {MIN_TOKEN_LENGTH}"):
            required_token(address, {"MVA_AUTH_TOKEN": "short"})


def test_admit_and_token_comparison():
    env = {"MVA_AUTH_TOKEN": TOKEN}
    admit("0.0.0.0", TOKEN, env)  # no exception: admitted
    admit("localhost", None, {})
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN[:-1], TOKEN) and not token_matches(None, TOKEN)
    assert not token_matches(TOKEN + "x", TOKEN) and not token_matches("", TOKEN)
    assert token_matches("päss-wörd-ünïcode-0123", "päss-wörd-ünïcode-0123")  # non-ASCII compares as UTF-8
    for given in (None, "", "  "):
        with pytest.raises(TokenMissingError, match=r"\?token="):
            admit("0.0.0.0", given, env)
    for wrong in ("nope", TOKEN[:-1], TOKEN.upper()):
        with pytest.raises(WrongTokenError) as err:
            admit("0.0.0.0", wrong, env)
        assert TOKEN not in str(err.value) and wrong not in str(err.value)  # neither token is repeated


# ---- Workspace roots ----

def test_roots_from_the_environment_and_the_defaults(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    roots = workspace_roots({"MVA_WORKSPACE_ROOTS": f"{a}{os.pathsep}{os.pathsep}{b}{os.pathsep}",
                             "MVA_WORKSPACE": str(tmp_path / "started")})
    assert roots == [a.resolve(), b.resolve(), (tmp_path / "started").resolve()]
    default = workspace_roots({}, cwd=tmp_path)
    assert default == [(REPO_ROOT / "data").resolve(), tmp_path.resolve(), (REPO_ROOT / "data" / "workspace").resolve()]


def test_paths_outside_the_roots_are_refused(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "ws" / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "out_link").symlink_to(elsewhere, target_is_directory=True)  # a symlink pointing out
    (root / "in_link").symlink_to(root / "ws", target_is_directory=True)  # a symlink staying inside
    roots = [root]
    assert check_workspace_path(root / "ws", roots) == (root / "ws").resolve()
    assert check_workspace_path(root, roots) == root.resolve()
    assert check_workspace_path(root / "ws" / "sub" / "..", roots) == (root / "ws").resolve()
    assert check_workspace_path(root / "in_link", roots) == (root / "ws").resolve()
    for bad in (elsewhere, root / ".." / "elsewhere", root / "ws" / ".." / ".." / "elsewhere", root / "out_link",
                root / "out_link" / "deeper", Path("/etc"), tmp_path / "rootling"):
        with pytest.raises(OutsideRootsError, match=r"is outside the directories this app may open .*restart the app "
                                                    r"with MVA_WORKSPACE_ROOTS") as err:
            check_workspace_path(bad, roots)
        assert isinstance(err.value, WorkspaceError)  # pages that show a workspace's errors show this one too
    with pytest.raises(OutsideRootsError):
        check_workspace_path(root / "ws", [])


def test_relative_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "ws").mkdir()
    monkeypatch.chdir(tmp_path / "ws")
    assert check_workspace_path(".", [tmp_path]) == (tmp_path / "ws").resolve()
    with pytest.raises(OutsideRootsError, match=r"'\.\./\.\.'"):
        check_workspace_path("../..", [tmp_path])


# ---- The app ----

@pytest.fixture(scope="module")
def ws_root(tmp_path_factory) -> Path:
    from mva_core.sweep import Evaluator, evaluate_base

    ws = make_tiny_workspace(tmp_path_factory.mktemp("access_ws"), n_prompts=2)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    ev.evaluate([[1.0, 0.0], [0.0, 1.0]])
    return ws.root


@pytest.fixture()
def exposed():
    """The app as `streamlit run app.py --server.address 0.0.0.0` serves it."""
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    yield
    st_config.set_option("server.address", before)


def rendered(at: AppTest) -> list[str]:
    """Every element the run rendered, main area and sidebar, as 'type' (blocks are walked, not listed)."""
    out = []

    def walk(node):
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child)
        elif node.type not in ("main", "sidebar", "event", "root"):
            out.append(node.type)

    walk(at._tree)
    return out


def open_app(monkeypatch, ws_root, token: str | None = None, configured: str | None = TOKEN) -> AppTest:
    monkeypatch.setenv("MVA_WORKSPACE", str(ws_root))
    if configured is None:
        monkeypatch.delenv("MVA_AUTH_TOKEN", raising=False)
    else:
        monkeypatch.setenv("MVA_AUTH_TOKEN", configured)
    at = AppTest.from_file(APP, default_timeout=180)
    if token is not None:
        at.query_params["token"] = token
    return at.run()


@pytest.mark.parametrize("token, configured, expect", [
    (None, None, "MVA_AUTH_TOKEN is not set, so it refuses to serve"),
    (TOKEN, None, "MVA_AUTH_TOKEN is not set, so it refuses to serve"),
    (None, TOKEN, "this app is shared with a token: open the link you were given"),
    ("wrong-token", TOKEN, "the token in this link is wrong"),
    (TOKEN[:-1], TOKEN, "the token in this link is wrong"),
])
def test_exposed_app_shows_one_line_and_nothing_else(exposed, ws_root, monkeypatch, token, configured, expect):
    at = open_app(monkeypatch, ws_root, token, configured)
    assert not at.exception, at.exception
    assert rendered(at) == ["error"], rendered(at)  # no sidebar, chart, table, response or workspace path
    assert len(at.error) == 1 and expect in at.error[0].value
    assert "\n" not in at.error[0].value
    assert TOKEN not in at.error[0].value and (token is None or token not in at.error[0].value)
    at.run()  # and stays shut on the next run
    assert rendered(at) == ["error"]


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_exposed_app_with_the_token_opens_and_keeps_the_session(exposed, ws_root, monkeypatch):
    at = open_app(monkeypatch, ws_root, TOKEN)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.text_input(key="workspace").value == str(ws_root)
    assert at.get("plotly_chart"), "the Explore chart is missing"
    assert "token" not in at.query_params  # it left the address bar
    switch_page(at, "pages/compare.py").run()  # a later run of the session, without the token in the URL
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.get("plotly_chart")
    assert at.session_state["_mva_admitted"] is True
    assert all(TOKEN not in repr(v) for v in at.session_state.to_dict().values())  # the token itself is kept nowhere


def test_loopback_app_asks_nothing_unless_a_token_is_configured(ws_root, monkeypatch):
    at = open_app(monkeypatch, ws_root, configured=None)
    assert not at.exception and not at.error and at.get("plotly_chart")
    at = open_app(monkeypatch, ws_root, configured=TOKEN)  # e.g. behind a reverse proxy on this machine
    assert rendered(at) == ["error"] and "this app is shared with a token" in at.error[0].value
    at = open_app(monkeypatch, ws_root, TOKEN, configured=TOKEN)
    assert not at.exception and not at.error and at.get("plotly_chart")


def test_sidebar_refuses_workspaces_outside_the_roots(ws_root, tmp_path, monkeypatch):
    """The started-with workspace opens; a path outside, a `..` out of it and a symlink pointing out are refused
    with the message, and nothing of theirs renders."""
    other = make_tiny_workspace(tmp_path / "other", n_prompts=1).root
    (ws_root.parent / "link_out").unlink(missing_ok=True)
    (ws_root.parent / "link_out").symlink_to(other, target_is_directory=True)
    monkeypatch.setenv("MVA_WORKSPACE_ROOTS", str(ws_root))
    at = open_app(monkeypatch, ws_root, configured=None)
    assert not at.error and at.get("plotly_chart")
    for path in (other, ws_root / os.path.relpath(other, ws_root), ws_root.parent / "link_out"):
        at.text_input(key="workspace").set_value(str(path)).run()
        assert not at.exception, at.exception
        assert [e.value for e in at.error] and "is outside the directories this app may open" in at.error[0].value
        assert not at.get("plotly_chart") and not at.dataframe and not at.slider
    monkeypatch.setenv("MVA_WORKSPACE_ROOTS", f"{ws_root}{os.pathsep}{tmp_path}")  # allowed: it opens
    at.text_input(key="workspace").set_value(str(other)).run()
    assert not at.exception and not at.error
    assert [s.key for s in at.slider] == ["w_warmth", "w_brevity"] and "No candidates yet" in at.info[0].value
