"""An exported model in ONNX Runtime: torch is never imported on this path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagefit.data.preprocess import Preprocess
from imagefit.errors import UserError
from imagefit.prediction.openset import UnknownIndex
from imagefit.tasks import SINGLE, Task, task_for


@dataclass
class OnnxPredictor:
    """An exported model in ONNX Runtime; its preprocessing and labels come from the JSON beside it."""

    session: object
    classes: list[str]
    preprocess: Preprocess
    tta_n: int = 1  # the run's own test-time views and temperature are inside the graph
    unknown: object = None  # the run's UnknownIndex, exported beside the graph
    task: Task = task_for(SINGLE)  # multi-label: the graph's first output is sigmoid probabilities
    thresholds: object = None
    runtime: str = "onnxruntime"  # or "openvino": what runs the graph

    @classmethod
    def from_file(cls, path: Path, *, threads: int = 0, runtime: str = "onnxruntime") -> OnnxPredictor:
        """The model at PATH (.onnx, or OpenVINO's .xml) in RUNTIME (onnxruntime | openvino; .xml: openvino)."""
        facts_path = path.with_suffix(".json")
        if not facts_path.exists():
            raise UserError(f"{facts_path} is missing: it holds the labels and preprocessing. Export again")
        facts = json.loads(facts_path.read_text(encoding="utf-8"))
        runtime = "openvino" if path.suffix.lower() == ".xml" else runtime
        session = _session(path, threads, runtime)
        unknown = None
        if facts.get("unknown") and "embedding" in [o.name for o in session.get_outputs()]:
            found = facts["unknown"]
            index_path = path.with_name(found["index"])
            unknown = UnknownIndex.load(index_path, threshold=found["threshold"], neighbour=found["neighbour"])
        predictor = cls(session, facts["classes"], Preprocess.from_dict(facts["preprocess"]), unknown=unknown)
        predictor.task, predictor.runtime = task_for(facts.get("task", SINGLE)), runtime
        predictor.thresholds = predictor.task.thresholds(facts.get("thresholds", {}), predictor.classes)
        return predictor

    def _first(self, outputs) -> np.ndarray:
        return self.task.from_exported(outputs[0])

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self._first(self.session.run([self.session.get_outputs()[0].name], {"images": batch}))

    def with_embeddings(self, batch: np.ndarray) -> np.ndarray:
        outputs = self.session.run([self.session.get_outputs()[0].name, "embedding"], {"images": batch})
        return np.concatenate([self._first(outputs), outputs[1]], axis=1)


def _session(path: Path, threads: int, runtime: str):
    """An inference session on PATH: ONNX Runtime's, or OpenVINO's with the same two calls."""
    if runtime == "openvino":
        from imagefit.prediction.openvino import OpenVinoSession

        return OpenVinoSession(path, threads=threads)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
