"""Where each file of a run folder lives (`RunFiles`), and reading its JSON and history back.

Writers go through a temporary file and a rename (imagefit.files), so a crash never leaves half a file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
UNKNOWN_INDEX = "unknown.safetensors"  # config.json's `unknown.index` names it in the folder


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
    def unknown_index(self) -> Path:  # training embeddings for the unknown score (prediction.openset)
        return self.root / UNKNOWN_INDEX

    @property
    def batchnorm_reference(self) -> Path:  # the training images' BatchNorm input moments (predict --adapt)
        return self.root / "batchnorm-reference.safetensors"

    @property
    def onnx(self) -> Path:  # `imagefit export`'s graph; its facts beside it (`.json`), and its unknown index
        return self.root / "model.onnx"

    @property
    def onnx_facts(self) -> Path:  # labels, preprocessing, outputs and task of the exported graph
        return self.onnx.with_suffix(".json")

    @property
    def onnx_unknown_index(self) -> Path:  # the training embeddings, copied beside the exported graph
        return self.onnx.with_name(f"{self.onnx.stem}.{UNKNOWN_INDEX}")

    @property
    def logs(self) -> Path:  # Lightning's logger (CSV by default)
        return self.root / "logs"

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
    def pseudo_labels(self) -> Path:  # a student's unlabelled images, with the label and round they trained with
        return self.root / "pseudo-labels.csv"

    @property
    def submission(self) -> Path:  # Id,Category predictions of the unlabelled test images
        return self.root / "submission.csv"

    @property
    def lr_find(self) -> Path:  # --lr auto: the range test's loss plot
        return self.root / "lr-find.png"

    @property
    def ensemble(self) -> Path:  # an ensemble folder's members and weights (imagefit.prediction.ensembles)
        return self.root / "ensemble.json"

    @property
    def onnx_ensemble(self) -> Path:  # an ensemble's float ONNX form: one graph a member and its own ensemble.json
        return self.root / "onnx" / "ensemble.json"

    @property
    def raw_pixels(self) -> Path:  # the raw-pixel SVM as a run folder, when it beat the network on val
        return self.root / "pixels"

    @property
    def explain(self) -> Path:  # Grad-CAM overlays written by `imagefit explain`
        return self.root / "explain"

    def predictions(self, key: str) -> Path:  # one row per image of an evaluated split
        return self.root / f"predictions-{key.replace(':', '-')}.csv"

    def all_predictions(self) -> list[Path]:
        """The predictions files written so far, of every split."""
        return sorted(self.root.glob("predictions-*.csv"))

    def stage(self) -> str:
        """How far the run got: 'new', 'head' (phase 1 done), 'fine-tune' (a checkpoint), 'trained', 'finished'."""
        if self.model.exists():
            metrics = read_json(self.metrics) if self.metrics.exists() else {}
            return "finished" if "val" in metrics or "val_in_training" in metrics else "trained"  # a refit's
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
