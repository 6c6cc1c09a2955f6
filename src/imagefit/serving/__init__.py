"""`imagefit serve`: a run (or an exported .onnx model) behind HTTP, with a page to try it.

FastAPI + uvicorn, with imagefit's own dynamic batcher (`serving/batcher.py`) in front of the
model: concurrent requests' pictures run through the model together, up to `max_batch` pictures
or `max_wait_ms` after the first. Loopback only unless the host is given.
"""

from __future__ import annotations

import os
from pathlib import Path

from imagefit.serving.app import create_app

__all__ = ["create_app", "serve"]
ENV = "IMAGEFIT_SERVE"  # how uvicorn's worker processes learn what to serve


def serve(
    model: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    max_batch: int = 32,
    max_wait_ms: float = 10,
    backend: str = "auto",
) -> None:
    """Serve MODEL until stopped (Ctrl-C); with workers > 1, uvicorn runs that many processes."""
    import json

    import uvicorn

    options = {
        "model": str(Path(model).resolve()),
        "backend": backend,
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
    }
    if workers > 1:
        from imagefit.serving.backend import load_backend

        load_backend(model, backend=backend)  # export once here, not once per worker
        os.environ[ENV] = json.dumps(options)
        uvicorn.run("imagefit.serving:from_environment", factory=True, host=host, port=port, workers=workers)
        return
    uvicorn.run(create_app(options.pop("model"), **options), host=host, port=port)


def from_environment():
    """The app of a uvicorn worker process, from what `serve` put in the environment."""
    import json

    options = json.loads(os.environ[ENV])
    return create_app(options.pop("model"), **options)
