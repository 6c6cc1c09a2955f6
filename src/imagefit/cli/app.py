"""The Typer app and what every command shares: the console, one-line errors, recipe options, the checks
that run before torch is imported, and the tables runs and ensembles print."""

from __future__ import annotations

import contextlib
import errno
import logging
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from imagefit.errors import TrainingInterrupted, UserError

console = Console(stderr=True, soft_wrap=True)  # long lines stay whole in logs
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Turn a folder of labelled images into the best classifier it can, by transfer learning.",
)


@contextlib.contextmanager
def user_errors():
    """Print a UserError as one line and exit with code 2; let bugs keep their tracebacks."""
    try:
        yield
    except UserError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except TrainingInterrupted as exc:
        console.print(escape(str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    except KeyboardInterrupt:
        console.print("interrupted", highlight=False)
        raise typer.Exit(code=130) from None
    except OSError as exc:
        if exc.errno not in FILE_SYSTEM_ERRORS or not exc.filename:
            raise
        fix = FILE_SYSTEM_ERRORS[exc.errno]
        console.print(f"[bold red]error:[/] {escape(f'{exc.filename}: {exc.strerror}. {fix}')}", soft_wrap=True)
        raise typer.Exit(code=2) from None


# What the machine refused (a path, its permissions, the disk), said in one line with the fix: not a bug of ours.
FILE_SYSTEM_ERRORS = {
    errno.ENOENT: "Check the path (its folders must be creatable)",
    errno.ENOTDIR: "A part of the path is a file: pick another path",
    errno.EEXIST: "A file is in the way of a folder there: pick another path",
    errno.EISDIR: "That is a folder: name a file",
    errno.EACCES: "Pick a path you may write to, or change its permissions",
    errno.EPERM: "Pick a path you may write to, or change its permissions",
    errno.EROFS: "That file system is read-only: pick another path",
    errno.ENOSPC: "The disk is full: free space or pick another path",
    errno.EDQUOT: "The disk quota is spent: free space or pick another path",
}


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


def print_comparison(paths: list[Path], *, sort: str, out: Path | None) -> None:
    from rich.table import Table

    from imagefit.report.compare import COLUMNS, compare

    rows = compare(paths, sort=sort, out=out)
    table = Table(title="imagefit compare")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "), justify="left" if column in ("run", "model") else "right")
    for row in rows:
        table.add_row(*[Path(row[c]).name if c == "run" else str(row[c]) for c in COLUMNS])
    screen = Console(soft_wrap=True)
    (screen if screen.is_terminal else Console(soft_wrap=True, width=220)).print(table)  # a log gets it whole
    if out is not None:
        console.print(f"table: {out} and {out.with_suffix('.html')}", highlight=False)


def print_ensemble_figures(made, *, prefix: str = "") -> None:
    """An ensemble's val and test figures, each against its best member."""
    for split in ("val", "test"):
        figures = made.metrics.get(split)
        if figures:
            console.print(
                f"{prefix}{split}: accuracy {figures['accuracy']:.4f}, macro-F1 {figures['macro_f1']:.4f} "
                f"({figures['gain_over_best_member']:+.4f} over the best member)",
                highlight=False,
            )


def check_run(run: Path) -> None:
    from imagefit.runs import check_run_folder

    check_run_folder(run)


def check_data(data: Path) -> None:
    from imagefit.data.sources import check_data_path

    check_data_path(data)


def check_model_path(model: Path) -> None:
    from imagefit.prediction.loading import check_model_path

    check_model_path(model)


def check_inputs(inputs: list[Path]) -> None:
    from imagefit.prediction.inputs import check_inputs

    check_inputs(list(inputs))


def quiet_lightning() -> None:
    """Hide Lightning's start-up notes (GPU/TPU availability, logger tips): noise in a command's output.

    Called after Lightning is imported, since its import sets its loggers to INFO.
    """
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # a resumed run
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")  # small sets: no harm
