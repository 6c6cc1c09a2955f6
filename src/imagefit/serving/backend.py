"""What the server predicts with: ONNX Runtime (the run's export, made on first use) or PyTorch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from imagefit.errors import UserError


@dataclass
class Backend:
    """A loaded model for serving: a predictor, its name, and the facts /metadata reports."""

    predictor: object
    name: str  # "onnxruntime" or "pytorch"
    run: Path | None  # the run folder (Grad-CAM needs it), None for a bare .onnx
    facts: dict
    explainer: tuple | None = None  # (PyTorch model, preprocessing, classes) once /explain has been used


def load_backend(model: str | Path, *, backend: str = "auto") -> Backend:
    """A run folder (ONNX Runtime by default, its model.onnx exported on first use; PyTorch with backend="torch")
    or an exported .onnx file."""
    from imagefit.prediction.onnx import OnnxPredictor
    from imagefit.prediction.predictors import TorchPredictor

    path = Path(model)
    if backend not in ("auto", "onnx", "torch"):
        raise UserError(f"--backend {backend} is not one of: auto, onnx, torch")
    if path.suffix.lower() == ".onnx":
        if not path.exists():
            raise UserError(f"{path}: no such ONNX model. Make one with `imagefit export RUN`")
        if backend == "torch":
            raise UserError(f"{path} is an ONNX model: serve its run folder for --backend torch")
        predictor = OnnxPredictor.from_file(path)
        return Backend(predictor, "onnxruntime", None, _facts(predictor, path, None))
    from imagefit.runs import load_run

    run = load_run(path)
    if backend == "torch":
        predictor = TorchPredictor.from_run(run.path)
        return Backend(predictor, "pytorch", run.path, _facts(predictor, run.path / "model.safetensors", run))
    onnx_path = run.path / "model.onnx"
    if not onnx_path.exists():
        from imagefit.export.onnx import export_onnx

        export_onnx(run.path, out=onnx_path)
    predictor = OnnxPredictor.from_file(onnx_path)
    return Backend(predictor, "onnxruntime", run.path, _facts(predictor, onnx_path, run))


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
