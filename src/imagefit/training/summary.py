"""The table printed at the end of a training run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from imagefit.runs import Run


def print_summary(run: Run, console: Console) -> None:
    """Best epoch, validation and test figures, and where the run folder is."""
    metrics = run.metrics
    table = Table(title="imagefit train", show_header=True)
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("macro-F1", justify="right")
    for split, label in (("val", "val"), ("val_estimate", "val (of the run refitted)"), ("test", "test")):
        if metrics.get(split):
            figures = metrics[split]
            table.add_row(label, str(figures["count"]), f"{figures['accuracy']:.4f}", f"{figures['macro_f1']:.4f}")
    console.print(table)
    if run.refit_note:
        console.print(run.refit_note, highlight=False, soft_wrap=True)
    console.print(f"best epoch: {metrics.get('best_epoch')}   model: {run.recipe.model.backbone}")
    if run.files.report.exists():
        console.print(f"report: {run.files.report}", highlight=False, soft_wrap=True)
    console.print(f"run folder: {run.path}", highlight=False, soft_wrap=True)
