"""report.html: one self-contained page (figures embedded) that explains a run to a person.

The run's task lists the page's sections (`Task.report_sections`); each section is a function of one
`Page` (the run, the split shown and its predictions). Single-label sections live in `sections.py`,
multi-label ones in `labels.py`, an ensemble's page in `ensemble.py`.
"""

from __future__ import annotations

import html
from pathlib import Path

from imagefit import runs
from imagefit.evaluation.evaluator import evaluate
from imagefit.files import write_text
from imagefit.report import labels, sections
from imagefit.report.page import PAGE
from imagefit.report.pseudo import pseudo_section
from imagefit.report.sections import GRADCAM_SAMPLES, Page

RENDERERS = {**sections.RENDERERS, **labels.RENDERERS}


def write_report(run_path: str | Path, *, gradcam_samples: int = GRADCAM_SAMPLES) -> Path:
    """Write RUN/report.html (evaluating the run first when its predictions are missing); returns its path."""
    from imagefit.prediction.ensembles import is_ensemble
    from imagefit.report.ensemble import write_ensemble_report

    if is_ensemble(run_path):
        return write_ensemble_report(Path(run_path))
    run = runs.load_run(Path(run_path))
    split = "test" if any(s.split == "test" for s in run.split()) else "val"
    if not run.files.predictions(split).exists():
        evaluate(run.path, split=split)
        run = runs.load_run(run.path)
    page = Page.of(run, split, gradcam_samples)
    body = "\n".join(RENDERERS[name](page) for name in run.task.report_sections) + pseudo_section(run)
    target = run.files.report
    write_text(target, PAGE.format(title=html.escape(f"imagefit report: {run.path.name}"), body=body))
    return target
