"""Evaluate a run's exported model (ONNX Runtime or OpenVINO; float or int8) on the run's own splits.

The exported graph holds the run's prediction settings (size, views, temperature), so its figures are the
ones a deployment gets. They go into the run's metrics.json under `exported` -> the file's name -> the
split, beside (never over) the PyTorch model's, and one row per image into
predictions-<split>-<file stem>.csv. An ensemble folder's exported form (ENS/onnx, ENS/openvino-int8, ...: one
graph a member and an ensemble.json) is evaluated the same way, named by its folder.
"""

from __future__ import annotations

from pathlib import Path

from imagefit import runs
from imagefit.errors import UserError
from imagefit.evaluation.evaluator import Evaluation, evaluation_targets, write_predictions
from imagefit.prediction.batches import check_batch, predict_with
from imagefit.prediction.ensembles import Ensemble, as_folder, is_ensemble, load_ensemble
from imagefit.prediction.loading import load_predictor

RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}


def exported_model(run, model: str | Path | None) -> Path:
    """MODEL (a path, or a file name inside the run or ensemble folder), or the run's model.onnx (an ensemble's
    onnx/ensemble.json)."""
    ensemble = isinstance(run, Ensemble)
    path = Path(model) if model is not None else run.files.onnx_ensemble if ensemble else run.files.onnx
    path = path if path.exists() else run.path / path
    if ensemble and as_folder(path) != path:
        raise UserError(
            f"{model}: that is the ensemble itself; `imagefit evaluate {run.path}` evaluates it, --model takes "
            f"an exported ensemble's JSON ({run.path}/onnx/ensemble.json)"
        )
    suffixes = (".json",) if ensemble else (".onnx", ".xml")
    if path.suffix.lower() not in suffixes or not path.is_file():
        wanted = "exported ensemble's ensemble.json" if ensemble else "exported .onnx or .xml model"
        raise UserError(f"{model or path}: no {wanted} there (make one: imagefit export {run.path})")
    return path


def _names(path: Path) -> tuple[str, str]:
    """The key of MODEL's figures in metrics.json and the suffix of its predictions CSV: an exported ensemble is
    named by its folder (onnx, openvino-int8, ...), a file by its name."""
    if path.suffix.lower() == ".json":
        return f"{path.parent.name}/{path.name}", path.parent.name
    return path.name, path.stem


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
    `exported`. RUN may be an ensemble folder, MODEL then an exported ensemble's JSON (ENS/openvino-int8/...)."""
    if backend not in RUNTIMES:
        raise UserError(f"--backend {backend} is not one of: torch, {', '.join(RUNTIMES)}")
    run = load_ensemble(run_path) if is_ensemble(run_path) else runs.load_run(Path(run_path))
    path = exported_model(run, model)
    key_name, csv_name = _names(path)
    predictor = load_predictor(path, runtime=RUNTIMES[backend])
    backend = "openvino" if predictor.runtime == "openvino" else backend  # OpenVINO's IR runs in OpenVINO regardless
    check_batch(tta_n or 1, 32)
    results = []
    for key, chosen in evaluation_targets(run, None, split).items():
        predictions = predict_with(predictor, [s.path for s in chosen], tta_n=tta_n, batch_size=32)
        truth = {s.path: s.label for s in chosen}
        true_labels = [truth[p] for p in predictions.paths]
        known = run.task.known(true_labels, run.classes)
        labels = [label for label, ok in zip(true_labels, known, strict=True) if ok]
        metrics = run.task.metrics(labels, predictions.probabilities[known], run.classes, run.thresholds)
        metrics.update(skipped=len(predictions.skipped), backend=backend, model=key_name)
        results.append(Evaluation(key, metrics, predictions, true_labels))
        write_predictions(run.files.predictions(f"{key}-{csv_name}"), predictions, true_labels)
    stored = run.metrics
    exported = stored.setdefault("exported", {}).setdefault(key_name, {})
    exported.update({result.key: result.metrics for result in results})
    runs.write_json(run.files.metrics, stored)
    return results
