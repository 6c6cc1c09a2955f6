"""Predictors: a trained run through PyTorch, or an exported .onnx model through ONNX Runtime (no torch)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from imagefit.data.preprocess import Preprocess
from imagefit.errors import UserError


class Predictor(Protocol):
    classes: list[str]
    preprocess: Preprocess
    tta_n: int  # test-time views a prediction averages unless told otherwise

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C] for a float32 batch [N, 3, H, W]."""
        ...


@dataclass
class TorchPredictor:
    """A run folder's model in PyTorch (channels_last, inference mode, on CPU unless told), with its temperature."""

    model: object
    classes: list[str]
    preprocess: Preprocess
    device: str = "cpu"
    temperature: float = 1.0
    tta_n: int = 1
    unknown: object = None  # the run's UnknownIndex, when it has one
    task: str = "single-label"  # multi-label: sigmoid probabilities, one threshold a label
    thresholds: object = None

    @classmethod
    def from_run(cls, path: Path, *, device: str = "cpu") -> TorchPredictor:
        import torch

        from imagefit.runs import load_run

        run = load_run(path)
        model = run.load_model().to(device=device, memory_format=torch.channels_last)
        inference = run.inference
        index = run.unknown_index()
        predictor = cls(model, run.classes, inference.preprocess, device, inference.temperature, inference.tta_n, index)
        predictor.task, predictor.thresholds = run.task, run.thresholds
        return predictor

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """[N, C + D]: the raw logits (before the temperature), then the backbone's embedding."""
        import torch

        from imagefit.models.chunked import in_chunks

        with torch.inference_mode():
            images = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
            features = in_chunks(self.model.backbone, images)
            return torch.cat([self.model.head(features), features], dim=1).float().cpu().numpy()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The model's raw logits [N, C] (before the temperature)."""
        return self.raw(batch)[:, : len(self.classes)]

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated softmax probabilities, or for multi-label the sigmoid of each label."""
        if self.task == "multi-label":
            return 1.0 / (1.0 + np.exp(-logits))
        return softmax(logits / self.temperature)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self.activate(self.logits(batch))

    def with_embeddings(self, batch: np.ndarray) -> np.ndarray:
        """[N, C + D]: calibrated probabilities, then the embedding (both average over test-time views)."""
        out = self.raw(batch)
        count = len(self.classes)
        return np.concatenate([self.activate(out[:, :count]), out[:, count:]], axis=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclass
class OnnxPredictor:
    """An exported model in ONNX Runtime; its preprocessing and labels come from the JSON beside it."""

    session: object
    classes: list[str]
    preprocess: Preprocess
    tta_n: int = 1  # the run's own test-time views and temperature are inside the graph
    unknown: object = None  # the run's UnknownIndex, exported beside the graph
    task: str = "single-label"  # multi-label: the graph's first output is sigmoid probabilities
    thresholds: object = None

    @classmethod
    def from_file(cls, path: Path, *, threads: int = 0) -> OnnxPredictor:
        import onnxruntime as ort

        facts_path = path.with_suffix(".json")
        if not facts_path.exists():
            raise UserError(f"{facts_path} is missing: it holds the labels and preprocessing. Export again")
        facts = json.loads(facts_path.read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        unknown = None
        if facts.get("unknown") and "embedding" in [o.name for o in session.get_outputs()]:
            from imagefit.openset import UnknownIndex

            found = facts["unknown"]
            index_path = path.with_name(found["index"])
            unknown = UnknownIndex.load(index_path, threshold=found["threshold"], neighbour=found["neighbour"])
        predictor = cls(session, facts["classes"], Preprocess.from_dict(facts["preprocess"]), unknown=unknown)
        predictor.task = facts.get("task", "single-label")
        if predictor.task == "multi-label":
            predictor.thresholds = np.array([facts["thresholds"][c] for c in predictor.classes], dtype=np.float32)
        return predictor

    def _first(self, outputs) -> np.ndarray:
        return outputs[0] if self.task == "multi-label" else softmax(outputs[0])

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self._first(self.session.run([self.session.get_outputs()[0].name], {"images": batch}))

    def with_embeddings(self, batch: np.ndarray) -> np.ndarray:
        outputs = self.session.run([self.session.get_outputs()[0].name, "embedding"], {"images": batch})
        return np.concatenate([self._first(outputs), outputs[1]], axis=1)


@dataclass
class EnsemblePredictor:
    """Members (each with its own size, views and temperature) whose probabilities are averaged with weights."""

    members: list
    weights: list[float]
    classes: list[str]
    tta_n: int | None = None  # None: each member's own test-time views

    @classmethod
    def from_folder(cls, path: Path, *, device: str = "cpu") -> EnsemblePredictor:
        from imagefit.ensembles import load_ensemble

        ensemble = load_ensemble(path)
        members = [TorchPredictor.from_run(member, device=device) for member in ensemble.members]
        return cls(members, ensemble.weights, ensemble.classes)

    @classmethod
    def from_onnx(cls, facts_path: Path) -> EnsemblePredictor:
        facts = json.loads(facts_path.read_text(encoding="utf-8"))
        members = [OnnxPredictor.from_file(facts_path.parent / m["file"]) for m in facts["members"]]
        return cls(members, [float(m["weight"]) for m in facts["members"]], facts["classes"])

    def predict_paths(self, locators: list[str], *, tta_n: int | None, batch_size: int, threads: int = 0):
        """Predictions of every member, averaged with the weights over the images all members could read."""
        from imagefit.prediction import Predictions, predict_with

        results = [predict_with(m, locators, tta_n=tta_n, batch_size=batch_size, threads=threads) for m in self.members]
        readable = set.intersection(*(set(r.paths) for r in results))
        paths = [p for p in results[0].paths if p in readable]
        total = np.zeros((len(paths), len(self.classes)))
        for result, weight in zip(results, self.weights, strict=True):
            rows = {p: row for p, row in zip(result.paths, result.probabilities, strict=True)}
            total += weight * np.stack([rows[p] for p in paths]) if paths else 0.0
        skipped = {p: why for r in results for p, why in r.skipped}
        return Predictions(paths, total.astype(np.float32), list(self.classes), sorted(skipped.items()))


def load_predictor(model: str | Path, *, device: str = "cpu") -> Predictor:
    """A predictor for a run folder, an ensemble folder, an exported `.onnx` file or an exported ensemble's JSON."""
    path = Path(model)
    if (path / "ensemble.json").exists():
        return EnsemblePredictor.from_folder(path, device=device)
    if path.suffix.lower() == ".json" and path.exists():
        return EnsemblePredictor.from_onnx(path)
    if path.suffix.lower() == ".onnx":
        if not path.exists():
            raise UserError(f"{path}: no such ONNX model. Make one with `imagefit export RUN --format onnx`")
        return OnnxPredictor.from_file(path)
    return TorchPredictor.from_run(path, device=device)
