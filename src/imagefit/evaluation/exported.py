"""Evaluate a run's exported model (ONNX Runtime or OpenVINO; float or int8) on the run's own splits.

The exported graph holds the run's prediction settings (size, views, temperature), so its figures are the
ones a deployment gets. They go into the run's metrics.json under `exported` -> the file's name -> the
split, beside (never over) the PyTorch model's, and one row per image into
predictions-<split>-<file stem>.csv.
"""

from __future__ import annotations

from pathlib import Path

from imagefit import runs
from imagefit.errors import UserError
from imagefit.evaluation.evaluator import Evaluation, evaluation_targets, write_predictions
from imagefit.prediction.batches import check_batch, predict_with
from imagefit.prediction.loading import load_predictor

RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}


def exported_model(run: runs.Run, model: str | Path | None) -> Path:
    """MODEL (a path, or a file name inside the run folder), or the run's model.onnx."""
    path = Path(model) if model is not None else run.files.onnx
    path = path if path.exists() else run.path / path
    if path.suffix.lower() not in (".onnx", ".xml") or not path.is_file():
        raise UserError(f"{model or path}: no exported .onnx or .xml model there (make one: imagefit export RUN)")
    return path


def evaluate_exported(
    run_path: str | Path,
    *,
    backend: str = "onnx",
    model: str | Path | None = None,
    split: str | None = None,
    tta_n: int | None = None,
) -> list[Evaluation]:
    """Evaluate the exported MODEL of RUN (default its model.onnx; a bare file name is looked for in RUN) in
    BACKEND (onnx or openvino) on its val and test splits (or just SPLIT); record the figures under metrics.json's
    `exported`."""
    if backend not in RUNTIMES:
        raise UserError(f"--backend {backend} is not one of: torch, {', '.join(RUNTIMES)}")
    run = runs.load_run(Path(run_path))
    path = exported_model(run, model)
    predictor = load_predictor(path, runtime=RUNTIMES[backend])
    check_batch(tta_n or 1, 32)
    results = []
    for key, chosen in evaluation_targets(run, None, split).items():
        predictions = predict_with(predictor, [s.path for s in chosen], tta_n=tta_n, batch_size=32)
        truth = {s.path: s.label for s in chosen}
        true_labels = [truth[p] for p in predictions.paths]
        known = run.task.known(true_labels, run.classes)
        labels = [label for label, ok in zip(true_labels, known, strict=True) if ok]
        metrics = run.task.metrics(labels, predictions.probabilities[known], run.classes, run.thresholds)
        metrics.update(skipped=len(predictions.skipped), backend=backend, model=path.name)
        results.append(Evaluation(key, metrics, predictions, true_labels))
        write_predictions(run.files.predictions(f"{key}-{path.stem}"), predictions, true_labels)
    stored = run.metrics
    exported = stored.setdefault("exported", {}).setdefault(path.name, {})
    exported.update({result.key: result.metrics for result in results})
    runs.write_json(run.files.metrics, stored)
    return results
