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
from imagefit.data import Sample, scan
from imagefit.errors import UserError
from imagefit.evaluation.calibration import cross_fitted_probabilities, view_probabilities
from imagefit.prediction.batches import Predictions, check_batch, map_batches, predict_with
from imagefit.prediction.ensembles import EnsemblePredictor, is_ensemble, load_ensemble
from imagefit.prediction.predictors import TorchPredictor
from imagefit.tasks.scores import calibration_error, classification_metrics


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
    unknown: bool = False,
    predictor: TorchPredictor | None = None,
) -> list[Evaluation]:
    """Evaluate RUN on its val and test splits (or just `split`), or on DATA; write metrics and predictions.

    Predictions are made as `imagefit predict` makes them: the run's evaluation size, test-time
    views (`tta_n` overrides them) and temperature. `ece_before_scaling` is the calibration error of
    the same views without the temperature. With `unknown`, DATA may hold classes the run never
    saw: the class figures are on the known ones, and `unknown` holds how well each score tells the
    others apart (AUROC) and the false alarms and misses at the run's threshold. `predictor` is the
    run's model already in memory (training's finish), else it is loaded from the run folder.
    """
    if is_ensemble(run_path):
        return _evaluate_ensemble(Path(run_path), split=split, tta_n=tta_n, device=device)
    run = runs.load_run(Path(run_path))
    predictor = predictor or TorchPredictor.from_run(run.path, device=device)
    views = predictor.tta_n if tta_n is None else tta_n
    check_batch(views, 32)
    if unknown and predictor.unknown is None:
        raise UserError(f"{run.path} keeps no training embeddings to score unknown images (it was trained without)")
    results = []
    for key, samples in evaluation_targets(run, data, split, unknown=unknown).items():
        result = _evaluate_split(run, predictor, key, samples, views=views, unknown=unknown)
        results.append(result)
        write_predictions(run.files.predictions(key), result.predictions, result.true_labels)
    stored = run.metrics
    stored.update({result.key: result.metrics for result in results})
    runs.write_json(run.files.metrics, stored)
    return results


def _evaluate_split(run, predictor, key: str, samples: list[Sample], *, views: int, unknown: bool) -> Evaluation:
    """The figures and predictions of one split (or of DATA)."""
    paths, raw, skipped = map_batches(
        predictor.raw, predictor.preprocess, [s.path for s in samples], views=views, average=False
    )
    if samples and not paths:
        where, why = skipped[0] if skipped else (samples[0].path, "unreadable")
        why = str(why).replace(f": '{where}'", "")  # the OS names the file again
        fix = "Check the files" if key.startswith("data:") else "Put the data back where the run found it, or pass DATA"
        raise UserError(f"{run.path}: none of its {len(samples)} {key} images can be read, e.g. {where} ({why}). {fix}")
    count = len(run.classes)
    raw = raw if paths else np.zeros((0, views, count + 1))
    logits = raw[:, :, :count]
    task = run.task
    probabilities = task.view_probabilities(logits, predictor.temperature)
    predictions = Predictions(paths, probabilities, run.classes, skipped, task=task, thresholds=run.thresholds)
    if predictor.unknown is not None:
        predictions.unknown_scores = predictor.unknown.scores(raw[:, :, count:].mean(axis=1))
        predictions.unknown = predictor.unknown.flags(predictions.unknown_scores)
    by_path = {s.path: s.label for s in samples}
    true_labels = [by_path[p] for p in predictions.paths]
    common = {"skipped": len(skipped), "image_size": predictor.preprocess.size, "tta_n": views}
    known = task.known(true_labels, run.classes)
    known_labels = [label for label, ok in zip(true_labels, known, strict=True) if ok]
    metrics = task.metrics(known_labels, probabilities[known], run.classes, run.thresholds)
    if task.calibrated:  # a temperature was fitted on val: the calibration error without it
        y_true = task.targets(known_labels, run.classes)
        metrics["ece_before_scaling"] = calibration_error(y_true, view_probabilities(logits[known], 1.0))
        metrics["temperature"] = predictor.temperature
        if key == "val":  # the split the temperature was fitted on: its ECE out of sample too
            cross_fitted = cross_fitted_probabilities(logits[known], y_true)
            metrics["ece_cross_fitted"] = calibration_error(y_true, cross_fitted)
    if unknown and task.flags_unknown:
        metrics["unknown"] = openset_figures(predictions, logits, predictor, known)
    metrics.update(common)
    if predictions.unknown is not None and task.flags_unknown:
        metrics["flagged_unknown"] = float(predictions.unknown.mean()) if len(paths) else 0.0
    return Evaluation(key, metrics, predictions, true_labels)


