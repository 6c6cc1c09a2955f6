"""One label an image: softmax, cross-entropy with class weights, accuracy and macro-F1, `Id,Category`."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from imagefit.config import DataRecipe
from imagefit.tasks.base import Imbalance, LabelIssue, Task
from imagefit.tasks.imbalance import class_weights, imbalance_handling, imbalance_ratio
from imagefit.tasks.labels import share, softmax, view_probabilities

HANDLING = {
    "adjust": "the plain loss, then logits shifted by the class priors (chosen on val)",
    "weights": "class-weighted loss",
    "sampler": "a weighted sampler",
    "none": "nothing (balanced enough)",
}


class SingleLabel(Task):
    name = "single-label"
    csv_label_column = "Category"
    onnx_output = "logits"
    calibrated = True
    flags_unknown = True
    chosen_on_val = "inference"  # temperature, test-time views and size (training.polish)
    report_sections = ("summary", "curves", "confusion", "per-class", "errors", "gradcam", "calibration", "recipe")

    def parts(self, label: str) -> list[str]:
        return [label]

    def targets(self, labels: list[str], classes: list[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(classes)}
        return np.array([index[label] for label in labels], dtype=np.int64)

    def assign_splits(self, labels: list[str], carve: dict[str, float], seed: int) -> list[str]:
        """Each class gives round(n * share) images to val and test, at least one, and keeps one for training.
        (scikit-learn's stratified splitter refuses a split smaller than the number of classes.)"""
        by_class: dict[str, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_class[label].append(index)
        rng = np.random.default_rng(seed)
        names = ["train"] * len(labels)
        for label in sorted(by_class):
            members = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
            for split_name in ("val", "test"):
                take = share(len(members), carve[split_name])
                for index in members[:take]:
                    names[index] = split_name
                members = members[take:]
        return names

    def imbalance(self, labels: list[str], classes: list[str], data: DataRecipe) -> Imbalance:
        indices = [classes.index(label) for label in labels]
        ratio = imbalance_ratio(indices) if indices else 1.0
        mode = imbalance_handling(data.imbalance, ratio, data.imbalance_ratio)
        said = (
            f"classes are imbalanced (largest/smallest = {ratio:.1f}x): using {HANDLING[mode]}"
            if mode != "none"
            else ""
        )
        weights = class_weights(indices, len(classes)) ** data.class_weight_power if mode == "weights" else None
        counts = dict(Counter(labels))
        return Imbalance(mode, ratio, counts, weights, said if mode != "none" else "", HANDLING[mode])

    def label_issues(self, vectors: np.ndarray, labels: list[str], classes: list[str], probabilities=None):
        from cleanlab.filter import find_label_issues

        given = np.array([classes.index(label) for label in labels])
        if probabilities is None:
            probabilities = out_of_fold_probabilities(vectors, given)
        ranked = find_label_issues(given, probabilities, return_indices_ranked_by="self_confidence")
        return [
            LabelIssue(
                int(i), round(1.0 - float(probabilities[i, given[i]]), 4), classes[int(probabilities[i].argmax())]
            )
            for i in ranked
        ]

    def activate(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return softmax(logits / temperature)

    def view_probabilities(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return view_probabilities(logits, temperature)

    def from_exported(self, output: np.ndarray) -> np.ndarray:
        return softmax(output)  # the graph's logits are already divided by the temperature

    def thresholds(self, chosen: dict[str, float], classes: list[str]) -> None:
        return None

    def decide(self, probabilities: np.ndarray, classes: list[str], thresholds) -> list[str]:
        return [classes[i] for i in probabilities.argmax(axis=1)] if len(probabilities) else []

    def metrics(self, labels: list[str], probabilities: np.ndarray, classes: list[str], thresholds) -> dict:
        from imagefit.tasks.scores import classification_metrics

        return classification_metrics(self.targets(labels, classes).tolist(), probabilities, classes)

    def csv_label(self, label: str) -> str:
        return label

    def csv_columns(self, classes: list[str]) -> list[str]:
        return ["confidence", "top_k"]

    def csv_details(self, row: np.ndarray, classes: list[str], top_k: int) -> list[str]:
        order = np.argsort(-row)[:top_k]
        ranked = ";".join(f"{classes[i]}:{row[i]:.4f}" for i in order)
        return [f"{row.max():.6f}", ranked]

    def loss(self, logits, targets, weights=None, smoothing: float = 0.0):
        import torch.nn.functional as F

        return F.cross_entropy(logits, targets, weight=weights, label_smoothing=smoothing)

    def mix(self, mixup, images, targets):
        return mixup(images, targets)  # soft targets, smoothing included

    def val_metrics(self, num_classes: int):
        from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

        return (
            MulticlassAccuracy(num_classes=num_classes, average="micro"),
            MulticlassF1Score(num_classes=num_classes, average="macro"),
        )

    def scored(self, logits, targets):
        return logits, targets

    def exported(self, logits, mirrored, temperature: float):
        """logits / temperature; with the mirror, the log of the two views' mean softmax."""
        import torch

        if mirrored is None:
            return logits / temperature
        return torch.log(((logits / temperature).softmax(dim=1) + (mirrored / temperature).softmax(dim=1)) / 2)


def out_of_fold_probabilities(vectors: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Class probabilities for each image from a logistic regression that never saw it (k-fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    smallest = int(np.bincount(labels).min())
    splitter = StratifiedKFold(n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    classifier = LogisticRegression(max_iter=300, C=1.0)
    return cross_val_predict(classifier, vectors, labels, cv=splitter, method="predict_proba")
