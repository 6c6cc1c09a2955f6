"""Single-label vs multi-label in one place: how labels are stored, turned into targets, lost and scored.

A multi-label sample keeps its labels in `Sample.label` joined by JOIN, sorted ("rust|scab"; ""
means none of them). The run folder records its task in config.json (`task`), and every later
command follows it: the loss (cross-entropy or binary cross-entropy with per-label positive
weights), the activation (softmax or sigmoid), the metrics, the thresholds and the CSV format.
"""

from __future__ import annotations

import numpy as np

SINGLE, MULTI = "single-label", "multi-label"
TASKS = (SINGLE, MULTI)
JOIN = "|"
MAX_POSITIVE_WEIGHT = 10.0  # a rare label's positives weigh at most this much more than its negatives
THRESHOLD_FLOOR = 0.05  # no label's threshold goes below this


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities of one label an image (rows sum to one)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Each label's own probability (multi-label)."""
    return 1.0 / (1.0 + np.exp(-logits))


def labels_of(label: str) -> list[str]:
    """The labels a multi-label sample holds."""
    return [part for part in label.split(JOIN) if part]


def joined(labels) -> str:
    return JOIN.join(sorted(set(labels)))


def classes_of(labels: list[str], task: str) -> list[str]:
    """The sorted class (or label) names the samples' labels use."""
    if task == MULTI:
        return sorted({part for label in labels for part in labels_of(label)})
    return sorted(set(labels))


def multi_hot(label: str, index: dict[str, int]) -> np.ndarray:
    vector = np.zeros(len(index), dtype=np.float32)
    for part in labels_of(label):
        vector[index[part]] = 1.0
    return vector


def targets(labels: list[str], classes: list[str], task: str) -> np.ndarray:
    """Class indices [N] (single-label) or multi-hot rows [N, C] (multi-label)."""
    index = {name: i for i, name in enumerate(classes)}
    if task == MULTI:
        return np.stack([multi_hot(label, index) for label in labels]) if labels else np.zeros((0, len(classes)))
    return np.array([index[label] for label in labels], dtype=np.int64)


def positive_weights(rows: np.ndarray) -> np.ndarray:
    """Per-label weights of the positives, negatives / positives, capped at MAX_POSITIVE_WEIGHT."""
    positives = rows.sum(axis=0)
    negatives = len(rows) - positives
    return np.clip(negatives / np.maximum(positives, 1.0), 1.0, MAX_POSITIVE_WEIGHT).astype(np.float32)


def best_thresholds(probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per label, the threshold (at least THRESHOLD_FLOOR) with the best F1 on these (validation) images."""
    grid = np.round(np.arange(THRESHOLD_FLOOR, 0.96, 0.01), 2)
    chosen = np.full(rows.shape[1], 0.5, dtype=np.float32)
    for label in range(rows.shape[1]):
        truth = rows[:, label] > 0.5
        if not truth.any():
            continue
        scores = np.array([_f1(truth, probabilities[:, label] >= t) for t in grid])
        tied = grid[scores >= scores.max() - 1e-9]
        chosen[label] = float(np.median(tied))  # the middle of the best range: a clean val split gives many
    return chosen


def _f1(truth: np.ndarray, guess: np.ndarray) -> float:
    hit = float((truth & guess).sum())
    return 2 * hit / max(1.0, float(truth.sum() + guess.sum()))


def multilabel_metrics(rows: np.ndarray, probabilities: np.ndarray, classes: list[str], thresholds) -> dict:
    """mAP (macro and micro), per-label AP and precision/recall/F1 at the thresholds, subset accuracy, Hamming loss."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    thresholds = np.asarray(thresholds, dtype=np.float32)
    guess = probabilities >= thresholds[None, :]
    truth = rows > 0.5
    present = truth.any(axis=0)
    per_ap = [
        float(average_precision_score(truth[:, i], probabilities[:, i])) if present[i] else float("nan")
        for i in range(len(classes))
    ]
    precision, recall, f1, support = precision_recall_fscore_support(truth, guess, average=None, zero_division=0)
    return {
        "task": MULTI,
        "mean_average_precision": float(np.nanmean(per_ap)) if present.any() else float("nan"),
        "micro_average_precision": float(
            average_precision_score(truth[:, present], probabilities[:, present], average="micro")
        )
        if present.any()
        else float("nan"),
        "subset_accuracy": float((guess == truth).all(axis=1).mean()) if len(truth) else float("nan"),
        "hamming_loss": float((guess != truth).mean()) if len(truth) else float("nan"),
        "macro_f1": float(np.mean(f1)) if len(f1) else float("nan"),
        "accuracy": float((guess == truth).all(axis=1).mean()) if len(truth) else float("nan"),  # = subset accuracy
        "count": int(len(truth)),
        "per_class": {
            name: {
                "average_precision": per_ap[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "threshold": float(thresholds[i]),
            }
            for i, name in enumerate(classes)
        },
    }
