"""The task interface: everything that differs between one label an image and several.

Every other module asks its run's task (`task_for(config["task"])`) instead of testing which task it is.
NumPy methods serve data, evaluation and prediction; the tensor methods (loss, mixing, validation
metrics, the exported output) import torch when training or export calls them, so the data and ONNX
paths, which never call them, stay free of torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from imagefit.config import DataRecipe
from imagefit.errors import UserError


@dataclass(frozen=True)
class Imbalance:
    """What training does about unequal classes (or labels), and the figures behind it."""

    mode: str  # 'weights' (class or positive weights in the loss), 'sampler' or 'none'
    ratio: float  # largest count over smallest
    counts: dict[str, int]
    weights: np.ndarray | None = None  # float32, one a class (or a label's positive weight)
    said: str = ""  # one line for the console ('' when nothing is done)
    handling: str = ""  # what the audit says train will use
    extra: dict = field(default_factory=dict)  # task-specific facts for the audit


@dataclass(frozen=True)
class LabelIssue:
    index: int  # of the sample
    score: float  # how sure the issue is
    suggested: str  # the label the out-of-fold model would give


class Task(ABC):
    name: str
    csv_label_column: str  # the second column of a predictions CSV
    onnx_output: str  # the exported graph's first output
    calibrated: bool  # a temperature fitted on val scales the logits (ECE and the calibration section apply)
    flags_unknown: bool  # predictions and metrics say which images look like no training class
    chosen_on_val: str  # the config.json entry the finish chooses on val ('inference' or 'thresholds')
    report_sections: tuple[str, ...]  # report.html's sections, in order
    mixes_label_rows: bool = False  # its MixUp/CutMix takes rows of label probabilities (soft pseudo-labels) as given
    unsupported: dict[str, str] = {}  # feature -> why it is not offered for this task yet

    def __repr__(self) -> str:
        return f"Task({self.name!r})"

    def offers(self, feature: str) -> bool:
        """Whether this task offers FEATURE (see `unsupported`)."""
        return feature not in self.unsupported

    def require(self, feature: str, where: object = "") -> None:
        """Refuse, in one line, a feature this task does not offer."""
        if feature in self.unsupported:
            prefix = f"{where}: " if where else ""
            raise UserError(f"{prefix}{self.unsupported[feature]}")

    # --- labels
    @abstractmethod
    def parts(self, label: str) -> list[str]:
        """The class names one sample's label holds."""

    def classes_of(self, labels: list[str]) -> list[str]:
        """The sorted class (or label) names the samples' labels use."""
        return sorted({part for label in labels for part in self.parts(label)})

    def known(self, labels: list[str], classes: list[str]) -> np.ndarray:
        """Whether each label uses only these classes (an evaluation of other data can hold new ones)."""
        names = set(classes)
        return np.array([set(self.parts(label)) <= names for label in labels], dtype=bool)

    @abstractmethod
    def targets(self, labels: list[str], classes: list[str]) -> np.ndarray:
        """What the loss compares with: class indices [N] or multi-hot rows [N, C]."""

    @abstractmethod
    def assign_splits(self, labels: list[str], carve: dict[str, float], seed: int) -> list[str]:
        """'val', 'test' or 'train' for each label (in the given order), stratified by class."""

    @abstractmethod
    def imbalance(self, labels: list[str], classes: list[str], data: DataRecipe) -> Imbalance:
        """How training meets the imbalance of these training labels under the data recipe (--imbalance, its
        ratio and the class weights' power)."""

    @abstractmethod
    def label_issues(self, vectors: np.ndarray, labels: list[str], classes: list[str], probabilities=None):
        """Likely wrong labels (cleanlab, out-of-fold probabilities from the embeddings), most likely first."""

    # --- probabilities and decisions
    @abstractmethod
    def activate(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Probabilities [N, C] from logits [N, C]."""

    @abstractmethod
    def view_probabilities(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Probabilities [N, C] from the logits of several views [N, views, C]."""

    @abstractmethod
    def from_exported(self, output: np.ndarray) -> np.ndarray:
        """Probabilities from the exported graph's first output."""

    @abstractmethod
    def thresholds(self, chosen: dict[str, float], classes: list[str]) -> np.ndarray | None:
        """The decision thresholds in class order (None: the most probable class wins)."""

    @abstractmethod
    def decide(self, probabilities: np.ndarray, classes: list[str], thresholds) -> list[str]:
        """Each image's label as a sample writes it."""

    @abstractmethod
    def metrics(self, labels: list[str], probabilities: np.ndarray, classes: list[str], thresholds) -> dict:
        """The figures of metrics.json for these (known-class) images."""

    # --- a predictions CSV
    @abstractmethod
    def csv_label(self, label: str) -> str:
        """The label as the CSV's second column writes it."""

    @abstractmethod
    def csv_columns(self, classes: list[str]) -> list[str]:
        """--full's columns after `path`."""

    @abstractmethod
    def csv_details(self, row: np.ndarray, classes: list[str], top_k: int) -> list[str]:
        """--full's values of those columns for one image's probabilities."""

    # --- tensors (training and export)
    @abstractmethod
    def loss(self, logits, targets, weights=None, smoothing: float = 0.0):
        """The training loss (weights: class weights, or per-label positive weights)."""

    @abstractmethod
    def mix(self, mixup, images, targets):
        """MixUp/CutMix a batch (timm's Mixup): the mixed images and targets."""

    @abstractmethod
    def val_metrics(self, num_classes: int):
        """(accuracy, macro-F1) torchmetrics objects for validation."""

    @abstractmethod
    def scored(self, logits, targets):
        """What the validation metrics are updated with: (scores, truth)."""

    @abstractmethod
    def exported(self, logits, mirrored, temperature: float):
        """The exported graph's first output from the logits (and its mirror's, or None)."""
