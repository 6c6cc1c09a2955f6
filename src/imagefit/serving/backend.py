"""What the server predicts with: ONNX Runtime (the run's export, made on first use) or PyTorch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagefit.errors import UserError

BACKENDS = ("auto", "onnx", "openvino", "torch")
SHOWN = ("accuracy", "macro_f1", "count")  # the val figures /metadata gives (and the page shows)


@dataclass
class Backend:
    """A loaded model for serving: a predictor (an ensemble's: its members), its name, and the facts /metadata
    reports."""

    predictor: object
    name: str  # "onnxruntime", "openvino" or "pytorch"
    run: Path | None  # the run folder (Grad-CAM needs it), None for a bare .onnx or an ensemble
    facts: dict
    explainer: tuple | None = None  # (PyTorch model, preprocessing, classes) once /explain has been used

    @property
    def parts(self) -> list[tuple[object, float]]:
        """(predictor, weight) of each model whose probabilities are summed: an ensemble's members, or the one."""
        if hasattr(self.predictor, "members"):
            return list(zip(self.predictor.members, self.predictor.weights, strict=True))
        return [(self.predictor, 1.0)]


def load_backend(model: str | Path, *, backend: str = "auto") -> Backend:
    """A run folder (ONNX Runtime by default, its model.onnx exported on first use; OpenVINO with
    backend="openvino", PyTorch with backend="torch"), an exported .onnx file or OpenVINO's .xml; an ensemble
    folder the same way (ENS/onnx exported on first use) or an exported ensemble's JSON."""
    from imagefit.export.onnx import exported_graph
    from imagefit.prediction.ensembles import EnsemblePredictor, as_folder, is_ensemble
    from imagefit.prediction.onnx import OnnxPredictor
    from imagefit.prediction.predictors import TorchPredictor

    path = as_folder(Path(model))  # an ensemble folder's own JSON: serve the folder
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend} is not one of: {', '.join(BACKENDS)}")
    runtime = "openvino" if backend == "openvino" else "onnxruntime"  # an .xml is OpenVINO's whatever is asked
    if path.suffix.lower() in (".onnx", ".xml", ".json"):
        if not path.exists():
            raise UserError(f"{path}: no such exported model. Make one with `imagefit export RUN`")
        if backend == "torch":
            raise UserError(f"{path} is an exported model: serve its run (or ensemble) folder for --backend torch")
        if path.suffix.lower() == ".json":
            predictor = EnsemblePredictor.from_onnx(path, runtime=runtime)
            return _warmed(Backend(predictor, predictor.runtime, None, _ensemble_facts(predictor, path)))
        predictor = OnnxPredictor.from_file(path, runtime=runtime)
        return _warmed(Backend(predictor, predictor.runtime, None, _facts(predictor, path, None)))
    if is_ensemble(path):
        if backend == "torch":
            predictor = EnsemblePredictor.from_folder(path)
            return _warmed(Backend(predictor, "pytorch", None, _ensemble_facts(predictor, path / "ensemble.json")))
        facts_path = exported_graph(path)
        predictor = EnsemblePredictor.from_onnx(facts_path, runtime=runtime)
        return _warmed(Backend(predictor, predictor.runtime, None, _ensemble_facts(predictor, facts_path)))
    from imagefit.runs import load_run

    run = load_run(path)
    if backend == "torch":
        predictor = TorchPredictor.from_run(run.path)
        facts = _facts(predictor, run.path / "model.safetensors", run)
        return _warmed(Backend(predictor, "pytorch", run.path, facts))
    onnx_path = exported_graph(run.path)
    predictor = OnnxPredictor.from_file(onnx_path, runtime=runtime)
    return _warmed(Backend(predictor, predictor.runtime, run.path, _facts(predictor, onnx_path, run)))


def _warmed(loaded: Backend) -> Backend:
    """LOADED after one picture through each of its models, one model at a time, before any request.

    The server runs an ensemble's members in threads of their own, and the first call of OpenVINO's Python bindings
    from two threads at once can deadlock (pybind11's lazy numpy set-up: one thread holds the GIL in a static's
    guard, the other holds the guard's once-flag and waits for the GIL; every request then hung, measured in
    benchmarks/RESULTS.md). A first call from one thread settles it, and no request pays for the first run."""
    for predictor, _ in loaded.parts:
        size = predictor.preprocess.size
        predictor.probabilities(np.zeros((1, 3, size, size), dtype=np.float32))
    return loaded


def _ensemble_facts(ensemble, facts_path: Path) -> dict:
    """An ensemble's /metadata: its labels, each member's size, views and weight, and the ensemble's val figures."""
    from imagefit import __version__
    from imagefit.runs import RunFiles, read_json

    figures = {}
    for folder in (facts_path.parent, facts_path.parent.parent):  # ENS/ensemble.json or ENS/<format>/ensemble.json
        if RunFiles(folder).ensemble.exists() and RunFiles(folder).metrics.exists():
            figures = read_json(RunFiles(folder).metrics).get("val", {})
            break
    return {
        "labels": list(ensemble.classes),
        "model": f"ensemble of {len(ensemble.members)}",
        "members": [
            {"input_size": member.preprocess.size, "test_time_views": member.tta_n, "weight": weight}
            for member, weight in zip(ensemble.members, ensemble.weights, strict=True)
        ],
        "imagefit_version": __version__,
        "weights_sha256": hashlib.sha256(facts_path.read_bytes()).hexdigest()[:16],
        "validation": {k: figures[k] for k in SHOWN} if all(k in figures for k in SHOWN) else None,
    }


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
            validation={k: run.metrics["val"][k] for k in SHOWN if "val" in run.metrics},
        )
    return facts
