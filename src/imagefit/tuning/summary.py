"""The end of a study: the best trial copied to studies/NAME/best, study.html (the trials, Optuna's history and
parameter importances), and one line on how it went."""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from imagefit.files import write_text


@dataclass
class StudyResult:
    folder: Path
    best_trial: int | None
    best_value: float | None
    trials: list[dict]


def summarise(study, folder: Path, console: Console) -> StudyResult:
    """Copy the best trial to studies/NAME/best, write study.html, and say how it went."""
    from optuna.trial import TrialState

    rows = []
    for trial in study.trials:
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value,
                "val_accuracy": trial.user_attrs.get("val_accuracy"),
                "seconds": (trial.duration.total_seconds() if trial.duration else None),
                "params": trial.params,
                "note": trial.user_attrs.get("failed_because", ""),
            }
        )
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    if best is not None:
        target = folder / "best"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(best.user_attrs["run"], target)
        params = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
        console.print(f"best: trial {best.number}, val {best.value:.4f} ({params})", highlight=False)
    _write_page(study, folder, rows)
    console.print(f"study: {folder / 'study.html'}", highlight=False)
    return StudyResult(folder, best.number if best else None, best.value if best else None, rows)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _write_page(study, folder: Path, rows: list[dict]) -> None:
    from imagefit.report.page import PAGE, data_uri, img, section, table

    header = ["trial", "state", "value", "val accuracy", "seconds", "parameters", "note"]
    cells = [
        [
            r["trial"],
            r["state"],
            "" if r["value"] is None else f"{r['value']:.4f}",
            "" if r["val_accuracy"] is None else f"{r['val_accuracy']:.4f}",
            "" if r["seconds"] is None else f"{r['seconds']:.0f}",
            ", ".join(f"{k}={_short(v)}" for k, v in r["params"].items()),
            r["note"],
        ]
        for r in rows
    ]
    body = section("trials", f"Trials ({len(rows)})", table(header, cells))
    for title, plot in _plots(study):
        body += section(title.lower().replace(" ", "-"), title, img(data_uri(plot), title))
    write_text(folder / "study.html", PAGE.format(title=html.escape(f"imagefit tune: {folder.name}"), body=body))


def _plots(study) -> list[tuple[str, bytes]]:
    """Optuna's optimisation history and parameter importances (matplotlib), where there is enough to plot."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    chosen = [("Optimisation history", plots.plot_optimization_history)]
    if len(complete) >= 3:
        chosen.append(("Parameter importances", plots.plot_param_importances))
    pictures = []
    for title, draw in chosen:
        try:
            axis = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too little variation to rank parameters
            continue
        buffer = io.BytesIO()
        axis.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(axis.figure)
        pictures.append((title, buffer.getvalue()))
    return pictures
