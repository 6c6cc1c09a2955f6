"""Predictions to CSV, written atomically: `Id,Category` (a competition's submission; `Id,Labels` for a multi-label
run, its task names the columns), or more with --full."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagefit.errors import UserError
from imagefit.files import write_rows
from imagefit.prediction.batches import Predictions
from imagefit.prediction.inputs import image_id


def write_csv(
    predictions: Predictions,
    out: Path,
    *,
    full: bool = False,
    top_k: int = 3,
    overwrite: bool = False,
    unknown_label: str | None = None,
) -> Path:
    """Write `Id,Category` (with `full`: path, confidence, the top-k classes, and the unknown flag and score) to
    OUT; with `unknown_label`, images flagged unknown get that label instead of a class."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists. Pass --overwrite or another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    task, classes = predictions.task, predictions.classes
    scores = predictions.unknown_scores if task.flags_unknown else None
    flagged = predictions.unknown if scores is not None else np.zeros(len(predictions.paths), bool)
    header = ["Id", task.csv_label_column]
    if full:
        header += ["path", *task.csv_columns(classes)]
        header += ["unknown", "unknown_score"] if scores is not None else []
    records = []
    for index, (path, label, row) in enumerate(
        zip(predictions.paths, predictions.labels, predictions.probabilities, strict=True)
    ):
        shown = unknown_label if unknown_label and flagged[index] else task.csv_label(label)
        record = [image_id(path), shown]
        if full:
            record += [path, *task.csv_details(row, classes, top_k)]
            if scores is not None:
                record += [str(bool(flagged[index])).lower(), f"{scores[index]:.6f}"]
        records.append(record)
    write_rows(out, header, records)
    return out
