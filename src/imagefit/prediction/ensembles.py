"""Ensembles of runs: member probabilities averaged with weights fitted on their shared validation split.

An ensemble folder works where a run folder does (evaluate, predict, report, export):

    ENS/ensemble.json   members (run folders), weights, method, classes
    ENS/labels.json     class names, as in every member
    ENS/split.csv       the members' shared split
    ENS/metrics.json    the ensemble's val/test figures, each member's, the gain over the best member
    ENS/predictions-<split>.csv, ENS/report.html

Methods: `mean` (equal weights), `weighted` (non-negative weights summing to one that minimise
val log loss, started from the best member, so never worse than it on val), `greedy` (Caruana et
al. 2004: members added with replacement while val log loss falls). Each member predicts with
its own evaluation size, test-time views and temperature, then the probabilities are averaged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imagefit import runs
from imagefit.errors import UserError
from imagefit.prediction.onnx import OnnxPredictor
from imagefit.prediction.predictors import TorchPredictor


def is_ensemble(path: str | Path) -> bool:
    return runs.RunFiles(Path(path)).ensemble.exists()


def ensemble_json(path: Path) -> tuple[str, dict]:
    """What the JSON at PATH is, and its facts: ("folder", ...) for an ensemble folder's own ensemble.json (its
    members are run folders), ("exported", ...) for an exported ensemble's (its members are graph files); a
    UserError for any other JSON."""
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable ensemble.json ({error}). Pass a run or ensemble folder") from None
    members = facts.get("members") if isinstance(facts, dict) and "classes" in facts else None
    if members and all(isinstance(m, dict) and "file" in m for m in members):
        return "exported", facts
    if members and all(isinstance(m, dict) and "run" in m for m in members):
        return "folder", facts
    raise UserError(
        f"{path}: not an ensemble's JSON. Pass a run or ensemble folder, an exported .onnx/.xml model, "
        "or an exported ensemble's JSON (ENS/onnx/ensemble.json)"
    )


def as_folder(path: Path) -> Path:
    """PATH, or its folder when PATH is an ensemble folder's own ensemble.json (which names that ensemble)."""
    if path.suffix.lower() == ".json" and path.is_file() and ensemble_json(path)[0] == "folder":
        return path.parent
    return path


@dataclass
class Ensemble:
    """A loaded ensemble folder: its member run folders and their weights."""

    path: Path
    members: list[Path]
    weights: list[float]
    classes: list[str]
    method: str

    @property
    def files(self) -> runs.RunFiles:
        return runs.RunFiles(self.path)

    @property
    def metrics(self) -> dict:
        return runs.read_json(self.files.metrics) if self.files.metrics.exists() else {}

    @property
    def task(self):
        """Ensembles are single-label (`imagefit ensemble` refuses other tasks)."""
        from imagefit.tasks import SINGLE, task_for

        return task_for(SINGLE)

    thresholds = None  # no per-label thresholds: single-label

    def split(self):
        from imagefit.data.split import read_split

        return read_split(runs.RunFiles(self.path).split)


def load_ensemble(path: str | Path) -> Ensemble:
    path = Path(path)
    if not is_ensemble(path):
        raise UserError(f"{path}: no ensemble.json; make one with `imagefit ensemble RUN RUN --out {path}`")
    facts = runs.read_json(runs.RunFiles(path).ensemble)
    members = [Path(m["run"]) for m in facts["members"]]
    return Ensemble(path, members, [float(m["weight"]) for m in facts["members"]], facts["classes"], facts["method"])


@dataclass
class EnsemblePredictor:
    """Members (each with its own size, views and temperature) whose probabilities are averaged with weights."""

    members: list
    weights: list[float]
    classes: list[str]
    tta_n: int | None = None  # None: each member's own test-time views

    @property
    def runtime(self) -> str:
        """What runs the members: openvino when every member is OpenVINO's, onnxruntime when any exported member is
        not, else pytorch (a folder's members)."""
        runtimes = {getattr(member, "runtime", "pytorch") for member in self.members}
        return runtimes.pop() if len(runtimes) == 1 else "onnxruntime"

    @classmethod
    def from_folder(cls, path: Path, *, device: str = "cpu") -> EnsemblePredictor:
        ensemble = load_ensemble(path)
        members = [TorchPredictor.from_run(member, device=device) for member in ensemble.members]
        return cls(members, ensemble.weights, ensemble.classes)

    @classmethod
    def from_onnx(cls, facts_path: Path, *, runtime: str = "onnxruntime") -> EnsemblePredictor:
        """An exported ensemble's JSON: its members' graphs in RUNTIME (OpenVINO's .xml members: openvino)."""
        kind, facts = ensemble_json(facts_path)
        if kind == "folder":
            raise UserError(f"{facts_path} names run folders, not exported graphs: pass its folder {facts_path.parent}")
        members = [OnnxPredictor.from_file(facts_path.parent / m["file"], runtime=runtime) for m in facts["members"]]
        return cls(members, [float(m["weight"]) for m in facts["members"]], facts["classes"])
