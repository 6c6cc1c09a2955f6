"""report.html of an ensemble folder: its members and weights, the gain over the best member, the errors."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from imagefit import runs
from imagefit.evaluation.evaluator import evaluate, read_predictions
from imagefit.files import write_text
from imagefit.report import figures
from imagefit.report.page import PAGE, data_uri, img, section, table
from imagefit.report.sections import per_class_table, worst_errors


def write_ensemble_report(path: Path) -> Path:
    from imagefit.prediction.ensembles import load_ensemble

    ensemble = load_ensemble(path)
    files = runs.RunFiles(path)
    split = "test" if any(s.split == "test" for s in ensemble.split()) else "val"
    if not files.predictions(split).exists():
        evaluate(path, split=split)
    rows, classes = read_predictions(files.predictions(split))
    y_true = [classes.index(r["true"]) for r in rows]
    predicted = np.array([[float(r[c]) for c in classes] for r in rows]).argmax(axis=1).tolist()
    body = "\n".join(
        [
            _members(ensemble),
            section(
                "confusion",
                f"Confusion matrix ({split})",
                img(data_uri(figures.confusion_matrices(y_true, predicted, classes)), "confusion"),
            ),
            per_class_table(ensemble.metrics.get(split, {})),
            worst_errors(rows, split),
        ]
    )
    write_text(files.report, PAGE.format(title=html.escape(f"imagefit report: ensemble {path.name}"), body=body))
    return files.report


def _members(ensemble) -> str:
    metrics = ensemble.metrics
    members = [
        [
            Path(m["run"]).name,
            m["model"],
            f"{m['weight']:.3f}",
            *(f"{m[s]['accuracy']:.4f}" if s in m else "" for s in ("val", "test")),
        ]
        for m in metrics.get("members", [])
    ]
    figures_rows = [
        [
            name,
            f"{metrics[name]['accuracy']:.4f}",
            f"{metrics[name]['macro_f1']:.4f}",
            f"{metrics[name].get('gain_over_best_member', float('nan')):+.4f}",
        ]
        for name in ("val", "test")
        if name in metrics
    ]
    return section(
        "summary",
        f"Ensemble of {len(ensemble.members)} runs ({ensemble.method} weights, fitted on val)",
        table(["member", "model", "weight", "val accuracy", "test accuracy"], members)
        + table(["split", "accuracy", "macro-F1", "gain over the best member"], figures_rows),
    )
