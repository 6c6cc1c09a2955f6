"""The `imagefit` command: a thin Typer face on the library; every command checks its arguments before torch is
imported, makes one library call and prints. `app.py` holds what the commands share; `training.py`, `runs.py`,
`serving.py` and `data.py` the commands."""

from __future__ import annotations

from imagefit.cli.app import app, parse_overrides

# The commands register in import order, which --help keeps: train first.
# isort: off
from imagefit.cli import training, runs, serving, data  # noqa: F401, E402
# isort: on

__all__ = ["app", "main", "parse_overrides"]


def main() -> None:
    app()
