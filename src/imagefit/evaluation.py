"""Evaluate a run on its own val/test split or on any dataset with the same classes.

Writes the figures into the run's metrics.json (under the split's name, or `data:<name>` for
other data) and one row per image into predictions-<key>.csv.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagefit import runs
from imagefit.calibration import view_probabilities
from imagefit.data import Sample, scan
from imagefit.errors import UserError
from imagefit.metrics import calibration_error, classification_metrics
from imagefit.prediction import Predictions, check_batch, map_batches
from imagefit.prediction.models import TorchPredictor


@dataclass
class Evaluation:
    """The figures and per-image predictions of one evaluated split."""

    key: str
    metrics: dict
    predictions: Predictions
    true_labels: list[str]


def evaluate(
    run_path: str | Path,
    data: str | Path | None = None,
    *,
    split: str | None = None,
    tta_n: int | None = None,
    device: str = "cpu",
) -> list[Evaluation]:
    """Evaluate RUN on its val and test splits (or just `split`), or on DATA; write metrics and predictions.

    Predictions are made as `imagefit predict` makes them: the run's evaluation size, test-time
    views (`tta_n` overrides them) and temperature. `ece_before_scaling` is the calibration error of
    the same views without the temperature.
    """
    from imagefit.ensembles import is_ensemble

    if is_ensemble(run_path):
        return _evaluate_ensemble(Path(run_path), split=split, tta_n=tta_n, device=device)
    run = runs.load_run(Path(run_path))
    predictor = TorchPredictor.from_run(run.path, device=device)
    views = predictor.tta_n if tta_n is None else tta_n
    check_batch(views, 32)
    results = []
    for key, samples in _targets(run, data, split).items():
        paths, logits, skipped = map_batches(
            predictor.logits, predictor.preprocess, [s.path for s in samples], views=views, average=False
        )
        logits = logits if paths else np.zeros((0, views, len(run.classes)))
        predictions = Predictions(paths, view_probabilities(logits, predictor.temperature), run.classes, skipped)
        by_path = {s.path: s.label for s in samples}
        true_labels = [by_path[p] for p in predictions.paths]
        y_true = [run.classes.index(label) for label in true_labels]
        metrics = classification_metrics(y_true, predictions.probabilities, run.classes)
        metrics["ece_before_scaling"] = calibration_error(y_true, view_probabilities(logits, 1.0))
        metrics.update(
            skipped=len(skipped), image_size=predictor.preprocess.size, tta_n=views, temperature=predictor.temperature
        )
        results.append(Evaluation(key, metrics, predictions, true_labels))
        _write_predictions(runs.RunFiles(run.path).predictions(key), predictions, true_labels)
    stored = run.metrics
    stored.update({result.key: result.metrics for result in results})
    runs.write_json(run.path / "metrics.json", stored)
    return results


def _evaluate_ensemble(path: Path, *, split: str | None, tta_n: int | None, device: str) -> list[Evaluation]:
    """An ensemble folder's figures on its val and test splits, through its members' predictions."""
    from imagefit.ensembles import load_ensemble
    from imagefit.prediction.models import EnsemblePredictor

    ensemble = load_ensemble(path)
    predictor = EnsemblePredictor.from_folder(path, device=device)
    samples = ensemble.split()
    names = [split] if split else [name for name in ("val", "test") if any(s.split == name for s in samples)]
    results = []
    for key in names:
        chosen = [s for s in samples if s.split == key]
        predictions = predictor.predict_paths([s.path for s in chosen], tta_n=tta_n, batch_size=32)
        by_path = {s.path: s.label for s in chosen}
        true_labels = [by_path[p] for p in predictions.paths]
        y_true = [ensemble.classes.index(label) for label in true_labels]
        metrics = classification_metrics(y_true, predictions.probabilities, ensemble.classes)
        metrics["skipped"] = len(predictions.skipped)
        results.append(Evaluation(key, metrics, predictions, true_labels))
        _write_predictions(runs.RunFiles(path).predictions(key), predictions, true_labels)
    stored = ensemble.metrics
    for result in results:
        gain = stored.get(result.key, {}).get("gain_over_best_member")
        stored[result.key] = {**result.metrics, **({"gain_over_best_member": gain} if gain is not None else {})}
    runs.write_json(runs.RunFiles(path).metrics, stored)
    return results


def _targets(run: runs.Run, data: str | Path | None, split: str | None) -> dict[str, list[Sample]]:
    if data is None:
        samples = run.split()
        names = [split] if split else [name for name in ("val", "test") if any(s.split == name for s in samples)]
        chosen = {name: [s for s in samples if s.split == name] for name in names}
        empty = [name for name, members in chosen.items() if not members]
        if empty:
            raise UserError(f"{run.path} has no '{empty[0]}' split. Its splits: val, test (when made); or pass DATA")
        return chosen
    inventory = scan(Path(data))
    unknown = sorted({s.label for s in inventory.samples} - set(run.classes))
    if unknown:
        raise UserError(
            f"{data} has classes the model does not know: {', '.join(unknown)}. "
            f"The model's classes: {', '.join(run.classes)}"
        )
    samples = [s for s in inventory.samples if not split or s.split == split]
    return {f"data:{runs.dataset_name(Path(data))}": samples}


def _write_predictions(path: Path, predictions: Predictions, true_labels: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", "confidence", *predictions.classes])
        for locator, truth, row in zip(predictions.paths, true_labels, predictions.probabilities, strict=True):
            best = int(np.argmax(row))
            writer.writerow([locator, truth, predictions.classes[best], f"{row[best]:.6f}", *(f"{p:.6f}" for p in row)])


def read_predictions(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of a predictions CSV (path, true, predicted, confidence, probabilities) and its class names."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        classes = reader.fieldnames[4:] if reader.fieldnames else []
    return rows, classes
