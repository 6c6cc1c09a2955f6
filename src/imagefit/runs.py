"""The run folder: the one description of every file `imagefit train` writes, atomic writes, and loading it back.

Nothing in a run folder is unpickled when it is loaded. `RunFiles` names every file; writers go
through a temporary file and a rename, so a crash never leaves half a file.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefit.config import Recipe
from imagefit.data.preprocess import Preprocess
from imagefit.data.split import read_split
from imagefit.errors import UserError
from imagefit.files import output_folder, write_json, write_rows, write_text  # noqa: F401  (the run folder's writers)

REQUIRED_FILES = ("model.safetensors", "config.json", "labels.json")
FORMAT_VERSION = 1


HISTORY_COLUMNS = ["epoch", "phase", "lr", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "seconds"]


@dataclass(frozen=True)
class RunFiles:
    """Where each file of a run folder lives. The README's run-folder table describes the same files."""

    root: Path

    @property
    def model(self) -> Path:  # the kept weights (backbone + head), safetensors
        return self.root / "model.safetensors"

    @property
    def head_only(self) -> Path:  # the model after phase 1 (pretrained backbone + trained head)
        return self.root / "head-only.safetensors"

    @property
    def config(self) -> Path:  # data path, resolved recipe, preprocessing, weights source, imbalance handling
        return self.root / "config.json"

    @property
    def labels(self) -> Path:  # class names in output order
        return self.root / "labels.json"

    @property
    def split(self) -> Path:  # path,label,split of every image used
        return self.root / "split.csv"

    @property
    def history(self) -> Path:  # one row per epoch (HISTORY_COLUMNS)
        return self.root / "history.csv"

    @property
    def metrics(self) -> Path:  # {"val": {...}, "test": {...}, "best_epoch": N}
        return self.root / "metrics.json"

    @property
    def env(self) -> Path:  # versions, device, data fingerprint, how it was trained
        return self.root / "env.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def checkpoints(self) -> Path:  # Lightning's last.ckpt (resume) and best.ckpt, loaded with weights_only
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def unlabelled(self) -> Path:  # path of every unlabelled test image (competition layout)
        return self.root / "unlabelled.csv"

    @property
    def submission(self) -> Path:  # Id,Category predictions of the unlabelled test images
        return self.root / "submission.csv"

    def predictions(self, key: str) -> Path:  # one row per image of an evaluated split
        return self.root / f"predictions-{key.replace(':', '-')}.csv"

    def stage(self) -> str:
        """How far the run got: 'new', 'head' (phase 1 done), 'fine-tune' (a checkpoint), 'trained', 'finished'."""
        if self.model.exists():
            metrics = read_json(self.metrics) if self.metrics.exists() else {}
            return "finished" if "val" in metrics else "trained"
        if self.last_checkpoint.exists():
            return "fine-tune"
        return "head" if self.head_only.exists() else "new"


def read_history(path: Path) -> list[dict]:
    """The rows of history.csv with numbers as numbers (epoch and phase as int)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {k: (int(v) if k in ("epoch", "phase") else float(v)) for k, v in row.items() if k in HISTORY_COLUMNS}
        for row in rows
    ]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def dataset_name(data: Path) -> str:
    """A run-name stem from DATA: its folder or file name, made filesystem-safe."""
    stem = Path(data).expanduser().resolve().stem or "data"
    return re.sub(r"[^\w.-]+", "-", stem).strip("-") or "data"


def new_run_dir(*, data: Path, runs_dir: Path, name: str | None = None, out: Path | None = None) -> Path:
    """Create and return the folder of a new run: `out` exactly, else runs_dir/name, else runs_dir/<data>[-N]."""
    if out is not None:
        target = Path(out)
        if target.is_dir() and any(target.iterdir()):
            raise UserError(f"{target} exists and is not empty. Pick another --out, or --resume {target}")
        return output_folder(target)
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stem = name or dataset_name(data)
    for counter in range(1, 10_000):
        target = runs_dir / (stem if counter == 1 else f"{stem}-{counter}")
        try:
            target.mkdir()
            return target
        except FileExistsError:
            if name:
                raise UserError(f"{target} exists. Pick another --name, or --resume {target}") from None
    raise UserError(f"{runs_dir} holds too many runs named {stem}. Pass --name")


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
    def task(self) -> str:
        """'single-label' or 'multi-label'."""
        return self.config.get("task", "single-label")

    @property
    def thresholds(self):
        """Per-label thresholds of a multi-label run (chosen on val), in label order; 0.5 where none was chosen."""
        import numpy as np

        chosen = self.config.get("thresholds", {})
        return np.array([float(chosen.get(name, 0.5)) for name in self.classes], dtype=np.float32)

    def unknown_index(self):
        """The run's UnknownIndex (training embeddings and threshold), or None for a run without one."""
        facts = self.config.get("unknown")
        if not facts or not (self.path / facts["index"]).exists():
            return None
        from imagefit.openset import UnknownIndex

        return UnknownIndex.load(self.path / facts["index"], threshold=facts["threshold"], neighbour=facts["neighbour"])

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
    def metrics(self) -> dict:
        path = self.path / "metrics.json"
        return read_json(path) if path.exists() else {}

    def split(self):
        """The samples of split.csv (path, label, split)."""
        return read_split(self.path / "split.csv")

    def load_model(self):
        """The trained ImageClassifier in eval mode, weights from model.safetensors."""
        from safetensors.torch import load_file

        from imagefit.models import build_classifier

        model, _, _ = build_classifier(self.recipe.model, len(self.classes), pretrained=False)
        model.load_state_dict(load_file(self.path / "model.safetensors"), strict=True)
        return model.eval()


def load_run(path: Path) -> Run:
    """Load a run folder; raises UserError naming what is missing or too new."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder. Pass the folder `imagefit train` printed at its end")
    missing = [name for name in REQUIRED_FILES if not (path / name).exists()]
    if missing:
        raise UserError(
            f"{path}: not a finished run, missing {', '.join(missing)}. Finish it with `imagefit train --resume {path}`"
        )
    config = read_json(path / "config.json")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer imagefit ({config.get('imagefit_version')}). Upgrade imagefit")
    return Run(path=path, config=config, classes=read_json(path / "labels.json"))