def _evaluate_ensemble(path: Path, *, split: str | None, tta_n: int | None, device: str) -> list[Evaluation]:
    """An ensemble folder's figures on its val and test splits, through its members' predictions."""
    ensemble = load_ensemble(path)
    predictor = EnsemblePredictor.from_folder(path, device=device)
    samples = ensemble.split()
    names = [split] if split else [name for name in ("val", "test") if any(s.split == name for s in samples)]
    results = []
    for key in names:
        chosen = [s for s in samples if s.split == key]
        predictions = predict_with(predictor, [s.path for s in chosen], tta_n=tta_n, batch_size=32)
        by_path = {s.path: s.label for s in chosen}
        true_labels = [by_path[p] for p in predictions.paths]
        y_true = [ensemble.classes.index(label) for label in true_labels]
        metrics = classification_metrics(y_true, predictions.probabilities, ensemble.classes)
        metrics["skipped"] = len(predictions.skipped)
        results.append(Evaluation(key, metrics, predictions, true_labels))
        write_predictions(runs.RunFiles(path).predictions(key), predictions, true_labels)
    stored = ensemble.metrics
    for result in results:
        gain = stored.get(result.key, {}).get("gain_over_best_member")
        stored[result.key] = {**result.metrics, **({"gain_over_best_member": gain} if gain is not None else {})}
    runs.write_json(runs.RunFiles(path).metrics, stored)
    return results


def openset_figures(predictions: Predictions, logits: np.ndarray, predictor, known: np.ndarray) -> dict:
    """AUROC of each score at telling unknown from known images; false alarms and misses at the threshold."""
    from imagefit.prediction.openset import auroc, energy_score, softmax_score

    scores = {
        "knn": predictions.unknown_scores,
        "max_softmax": softmax_score(predictions.probabilities),
        "energy": energy_score(logits[:, 0], predictor.temperature),
    }
    flagged = predictions.unknown
    return {
        "known": int(known.sum()),
        "unknown": int((~known).sum()),
        "auroc": {name: round(auroc(values[known], values[~known]), 4) for name, values in scores.items()},
        "threshold": predictor.unknown.threshold,
        "false_alarm_rate": round(float(flagged[known].mean()), 4) if known.any() else float("nan"),
        "miss_rate": round(float((~flagged[~known]).mean()), 4) if (~known).any() else float("nan"),
    }


def evaluation_targets(
    run: runs.Run, data: str | Path | None, split: str | None, *, unknown: bool = False
) -> dict[str, list[Sample]]:
    """The samples to evaluate by key: RUN's val and test splits (or SPLIT), or DATA's images (`data:<name>`)."""
    if data is None:
        samples = run.split()
        names = [split] if split else [name for name in ("val", "test") if any(s.split == name for s in samples)]
        chosen = {name: [s for s in samples if s.split == name] for name in names}
        empty = [name for name, members in chosen.items() if not members]
        if empty:
            raise UserError(f"{run.path} has no '{empty[0]}' split. Its splits: val, test (when made); or pass DATA")
        return chosen
    inventory = scan(Path(data))
    strangers = sorted({s.label for s in inventory.samples} - set(run.classes))
    if strangers and not unknown:
        raise UserError(
            f"{data} has classes the model does not know: {', '.join(strangers)}. "
            f"The model's classes: {', '.join(run.classes)}. Pass --unknown to measure how well it flags them"
        )
    samples = [s for s in inventory.samples if not split or s.split == split]
    return {f"data:{runs.dataset_name(Path(data))}": samples}


def write_predictions(path: Path, predictions: Predictions, true_labels: list[str]) -> None:
    """path, true, predicted, confidence, one probability per class (then unknown_score, when the run has one)."""
    scores = predictions.unknown_scores
    header = ["path", "true", "predicted", "confidence", *predictions.classes]
    header += ["unknown_score"] if scores is not None else []
    predicted = predictions.labels  # multi-label: the labels above their thresholds, joined by "|"
    rows = []
    for index, (locator, truth, row) in enumerate(
        zip(predictions.paths, true_labels, predictions.probabilities, strict=True)
    ):
        best = int(np.argmax(row))
        extra = [f"{scores[index]:.6f}"] if scores is not None else []
        rows.append([locator, truth, predicted[index], f"{row[best]:.6f}", *(f"{p:.6f}" for p in row), *extra])
    runs.write_rows(path, header, rows)


def read_predictions(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of a predictions CSV (path, true, predicted, confidence, probabilities) and its class names."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        classes = [c for c in reader.fieldnames[4:] if c != "unknown_score"] if reader.fieldnames else []
    return rows, classes
