"""The report section of a student run (`imagefit train --unlabelled`): its pseudo-labels and its teacher."""

from __future__ import annotations

import csv
import html
from collections import Counter
from pathlib import Path

from imagefit import runs
from imagefit.report.page import section, table
from imagefit.report.sections import image_card

LEAST_CERTAIN = 8


def pseudo_section(run: runs.Run) -> str:
    """Counts per class, the teacher's val figures beside the student's, and the least certain accepted images;
    '' for a run that is no student."""
    path = runs.RunFiles(run.path).pseudo_labels
    if not path.exists():
        return ""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    teacher = run.config.get("student_of") or run.config.get("distilled_from", "")
    counts = Counter(part for r in rows for part in run.task.parts(r["label"]))  # multi-label: each label's images
    name = html.escape(Path(teacher).name or "its teacher")
    if run.config.get("distilled_from"):
        title = "Distilled"
        intro = (
            f"<p>Distilled from {name}: {len(rows)} images trained on soft labels, each labelled training image's "
            "half its true class and half the teacher's calibrated probabilities, each unlabelled one the "
            "teacher's probabilities alone.</p>"
        )
    else:
        title = "Pseudo-labels"
        intro = (
            f"<p>{len(rows)} unlabelled images trained with the soft labels {name} predicted (round "
            f"{html.escape(str(run.config.get('pseudo_round', '?')))}), each at or above the confidence at which the "
            "teacher's val predictions were right at least halfway from its val accuracy to 1.</p>"
        )
    per_class = table(["class", "images"], [[c, str(counts[c])] for c in run.classes])
    return section("pseudo-labels", title, intro + per_class + _figures(run, teacher) + _least_certain(rows))


def _figures(run: runs.Run, teacher: str) -> str:
    """Accuracy and log loss of the teacher and of this student on the same val and test images."""
    figures = [("this student", run.metrics)]
    teacher_metrics = runs.RunFiles(Path(teacher)).metrics if teacher else None
    if teacher_metrics is not None and teacher_metrics.exists():
        figures.insert(0, (f"teacher {Path(teacher).name}", runs.read_json(teacher_metrics)))

    def cell(metrics: dict, split: str, key: str, digits: int) -> str:
        value = metrics.get(split, {}).get(key)
        return f"{value:.{digits}f}" if value is not None else "-"

    rows = [
        [name, cell(m, "val", "accuracy", 4), cell(m, "val", "log_loss", 3), cell(m, "test", "accuracy", 4)]
        for name, m in figures
    ]
    return table(["model", "val accuracy", "val log loss", "test accuracy"], rows)


def _least_certain(rows: list[dict]) -> str:
    least = sorted(rows, key=lambda r: float(r["confidence"]))[:LEAST_CERTAIN]
    cards = [card for r in least if (card := image_card(r["path"], f"{r['label']} ({float(r['confidence']):.2f})"))]
    return "<h3>The least certain accepted</h3>" + f'<div class="gallery">{"".join(cards)}</div>' if cards else ""
