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

    @classmethod
    def from_run(cls, path: Path, *, device: str = "cpu") -> TorchPredictor:
        import torch

        from imagefit.runs import load_run

        run = load_run(path)
        model = run.load_model().to(device=device, memory_format=torch.channels_last)
        inference = run.inference
        return cls(model, run.classes, inference.preprocess, device, inference.temperature, inference.tta_n)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The model's raw logits [N, C] (before the temperature)."""
        import torch

        with torch.inference_mode():
            images = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model(images).float().cpu().numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return softmax(self.logits(batch) / self.temperature)


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
        return cls(session=session, classes=facts["classes"], preprocess=Preprocess.from_dict(facts["preprocess"]))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {"images": batch})
        return softmax(logits)


def load_predictor(model: str | Path, *, device: str = "cpu") -> Predictor:
    """A predictor for a run folder or an exported `.onnx` file."""
    path = Path(model)
    if path.suffix.lower() == ".onnx":
        if not path.exists():
            raise UserError(f"{path}: no such ONNX model. Make one with `imagefit export RUN --format onnx`")
        return OnnxPredictor.from_file(path)
    return TorchPredictor.from_run(path, device=device)
