"""Rich tables for the terminal: evaluation figures and per-class results."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

# ece_cross_fitted: val only, the temperature fitted on one half of val and measured on the other
KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "top5_accuracy", "log_loss", "ece", "ece_cross_fitted")


def print_evaluation(evaluations, console: Console) -> None:
    """One row per evaluated split, then the weakest classes of each."""
    table = Table(title="imagefit evaluate")
    table.add_column("split")
    table.add_column("images", justify="right")
    for key in KEYS:
        table.add_column(key.replace("_", " "), justify="right")
    for result in evaluations:
        metrics = result.metrics
        table.add_row(result.key, str(metrics["count"]), *(f"{metrics[k]:.4f}" if k in metrics else "" for k in KEYS))
    console.print(table)
    for result in evaluations:
        weakest = sorted(result.metrics["per_class"].items(), key=lambda item: item[1]["f1"])[:5]
        listing = ", ".join(f"{name} {values['f1']:.2f}" for name, values in weakest)
        console.print(f"{result.key}: weakest classes by F1: {listing}", highlight=False)
        found = result.metrics.get("unknown")
        if found:
            rocs = ", ".join(f"{name} {value:.3f}" for name, value in found["auroc"].items())
            console.print(
                f"{result.key}: {found['unknown']} images of unknown classes, {found['known']} known; AUROC {rocs}; "
                f"at the threshold: {found['false_alarm_rate']:.1%} false alarms, {found['miss_rate']:.1%} missed",
                highlight=False,
            )
