"""`imagefit serve`: a run (or an exported .onnx model) behind HTTP, with a page to try it.

FastAPI + uvicorn, with imagefit's own dynamic batcher (`serving/batcher.py`) in front of the
model: concurrent requests' pictures run through the model together, up to `max_batch` pictures
or `max_wait_ms` after the first. Loopback only unless the host is given.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from pathlib import Path

from imagefit.errors import UserError
from imagefit.serving.app import create_app

__all__ = ["check_exposure", "check_port", "create_app", "serve"]
ENV = "IMAGEFIT_SERVE"  # how uvicorn's worker processes learn what to serve
KEY_ENV = "IMAGEFIT_API_KEY"  # the API key, from the user's environment (or --api-key), inherited by workers


def is_loopback(host: str) -> bool:
    """Whether HOST is a loopback address (127.0.0.0/8, ::1) or 'localhost'."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_exposure(host: str, api_key: str | None) -> str:
    """One line saying who may call the server; UserError when HOST is reachable from other machines without a key."""
    if api_key:
        return "API key required on every call but / and /health (X-API-Key: KEY or Authorization: Bearer KEY)"
    if not is_loopback(host):
        raise UserError(
            f"--host {host} lets other machines call the server: give it an API key with --api-key or "
            f"${KEY_ENV} (every call then needs X-API-Key), or keep the default --host 127.0.0.1"
        )
    return "loopback only: no API key needed"


def check_port(host: str, port: int) -> None:
    """UserError when HOST:PORT cannot be listened on (taken, or a privileged port), before the model loads; bound as
    uvicorn binds it (SO_REUSEADDR), then let go."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a port: pick one from 1024 to 65535")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                taken = f"port {port} on {host} is in use (another server?)"
                raise UserError(f"{taken}: pass --port N or stop that server") from None
            if exc.errno == errno.EACCES:
                raise UserError(f"port {port} needs administrator rights: pick one from 1024 to 65535") from None
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}): pick another --host or --port") from None


def serve(
    model: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    max_batch: int = 32,
    max_wait_ms: float = 10,
    backend: str = "auto",
    api_key: str | None = None,
) -> None:
    """Serve MODEL until stopped (Ctrl-C); with workers > 1, uvicorn runs that many processes."""
    import json

    import uvicorn

    check_exposure(host, api_key)

    options = {
        "model": str(Path(model).resolve()),
        "backend": backend,
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
    }
    if workers > 1:
        from imagefit.serving.backend import load_backend

        load_backend(model, backend=backend)  # export once here, not once per worker
        os.environ[ENV] = json.dumps(options)  # the key is not in it: workers read it from KEY_ENV
        if api_key:
            os.environ[KEY_ENV] = api_key
        uvicorn.run("imagefit.serving:from_environment", factory=True, host=host, port=port, workers=workers)
        return
    uvicorn.run(create_app(options.pop("model"), **options, api_key=api_key), host=host, port=port)


def from_environment():
    """The app of a uvicorn worker process, from what `serve` put in the environment."""
    import json

    options = json.loads(os.environ[ENV])
    return create_app(options.pop("model"), **options, api_key=os.environ.get(KEY_ENV) or None)
