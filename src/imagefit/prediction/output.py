"""Predictions to CSV, written atomically: `Id,Category` (a competition's submission), or more with --full."""

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
    if predictions.thresholds is not None:
        return _write_multilabel_csv(predictions, out, full=full)
    flagged = predictions.unknown if predictions.unknown is not None else np.zeros(len(predictions.paths), bool)
    scores = predictions.unknown_scores
    header = ["Id", "Category"] + (["path", "confidence", "top_k"] if full else [])
    if full and scores is not None:
        header += ["unknown", "unknown_score"]
    records = []
    for index, (path, row) in enumerate(zip(predictions.paths, predictions.probabilities, strict=True)):
        best = int(row.argmax())
        label = unknown_label if unknown_label and flagged[index] else predictions.classes[best]
        record = [image_id(path), label]
        if full:
            order = np.argsort(-row)[:top_k]
            ranked = ";".join(f"{predictions.classes[i]}:{row[i]:.4f}" for i in order)
            record += [path, f"{row[best]:.6f}", ranked]
            if scores is not None:
                record += [str(bool(flagged[index])).lower(), f"{scores[index]:.6f}"]
        records.append(record)
    write_rows(out, header, records)
    return out


def _write_multilabel_csv(predictions: Predictions, out: Path, *, full: bool) -> Path:
    """`Id,Labels` (labels above their thresholds, space-separated); `full` adds path and a probability a label."""
    header = ["Id", "Labels"] + (["path", *predictions.classes] if full else [])
    records = []
    for path, labels, row in zip(predictions.paths, predictions.labels, predictions.probabilities, strict=True):
        record = [image_id(path), " ".join(labels.split("|")) if labels else ""]
        if full:
            record += [path, *(f"{p:.6f}" for p in row)]
        records.append(record)
    write_rows(out, header, records)
    return out
