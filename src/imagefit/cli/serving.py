"""Commands that serve a run, and the version: serve, version."""

from __future__ import annotations

from pathlib import Path

import typer

from imagefit.cli.app import app, check_model_path, console, user_errors


@app.command()
def serve(
    model: Path = typer.Argument(
        ..., help="run or ensemble folder, an exported .onnx/.xml model, or an exported ensemble's ensemble.json"
    ),
    host: str = typer.Option("127.0.0.1", help="address to listen on (loopback unless you choose otherwise)"),
    port: int = typer.Option(8000, help="port"),
    workers: int = typer.Option(1, help="server processes"),
    max_batch: int = typer.Option(32, help="pictures a batch may gather from concurrent requests"),
    max_wait_ms: float = typer.Option(10.0, help="longest wait for a batch to fill, after its first picture"),
    backend: str = typer.Option(
        "auto", help="auto (ONNX Runtime, exported on first use) | onnx | openvino | torch (a .xml: OpenVINO)"
    ),
    api_key: str | None = typer.Option(
        None,
        envvar="IMAGEFIT_API_KEY",
        show_envvar=True,
        help="key every call must carry (X-API-Key); required with a --host other than loopback. The environment "
        "variable keeps it out of the process list",
    ),
) -> None:
    """Serve a run over HTTP: POST /predict, POST /explain, GET /health, /metadata, /docs, and a page at /."""
    with user_errors():
        check_model_path(model)
        from imagefit.serving import check_exposure, check_port
        from imagefit.serving import serve as serve_model

        access = check_exposure(host, api_key)
        check_port(host, port)
        console.print(f"serving {model} on http://{host}:{port}/ ({access}; Ctrl-C stops)", highlight=False)
        serve_model(
            model,
            host=host,
            port=port,
            workers=workers,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            backend=backend,
            api_key=api_key,
        )


@app.command()
def version() -> None:
    """Print the imagefit version."""
    from imagefit import __version__

    print(__version__)
