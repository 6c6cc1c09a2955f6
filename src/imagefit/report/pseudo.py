"""The report section of a student run (`imagefit train --unlabelled`): its pseudo-labels and its teacher."""

from __future__ import annotations

import csv
import html
from collections import Counter
from pathlib import Path

from imagefit import runs
from imagefit.data.decode import UNREADABLE, open_image
from imagefit.data.sources import locator_name
from imagefit.report.page import img, section, table, thumbnail

LEAST_CERTAIN = 8


def pseudo_section(run: runs.Run) -> str:
    """Counts per class, the teacher's val figures beside the student's, and the least certain accepted images;
    '' for a run that is no student."""
    path = runs.RunFiles(run.path).pseudo_labels
    if not path.exists():
        return ""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    teacher = run.config.get("student_of", "")
    counts = Counter(r["label"] for r in rows)
    intro = (
        f"<p>{len(rows)} unlabelled images trained with the labels {html.escape(Path(teacher).name or 'its teacher')} "
        f"predicted (round {html.escape(str(run.config.get('pseudo_round', '?')))}), each at or above the confidence "
        "at which the teacher's val predictions were right at least halfway from its val accuracy to 1.</p>"
    )
    per_class = table(["class", "pseudo-labels"], [[c, str(counts[c])] for c in run.classes])
    return section("pseudo-labels", "Pseudo-labels", intro + per_class + _figures(run, teacher) + _least_certain(rows))


def _figures(run: runs.Run, teacher: str) -> str:
    """Val accuracy and log loss of the teacher and of this student (the same val images)."""
    figures = [("this student", run.metrics.get("val", {}))]
    teacher_metrics = runs.RunFiles(Path(teacher)).metrics if teacher else None
    if teacher_metrics is not None and teacher_metrics.exists():
        figures.insert(0, (f"teacher {Path(teacher).name}", runs.read_json(teacher_metrics).get("val", {})))
    rows = [
        [name, f"{m.get('accuracy', float('nan')):.4f}", f"{m.get('log_loss', float('nan')):.3f}"]
        for name, m in figures
    ]
    return table(["model", "val accuracy", "val log loss"], rows)


def _least_certain(rows: list[dict]) -> str:
    cards = []
    for row in sorted(rows, key=lambda r: float(r["confidence"]))[:LEAST_CERTAIN]:
        try:
            picture = thumbnail(open_image(row["path"]))
        except UNREADABLE:
            continue
        caption = f"{row['label']} ({float(row['confidence']):.2f})"
        cards.append(
            f"<figure>{img(picture, locator_name(row['path']))}<figcaption>{html.escape(caption)}<br>"
            f"<small>{html.escape(locator_name(row['path']))}</small></figcaption></figure>"
        )
    return "<h3>The least certain accepted</h3>" + f'<div class="gallery">{"".join(cards)}</div>' if cards else ""
