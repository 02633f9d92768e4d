"""Who may use a shared app (DESIGN §4 "Exposed use"): the token an exposed server asks for, and the directories
its sidebar may open as workspaces.

Bound to a loopback address the app is one person's. Bound elsewhere, anyone who reaches the port could open any
directory, run evaluations and write exports, so it asks for `MVA_AUTH_TOKEN` (given once as `?token=`, as Jupyter
does) and refuses to serve without one configured; a configured token is asked on loopback too (behind a reverse
proxy on the same machine). Whatever the address, the sidebar opens workspaces only under
`MVA_WORKSPACE_ROOTS`. Pure functions of what the app reads (the bound address, the URL, the environment).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path
from typing import Mapping, Sequence

from .errors import MVAError
from .workspace import DEFAULT_WORKSPACE, REPO_ROOT, WorkspaceError

TOKEN_ENV = "MVA_AUTH_TOKEN"
ROOTS_ENV = "MVA_WORKSPACE_ROOTS"
MIN_TOKEN_LENGTH = 16  # secrets.token_urlsafe(24) gives 32; a short one could be guessed over the network
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(24))'"


class AccessError(MVAError):
    """The visitor may not see this app: no token given, a wrong one, or none configured on an exposed server."""


class TokenNotConfiguredError(AccessError):
    """The server listens beyond this machine and MVA_AUTH_TOKEN is unset, empty or too short."""


class TokenMissingError(AccessError):
    """An exposed server was opened without `?token=`."""


class WrongTokenError(AccessError):
    """`?token=` did not match MVA_AUTH_TOKEN (the message never repeats either)."""


class OutsideRootsError(WorkspaceError):
    """A workspace path that resolves (symlinks and `..` followed) outside every allowed root."""


def is_loopback(address: str | None) -> bool:
    """True for an address only this machine reaches: `localhost`, 127.0.0.0/8, ::1. Unset or empty (Streamlit then
    listens on every interface), 0.0.0.0, and any other name (it may resolve anywhere) are exposed."""
    host = (address or "").strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def required_token(address: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token visitors must give: MVA_AUTH_TOKEN whenever it is set (also on loopback: a reverse proxy on the
    same machine exposes a loopback-bound app), else None on loopback (nothing asked).

    Exposed without a usable MVA_AUTH_TOKEN, raises TokenNotConfiguredError: the app refuses to serve.
    """
    token = environ.get(TOKEN_ENV, "").strip()
    if is_loopback(address) and not token:
        return None
    where = f"server.address = {address!r}" if address else "server.address unset: every interface"
    if not token:
        raise TokenNotConfiguredError(
            f"this app listens beyond this machine ({where}) and {TOKEN_ENV} is not set, so it refuses to serve; "
            f"start it with {TOKEN_ENV}=$({MAKE_TOKEN}) and share the link with ?token=<that value>, "
            "or bind it to localhost (the default)")
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenNotConfiguredError(
            f"{TOKEN_ENV} is {len(token)} characters ({where}); a token needs at least {MIN_TOKEN_LENGTH} so it "
            f"cannot be guessed; make one with {MAKE_TOKEN}")
    return token


def token_matches(given: str | None, expected: str) -> bool:
    """Compare in constant time (hmac.compare_digest): how long a refusal takes says nothing about how much of a
    guess was right."""
    if given is None:
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))


def admit(address: str | None, given: str | None, environ: Mapping[str, str] = os.environ) -> None:
    """Return when a visitor who gave `given` (the `?token=` of their URL, or None) may use the app served on
    `address`; raise an AccessError saying why not. Neither token appears in any message."""
    expected = required_token(address, environ)
    if expected is None:
        return
    if given is None or not given.strip():
        raise TokenMissingError("this app is shared with a token: open the link you were given, which ends in "
                                "?token=…, or ask whoever runs it for the link")
    if not token_matches(given, expected):
        raise WrongTokenError("the token in this link is wrong (it must equal the server's MVA_AUTH_TOKEN); check "
                              "that the link was copied whole, or ask whoever runs the app for a new one")


def workspace_roots(environ: Mapping[str, str] = os.environ, cwd: Path | None = None) -> list[Path]:
    """Directories the app may open workspaces under, resolved: MVA_WORKSPACE_ROOTS (os.pathsep-separated), else
    the repo's data/ and the current directory. The workspace the server was started with (MVA_WORKSPACE, else
    data/workspace) is always allowed: the person who started it chose it, no visitor can change it."""
    given = [p.strip() for p in environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots = [Path(p).expanduser() for p in given] if given else [REPO_ROOT / "data", cwd or Path.cwd()]
    started_with = environ.get("MVA_WORKSPACE")
    roots.append(Path(started_with).expanduser() if started_with else DEFAULT_WORKSPACE)
    return list(dict.fromkeys(r.resolve() for r in roots))


def check_workspace_path(path: str | Path, roots: Sequence[Path]) -> Path:
    """`path` resolved (symlinks and `..` followed, relative to the current directory) when it lies in or under
    one of `roots`; else OutsideRootsError naming the path, the roots and the fix."""
    resolved = Path(path).expanduser().resolve()
    for root in roots:
        root = Path(root).resolve()
        if resolved == root or root in resolved.parents:
            return resolved
    shown = os.pathsep.join(str(r) for r in roots)
    raise OutsideRootsError(
        f"workspace {str(path)!r} (resolves to {resolved}) is outside the directories this app may open ({shown}); "
        f"choose a workspace under them, or restart the app with {ROOTS_ENV} naming the directories to allow "
        f"(separated by {os.pathsep!r})")
