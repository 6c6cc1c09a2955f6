"""What the data says before fine-tuning: the majority rate, a raw-pixel baseline, and the head on frozen features.

A support vector machine (RBF kernel, C = 10, scikit-learn's "scale" width) on the images shrunk to PIXELS x PIXELS
grey levels costs seconds and says how much the pretrained features add: on photos they add a lot; on 8 px
digits raw pixels score 0.99-1.00 on val (a logistic regression on them 0.96-0.98, the network 0.98); on
inspection images it separates no rare defect. The levels are not standardised: an RBF kernel on standardised
pixels weighs the always-dark border as much as the strokes (digits: 0.985 against 0.996). The head's val accuracy
against the majority rate (what always answering the largest class scores) says whether the frozen
features carry the classes at all: on magnetic tiles the head ended under it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from sklearn.svm import SVC

from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import Sample
from imagefit.data.transforms import eval_transform, transformed
from imagefit.models.pixels import PIXELS, SUPPORTS, RawPixels

MOST_TRAIN = SUPPORTS  # training images the baseline fits on (a seeded sample of larger sets)
SVM_C = 10.0  # the SVM's penalty: the best of 1 and 10 on four of five sets' val (benchmarks/RESULTS.md)


@dataclass(frozen=True)
class Score:
    accuracy: float
    balanced: float


@dataclass(frozen=True)
class Measured:
    """The figures the fine-tuning choice reads, all on val."""

    majority: float  # accuracy of always answering the largest class
    pixels: Score | None  # the raw-pixel logistic regression (None: not measured)
    head: float | None  # the head on frozen features, its last epoch's accuracy
    shift: float | None = None  # BatchNorm input shift (imagefit.training.distance)

    def line(self) -> str:
        """One line for the console: what was measured on val."""
        parts = [f"majority class {self.majority:.2f}"]
        if self.pixels is not None:
            parts.append(f"raw pixels {self.pixels.accuracy:.2f} (balanced {self.pixels.balanced:.2f})")
        if self.head is not None:
            parts.append(f"head on frozen features {self.head:.2f}")
        return "measured on val: " + ", ".join(parts)

    def to_dict(self) -> dict:
        facts: dict = {"majority": round(self.majority, 4)}
        if self.pixels is not None:
            facts["pixels"] = {"accuracy": round(self.pixels.accuracy, 4), "balanced": round(self.pixels.balanced, 4)}
        if self.head is not None:
            facts["head"] = round(self.head, 4)
        if self.shift is not None:
            facts["shift"] = round(self.shift, 4)
        return facts


def majority_rate(labels: list[str]) -> float:
    """Share of the most common label in LABELS (0 when empty)."""
    if not labels:
        return 0.0
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / len(labels))


def pixel_rows(samples: list[Sample], preprocess: Preprocess) -> tuple[np.ndarray, list[str]]:
    """The grey thumbnails [N, PIXELS*PIXELS] of the readable SAMPLES' evaluation views, and their labels."""
    views, kept = transformed(samples, eval_transform(preprocess), min_size=preprocess.resize_size)
    thumbnails = RawPixels(preprocess.mean, preprocess.std)
    with torch.no_grad():
        rows = [thumbnails.thumbnail(view[None])[0].numpy() for view in views]
    return (np.stack(rows) if rows else np.zeros((0, PIXELS * PIXELS))), [s.label for s in kept]


def training_rows(train: list[Sample], preprocess: Preprocess, *, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """The thumbnails and labels the SVM fits on: TRAIN's, or a seeded MOST_TRAIN of larger sets."""
    if len(train) > MOST_TRAIN:
        keep = np.sort(np.random.default_rng(seed).choice(len(train), size=MOST_TRAIN, replace=False))
        train = [train[i] for i in keep]
    return pixel_rows(train, preprocess)


def fit_svm(rows: np.ndarray, labels: list[str]) -> SVC | None:
    """The SVM on ROWS; None with under 2 classes."""
    return SVC(C=SVM_C, gamma="scale").fit(rows, labels) if len(set(labels)) > 1 else None


def fit_pixels(train: list[Sample], preprocess: Preprocess, *, seed: int = 0) -> SVC | None:
    """The SVM on raw grey pixels of TRAIN (a seeded MOST_TRAIN of larger sets); None with under 2 classes."""
    return fit_svm(*training_rows(train, preprocess, seed=seed))


def pixel_baseline(train: list[Sample], val: list[Sample], preprocess: Preprocess, *, seed: int = 0) -> Score | None:
    """Val accuracy and balanced accuracy of the SVM on raw grey pixels; None with under 2 classes."""
    fitted = fit_pixels(train, preprocess, seed=seed)
    x_val, y_val = pixel_rows(val, preprocess)
    if fitted is None or not len(y_val):
        return None
    guessed = fitted.predict(x_val)
    return Score(float(np.mean(guessed == np.array(y_val))), float(balanced_accuracy_score(y_val, guessed)))
