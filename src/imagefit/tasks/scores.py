"""Single-label metrics from class probabilities (scikit-learn; the calibration error from torchmetrics, imported
when computed), shaped for metrics.json."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    f1_score,
    log_loss,
    top_k_accuracy_score,
)

CALIBRATION_BINS = 15


def classification_metrics(y_true: list[int], probabilities: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro-F1, top-5 (over 5 classes), log loss, ECE and per-class figures."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # float32 softmax rows drift from 1
    y_true = np.asarray(y_true)
    y_pred = probabilities.argmax(axis=1)
    labels = list(range(len(classes)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    per_class = {
        name: {
            "precision": report[name]["precision"],
            "recall": report[name]["recall"],
            "f1": report[name]["f1-score"],
            "support": int(report[name]["support"]),
        }
        for name in classes
    }
    figures = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y_true, np.clip(probabilities, 1e-12, 1.0), labels=labels)),
        "ece": calibration_error(y_true, probabilities),
        "count": int(len(y_true)),
    }
    if len(classes) > 5:
        figures["top5_accuracy"] = float(top_k_accuracy_score(y_true, probabilities, k=5, labels=labels))
    figures["per_class"] = per_class
    return figures


def calibration_error(y_true, probabilities: np.ndarray) -> float:
    """Expected calibration error (top-1 confidence, 15 equal-width bins), torchmetrics' definition."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not len(probabilities):
        return float("nan")
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    return float(
        multiclass_calibration_error(
            torch.from_numpy(probabilities).float(),
            torch.as_tensor(np.asarray(y_true)),
            probabilities.shape[1],
            n_bins=CALIBRATION_BINS,
        )
    )
