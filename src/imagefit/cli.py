"""The `imagefit` command: a thin Typer face on the library; every command is one library call."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import typer
from rich.console import Console

from imagefit.config import field_help
from imagefit.errors import UserError

console = Console(stderr=True)
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Turn a folder of labelled images into the best classifier it can, by transfer learning.",
)


def _recipe_epilog() -> str:
    lines = ["Recipe options (any of them as --name value, e.g. --epochs 8 --model resnet50 --vflip true):", ""]
    lines += [f"--{name.replace('_', '-')} [{default}]  {text}" for name, default, text in field_help()]
    return "\n\n".join(lines)


@contextlib.contextmanager
def _user_errors():
    """Print a UserError as one line and exit with code 2; let bugs keep their tracebacks."""
    try:
        yield
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        console.print("interrupted: the last finished epoch is kept; continue with `imagefit train --resume RUN`")
        raise typer.Exit(code=130) from None


def parse_overrides(args: list[str]) -> dict[str, str]:
    """Recipe overrides from `--key value`, `--key=value`, `--flag` (true) and `--no-flag` (false)."""
    overrides, position = {}, 0
    while position < len(args):
        token = args[position]
        if not token.startswith("--") or len(token) < 3:
            raise UserError(f"unexpected argument '{token}'. Recipe options look like --epochs 8")
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            following = args[position + 1] if position + 1 < len(args) else None
            if following is None or following.startswith("--"):
                value = "false" if key.startswith("no-") else "true"
                key = key.removeprefix("no-")
            else:
                value = following
                position += 1
        overrides[key.replace("-", "_")] = value
        position += 1
    return overrides


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, epilog=_recipe_epilog())
def train(
    ctx: typer.Context,
    data: Path | None = typer.Argument(
        None, help="folder of class folders, pre-split folders, CSV of path,label, or .zip"
    ),
    out: Path | None = typer.Option(None, help="write the run folder exactly here"),
    name: str | None = typer.Option(None, help="run name under --runs-dir (default: the data's name)"),
    runs_dir: Path = typer.Option(Path("runs"), help="where new run folders go"),
    resume: Path | None = typer.Option(None, help="continue this interrupted run folder"),
) -> None:
    """Train a classifier on DATA with the full transfer-learning recipe and write a run folder."""
    from imagefit.train import train as train_run

    with _user_errors():
        overrides = parse_overrides(ctx.args)
        train_run(data, out=out, name=name, runs_dir=runs_dir, resume=resume, console=console, **overrides)


@app.command()
def version() -> None:
    """Print the imagefit version."""
    from imagefit import __version__

    print(__version__)


def main() -> None:
    # Lightning's start-up notes (GPU/TPU availability, logger tips) are noise in a command's output.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    app()


if __name__ == "__main__":
    main()
