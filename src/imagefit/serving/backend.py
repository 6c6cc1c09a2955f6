"""What the server predicts with: ONNX Runtime (the run's export, made on first use) or PyTorch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from imagefit.errors import UserError

BACKENDS = ("auto", "onnx", "openvino", "torch")


@dataclass
class Backend:
    """A loaded model for serving: a predictor, its name, and the facts /metadata reports."""

    predictor: object
    name: str  # "onnxruntime", "openvino" or "pytorch"
    run: Path | None  # the run folder (Grad-CAM needs it), None for a bare .onnx
    facts: dict
    explainer: tuple | None = None  # (PyTorch model, preprocessing, classes) once /explain has been used


def load_backend(model: str | Path, *, backend: str = "auto") -> Backend:
    """A run folder (ONNX Runtime by default, its model.onnx exported on first use; OpenVINO with
    backend="openvino", PyTorch with backend="torch"), an exported .onnx file or OpenVINO's .xml."""
    from imagefit.export.onnx import exported_graph
    from imagefit.prediction.onnx import OnnxPredictor
    from imagefit.prediction.predictors import TorchPredictor

    path = Path(model)
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend} is not one of: {', '.join(BACKENDS)}")
    runtime = "openvino" if backend == "openvino" or path.suffix.lower() == ".xml" else "onnxruntime"
    if path.suffix.lower() in (".onnx", ".xml"):
        if not path.exists():
            raise UserError(f"{path}: no such exported model. Make one with `imagefit export RUN`")
        if backend == "torch":
            raise UserError(f"{path} is an exported model: serve its run folder for --backend torch")
        predictor = OnnxPredictor.from_file(path, runtime=runtime)
        return Backend(predictor, runtime, None, _facts(predictor, path, None))
    from imagefit.runs import load_run

    run = load_run(path)
    if backend == "torch":
        predictor = TorchPredictor.from_run(run.path)
        return Backend(predictor, "pytorch", run.path, _facts(predictor, run.path / "model.safetensors", run))
    onnx_path = exported_graph(run.path)
    predictor = OnnxPredictor.from_file(onnx_path, runtime=runtime)
    return Backend(predictor, runtime, run.path, _facts(predictor, onnx_path, run))


def _facts(predictor, weights: Path, run) -> dict:
    from imagefit import __version__

    facts = {
        "labels": list(predictor.classes),
        "input_size": predictor.preprocess.size,
        "preprocess": predictor.preprocess.to_dict(),
        "imagefit_version": __version__,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:16],
    }
    if run is not None:
        from imagefit.runs import RunFiles, read_json

        env = read_json(RunFiles(run.path).env) if RunFiles(run.path).env.exists() else {}
        facts.update(
            model=run.recipe.model.backbone,
            run=run.path.name,
            data_fingerprint=env.get("data_fingerprint", ""),
            temperature=run.inference.temperature,
            test_time_views=run.inference.tta_n,
            validation={k: run.metrics["val"][k] for k in ("accuracy", "macro_f1", "count") if "val" in run.metrics},
        )
    return facts
