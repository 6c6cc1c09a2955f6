"""What a predictor is (`Predictor`), and a run folder's model in PyTorch (`TorchPredictor`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagefit.data.preprocess import Preprocess
from imagefit.tasks import SINGLE, Task, task_for


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
    task: Task = task_for(SINGLE)  # multi-label: sigmoid probabilities, one threshold a label
    thresholds: object = None
    run_path: Path | None = None  # the run folder it came from (predict --adapt measures its training images)

    @classmethod
    def from_run(cls, path: Path, *, device: str = "cpu") -> TorchPredictor:
        """The run folder's model, loaded from model.safetensors, with the run's prediction settings."""
        from imagefit.models.trained import load_trained
        from imagefit.runs import load_run

        run = load_run(path)
        return cls.for_run(run, load_trained(run), device=device)

    @classmethod
    def for_run(cls, run, model, *, device: str = "cpu") -> TorchPredictor:
        """A predictor of MODEL (already in memory) with RUN's prediction settings, unknown index and thresholds."""
        import torch

        from imagefit.prediction.openset import load_unknown_index

        model = model.eval().to(device=device, memory_format=torch.channels_last)
        inference = run.inference
        index = load_unknown_index(run)
        predictor = cls(model, run.classes, inference.preprocess, device, inference.temperature, inference.tta_n, index)
        predictor.task, predictor.thresholds, predictor.run_path = run.task, run.thresholds, run.path
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
        return self.task.activate(logits, self.temperature)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self.activate(self.logits(batch))

    def with_embeddings(self, batch: np.ndarray) -> np.ndarray:
        """[N, C + D]: calibrated probabilities, then the embedding (both average over test-time views)."""
        out = self.raw(batch)
        count = len(self.classes)
        return np.concatenate([self.activate(out[:, :count]), out[:, count:]], axis=1)
