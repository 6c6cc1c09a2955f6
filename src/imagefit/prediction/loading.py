"""A predictor for whatever the user names: a run folder, an ensemble folder, an .onnx file or an exported
ensemble's JSON; and `predict`, which loads one and predicts files, folders and zips."""

from __future__ import annotations

from pathlib import Path

from imagefit import runs
from imagefit.errors import UserError
from imagefit.prediction.batches import DEFAULT_TTA_N, Predictions, Predictor, check_batch, predict_with
from imagefit.prediction.ensembles import EnsemblePredictor, as_folder, is_ensemble
from imagefit.prediction.inputs import collect_inputs
from imagefit.prediction.onnx import OnnxPredictor
from imagefit.prediction.predictors import TorchPredictor


def check_model_path(model: str | Path) -> Path:
    """MODEL as a path, or a UserError when no run folder, ensemble folder or exported model is there (no torch)."""
    path = Path(model)
    if path.suffix.lower() == ".onnx" and not path.exists():
        raise UserError(f"{path}: no such ONNX model. Make one with `imagefit export RUN --format onnx`")
    if path.suffix.lower() == ".json" and not path.exists():
        raise UserError(f"{path}: no such ensemble.json. Make one with `imagefit export ENS` (or pass ENS itself)")
    if path.suffix.lower() == ".xml" and not path.exists():
        raise UserError(f"{path}: no such OpenVINO model. Make one with `imagefit export RUN --format openvino`")
    if path.suffix.lower() not in (".onnx", ".json", ".xml"):
        runs.check_run_folder(path)
    return path


def load_predictor(model: str | Path, *, device: str = "cpu", runtime: str = "onnxruntime") -> Predictor:
    """A predictor for a run folder, an ensemble folder, an exported `.onnx` file (in RUNTIME: onnxruntime or
    openvino), OpenVINO's `.xml` or an exported ensemble's JSON."""
    path = as_folder(check_model_path(model))
    if is_ensemble(path):
        return EnsemblePredictor.from_folder(path, device=device)
    if path.suffix.lower() == ".json" and path.exists():
        return EnsemblePredictor.from_onnx(path, runtime=runtime)
    if path.suffix.lower() in (".onnx", ".xml"):
        return OnnxPredictor.from_file(path, runtime=runtime)
    return TorchPredictor.from_run(path, device=device)


def predict(
    model: str | Path,
    inputs: list[str | Path],
    *,
    tta: bool | None = None,
    tta_n: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    adapt: bool = False,
    runtime: str = "onnxruntime",
) -> Predictions:
    """Predict every image under INPUTS with a run folder or an exported .onnx model.

    Test-time views: the run's own choice (made on val when it trained) unless `tta` is False (none),
    True (`tta_n`, default 2) or `tta_n` is given. With `adapt` (a run or ensemble folder), the BatchNorm
    statistics are first adapted to the images (prediction.adapt); `predictions.adaptation` says what it did.
    RUNTIME runs an exported `.onnx` file: onnxruntime or openvino.
    """
    predictor = load_predictor(model, device=device, runtime=runtime)
    views = None if tta is None and tta_n is None else 1 if tta is False else tta_n or DEFAULT_TTA_N
    check_batch(views or 1, batch_size)
    locators = collect_inputs(list(inputs))
    if adapt:
        from imagefit.prediction.adapt import predict_adapted

        return predict_adapted(predictor, locators, tta_n=views, batch_size=batch_size)
    return predict_with(predictor, locators, tta_n=views, batch_size=batch_size)
