"""The table printed at the end of a training run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from imagefit.runs import Run, RunFiles


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
    floor = below_a_floor(run)
    if floor:
        console.print(f"[yellow]warning:[/] {floor}", highlight=False, soft_wrap=True)
    console.print(f"best epoch: {metrics.get('best_epoch')}   model: {run.recipe.model.backbone}")
    if run.files.report.exists():
        console.print(f"report: {run.files.report}", highlight=False, soft_wrap=True)
    console.print(f"run folder: {run.path}", highlight=False, soft_wrap=True)


def below_a_floor(run: Run) -> str:
    """One line when the kept model scores under the majority rate or the raw-pixel baseline on val, else ''."""
    measured, val = run.config.get("measured") or {}, run.metrics.get("val") or {}
    if not measured or "accuracy" not in val:
        return ""
    accuracy = val["accuracy"]
    pixels = (measured.get("pixels") or {}).get("accuracy", 0.0)
    if pixels > accuracy:
        kept = RunFiles(run.path).raw_pixels
        where = f"it is kept as a run of its own at {kept}; " if RunFiles(kept).config.exists() else ""
        return (
            f"an SVM on raw pixels scored {pixels:.4f} on val, the network {accuracy:.4f}: {where}the "
            "pretrained features do not fit these images; try --finetune-lr-ratio, --image-size or another --model"
        )
    if measured["majority"] > accuracy:
        return (
            f"always answering the largest class would score {measured['majority']:.4f} on val, the network "
            f"{accuracy:.4f}: judge it by macro-F1 and balanced accuracy, or try --class-weight-power 0.5"
        )
    return ""
