"""A finished run folder, loaded (`load_run`): recipe, classes, prediction settings, metrics. Nothing is unpickled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagefit.config import Recipe
from imagefit.data.preprocess import Preprocess
from imagefit.data.split import read_split
from imagefit.errors import UserError
from imagefit.runs.files import FORMAT_VERSION, RunFiles, read_json
from imagefit.tasks import SINGLE, Task, task_for


@dataclass(frozen=True)
class Inference:
    """How the run's model meets new images: input preprocessing, test-time views and temperature, chosen on val.

    Probabilities are the mean over `tta_n` views (the image, then its mirror) of softmax(logits / temperature).
    """

    preprocess: Preprocess
    tta_n: int = 1
    temperature: float = 1.0

    def to_dict(self) -> dict:
        return {"preprocess": self.preprocess.to_dict(), "tta_n": self.tta_n, "temperature": self.temperature}

    @classmethod
    def from_dict(cls, values: dict) -> Inference:
        return cls(
            Preprocess.from_dict(values["preprocess"]),
            int(values.get("tta_n", 1)),
            float(values.get("temperature", 1.0)),
        )


@dataclass
class Run:
    """A finished run folder, loaded: recipe, classes, preprocessing, metrics and the model."""

    path: Path
    config: dict
    classes: list[str]

    @property
    def recipe(self) -> Recipe:
        return Recipe.from_dict(self.config["recipe"])

    @property
    def inference(self) -> Inference:
        """Input size, test-time views and temperature chosen on val (the training preprocessing in older runs)."""
        if "inference" in self.config:
            return Inference.from_dict(self.config["inference"])
        return Inference(Preprocess.from_dict(self.config["preprocess"]))

    @property
    def preprocess(self) -> Preprocess:
        """The preprocessing of new images (evaluation size, normalisation), as prediction and export use it."""
        return self.inference.preprocess

    @property
    def task(self) -> Task:
        """The run's task object (config.json's `task`: 'single-label' unless it says 'multi-label')."""
        return task_for(self.config.get("task", SINGLE))

    @property
    def thresholds(self):
        """The decision thresholds in class order (a multi-label run's, chosen on val), or None."""
        return self.task.thresholds(self.config.get("thresholds", {}), self.classes)

    @property
    def refit_note(self) -> str:
        """For a refit (trained on train + val), the plain words that it has no validation figure of its own."""
        source = self.config.get("refit_of")
        if not source:
            return ""
        return (
            f"refit of {source} on its train + val images: this model has no validation figure of its own; "
            "the val figures shown are that run's estimate"
        )

    @property
    def train_preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.config["preprocess"])

    @property
    def files(self) -> RunFiles:
        """Where each of the run's files lives."""
        return RunFiles(self.path)

    @property
    def metrics(self) -> dict:
        path = self.files.metrics
        return read_json(path) if path.exists() else {}

    def split(self):
        """The samples of split.csv (path, label, split)."""
        return read_split(self.files.split)


def check_run_folder(path: str | Path, *, resumable: bool = False) -> Path:
    """PATH as a path, or a UserError when it is no run (or ensemble) folder; with `resumable`, when it holds no
    config.json to resume from. Reads no model, so it answers before torch is imported."""
    path = Path(path)
    if resumable:
        if not RunFiles(path).config.exists():
            raise UserError(f"{path}: no config.json, so nothing to resume. Start a new run with `imagefit train DATA`")
        return path
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder. Pass the folder `imagefit train` printed at its end")
    return path


def load_run(path: Path) -> Run:
    """Load a run folder; raises UserError naming what is missing or too new."""
    path = check_run_folder(path)
    files = RunFiles(path)
    missing = [file.name for file in (files.model, files.config, files.labels) if not file.exists()]
    if missing and files.ensemble.exists():
        members = [str(m.get("run")) for m in read_json(files.ensemble).get("members", []) if isinstance(m, dict)]
        raise UserError(
            f"{path} is an ensemble folder and this takes one run: pass one of its members"
            + (f" ({', '.join(members)})" if members else "")
        )
    if missing:
        raise UserError(
            f"{path}: not a finished run, missing {', '.join(missing)}. Finish it with `imagefit train --resume {path}`"
        )
    config = read_json(files.config)
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer imagefit ({config.get('imagefit_version')}). Upgrade imagefit")
    return Run(path=path, config=config, classes=read_json(files.labels))
