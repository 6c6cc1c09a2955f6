"""Matplotlib figures of a run (training curves, confusion matrices, calibration), as PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def training_curves(history: list[dict]) -> bytes:
    """Losses and validation accuracy/macro-F1 per epoch, the frozen phase shaded."""
    epochs = [int(row["epoch"]) for row in history]
    figure, (losses, scores) = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis in (losses, scores):
        frozen = [e for e, row in zip(epochs, history, strict=True) if str(row["phase"]) == "1"]
        if frozen:
            axis.axvspan(min(frozen) - 0.5, max(frozen) + 0.5, color="#dde8f5", label="phase 1: head only")
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    losses.plot(epochs, [float(r["train_loss"]) for r in history], "o-", label="train loss")
    losses.plot(epochs, [float(r["val_loss"]) for r in history], "o-", label="val loss")
    scores.plot(epochs, [float(r["val_accuracy"]) for r in history], "o-", label="val accuracy")
    scores.plot(epochs, [float(r["val_macro_f1"]) for r in history], "o-", label="val macro-F1")
    losses.set_title("loss")
    scores.set_title("validation")
    losses.legend(fontsize=8)
    scores.legend(fontsize=8)
    return _png(figure)


def confusion_matrices(y_true: list[int], y_pred: list[int], classes: list[str]) -> bytes:
    """Counts and row-normalised (recall) confusion matrices side by side."""
    counts = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    side = max(4.0, 0.45 * len(classes) + 2)
    figure, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for axis, values, title, fmt in ((axes[0], counts, "counts", "d"), (axes[1], normalised, "row-normalised", ".2f")):
        axis.imshow(values, cmap="Blues")
        axis.set_title(title)
        axis.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(range(len(classes)), classes, fontsize=8)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        if len(classes) <= 25:
            limit = values.max() / 2 if values.max() else 1
            for (i, j), value in np.ndenumerate(values):
                axis.text(
                    j,
                    i,
                    format(value, fmt),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > limit else "black",
                )
    return _png(figure)


def reliability_diagram(y_true: list[int], probabilities: np.ndarray, bins: int = 15, title: str = "") -> bytes:
    """Accuracy against confidence per bin, with the share of images in each bin."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges) - 1, 0, bins - 1)
    centres = (edges[:-1] + edges[1:]) / 2
    accuracy = np.array([correct[which == b].mean() if (which == b).any() else np.nan for b in range(bins)])
    share = np.array([(which == b).mean() for b in range(bins)])
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axis.bar(centres, np.nan_to_num(accuracy), width=1 / bins, alpha=0.7, edgecolor="black", label="accuracy")
    axis.bar(centres, share, width=1 / bins, alpha=0.3, color="orange", label="share of images")
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=8, loc="upper left")
    if title:
        axis.set_title(title, fontsize=9)
    return _png(figure)


def precision_recall(truth: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> bytes:
    """One precision-recall curve a label (multi-label), with its average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figure, axis = plt.subplots(figsize=(6, 4.5))
    for index, name in enumerate(classes):
        if not truth[:, index].any():
            continue
        precision, recall, _ = precision_recall_curve(truth[:, index], probabilities[:, index])
        ap = average_precision_score(truth[:, index], probabilities[:, index])
        axis.plot(recall, precision, label=f"{name} (AP {ap:.2f})")
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.legend(fontsize=7, loc="lower left")
    return _png(figure)


def co_occurrence(labels: list[list[str]], classes: list[str]) -> bytes:
    """How often each pair of labels appears on the same image (the diagonal: how often each appears)."""
    index = {name: i for i, name in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    for parts in labels:
        for a in parts:
            for b in parts:
                counts[index[a], index[b]] += 1
    side = max(4.0, 0.45 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(side, side))
    axis.imshow(counts, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    axis.set_yticks(range(len(classes)), classes, fontsize=7)
    for (i, j), value in np.ndenumerate(counts):
        axis.text(j, i, str(value), ha="center", va="center", fontsize=7)
    return _png(figure)
