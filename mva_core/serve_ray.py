"""The same server as a Ray Serve deployment: `serve --replicas N [--address ADDR]`.

Each replica is a Ray actor that loads the workspace's base model and value vectors once and runs the very app of
`serve.create_app` (its own engine: continuous batching with per-row weights inside the replica); Ray Serve's HTTP
proxy spreads requests over the replicas. The workspace path must be readable where the replicas run (a shared
disk on a multi-node cluster). Needs `pip install "ray[serve]"`.
"""

from __future__ import annotations

import time
from pathlib import Path

from .errors import MVAError

DEPLOYMENT = "mva-dial"


class RayServeError(MVAError, RuntimeError):
    """Ray Serve is missing or the cluster cannot be reached; the message says what to install or pass."""


def build_app(workspace: str, method: str | None, token: str | None):
    """The Ray Serve application: one deployment whose replicas each build `create_app(load_dial(...))`."""
    try:
        from ray import serve as ray_serve  # optional: only --replicas needs it
    except ImportError as exc:
        raise RayServeError(f"Ray Serve is not installed ({exc}); pip install \"ray[serve]\" or serve without "
                            "--replicas") from None

    def asgi_app():  # evaluated on each replica when it starts: the model loads there, once per replica
        from .serve import create_app, load_dial

        return create_app(load_dial(workspace, method), token)

    deployment = ray_serve.deployment(ray_serve.ingress(asgi_app)(), name=DEPLOYMENT)
    return deployment


def serve_replicas(workspace: str | Path, method: str | None, host: str, port: int, replicas: int,
                   address: str | None = None, block: bool = True) -> None:
    """Start (or join, with `address`) Ray, deploy `replicas` replicas behind Ray Serve's proxy on host:port.
    Bound beyond loopback, MVA_AUTH_TOKEN is required, as for one process."""
    from .access import required_token

    token = required_token(host)  # raises TokenNotConfiguredError when exposed without a token
    try:
        import ray
        from ray import serve as ray_serve
    except ImportError as exc:
        raise RayServeError(f"Ray Serve is not installed ({exc}); pip install \"ray[serve]\" or serve without "
                            "--replicas") from None
    if address and not address.startswith("ray://") and address != "auto":
        from .executor import check_reachable  # fails fast on an address nothing answers

        check_reachable(address)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    ray_serve.start(http_options={"host": host, "port": port})
    app = build_app(str(Path(workspace).resolve()), method, token).options(
        num_replicas=replicas, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
    ray_serve.run(app.bind(), name=DEPLOYMENT, route_prefix="/")
    print(f"serving {replicas} replicas of {workspace} through Ray Serve at http://{host}:{port}/v1", flush=True)
    if not block:
        return
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        ray_serve.shutdown()
