"""Several labels an image: sigmoid, binary cross-entropy with per-label positive weights, thresholds chosen
on val, mAP and F1, `Id,Labels`.

A sample keeps its labels in `Sample.label`, sorted and joined by JOIN ("rust|scab"; "" means none).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from imagefit.config import DataRecipe
from imagefit.tasks.base import Imbalance, LabelIssue, Task
from imagefit.tasks.labels import joined, labels_of, sigmoid

MAX_POSITIVE_WEIGHT = 10.0  # a rare label's positives weigh at most this much more than its negatives
THRESHOLD_FLOOR = 0.05  # no label's threshold goes below this
SAMPLER = "--imbalance sampler is for one label an image; multi-label data uses per-label weights"


class MultiLabel(Task):
    name = "multi-label"
    csv_label_column = "Labels"
    onnx_output = "probabilities"
    calibrated = False
    flags_unknown = False  # not yet: an image may rightly carry none of the labels
    chosen_on_val = "thresholds"  # one a label, the best val F1 (best_thresholds)
    mixes_label_rows = True  # multi-hot rows mix as the images do, and soft pseudo-label rows with them
    report_sections = ("labels-summary", "curves", "per-label", "pr", "co-occurrence", "label-errors", "recipe")
    unsupported = {
        "sampler": SAMPLER,
        "adjust": "--imbalance adjust shifts one label's logits by the class priors; multi-label data uses "
        "per-label weights (drop the option)",
        "ensemble": "ensembles are of single-label runs for now; a multi-label run was given",
        "add-class": "the run is multi-label: add-class works on single-label runs for now",
        "baseline": "the majority rate and the raw-pixel baseline are measured for single-label runs",
    }

    def parts(self, label: str) -> list[str]:
        return labels_of(label)

    def targets(self, labels: list[str], classes: list[str]) -> np.ndarray:
        """Multi-hot rows [N, C]."""
        index = {name: i for i, name in enumerate(classes)}
        rows = np.zeros((len(labels), len(classes)), dtype=np.float32)
        for row, label in enumerate(labels):
            for part in labels_of(label):
                rows[row, index[part]] = 1.0
        return rows

    def assign_splits(self, labels: list[str], carve: dict[str, float], seed: int) -> list[str]:
        """Iterative stratification (Sechidis et al. 2011, the iterative-stratification package): every label's
        share of each split close to the split's share, which a per-class carve cannot give several labels at once."""
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        classes = self.classes_of(labels)
        names = ["train"] * len(labels)
        rest = list(range(len(labels)))
        for split_name in ("val", "test"):
            fraction = carve[split_name]
            if fraction <= 0 or len(rest) < 4:
                continue
            rows = self.targets([labels[i] for i in rest], classes)
            splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
            keep, take = next(splitter.split(np.zeros(len(rest)), rows))
            for i in sorted(take):
                names[rest[i]] = split_name
            rest = [rest[i] for i in sorted(keep)]
        return names

    def imbalance(self, labels: list[str], classes: list[str], data: DataRecipe) -> Imbalance:
        """Per-label positive weights (negatives / positives, capped), unless --imbalance none."""
        counts = dict(Counter(part for label in labels for part in labels_of(label)))
        ratio = max(counts.values()) / max(1, min(counts.values())) if counts else 1.0
        extra = {"no_label": sum(not labels_of(label) for label in labels), "always_together": together(labels)}
        handling = "per-label positive weights (binary cross-entropy)"
        if data.imbalance == "none":
            return Imbalance("none", ratio, counts, None, "", handling, extra)
        weights = positive_weights(self.targets(labels, classes)) if classes else None
        said = (
            f"multi-label: {len(classes)} labels, positives weighted {weights.min():.1f}-{weights.max():.1f}x "
            f"(negatives / positives, at most {MAX_POSITIVE_WEIGHT:.0f}x)"
            if weights is not None
            else ""
        )
        return Imbalance("weights", ratio, counts, weights, said, handling, extra)

    def label_issues(self, vectors: np.ndarray, labels: list[str], classes: list[str], probabilities=None):
        """A label too many or too few, from one-vs-rest out-of-fold probabilities."""
        from cleanlab.filter import find_label_issues
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import KFold, cross_val_predict
        from sklearn.multiclass import OneVsRestClassifier

        rows = self.targets(labels, classes)
        usable = rows.sum(axis=0) >= 2  # a label on fewer than two images cannot be learnt out of fold
        if usable.sum() < 2 or len(labels) < 10:
            return []
        rows, kept = rows[:, usable], [c for c, use in zip(classes, usable, strict=True) if use]
        classifier = OneVsRestClassifier(LogisticRegression(max_iter=300, C=1.0))
        folds = KFold(n_splits=5, shuffle=True, random_state=0)
        probabilities = cross_val_predict(classifier, vectors, rows, cv=folds, method="predict_proba")
        given = [list(np.flatnonzero(row)) for row in rows]
        ranked = find_label_issues(given, probabilities, multi_label=True, return_indices_ranked_by="self_confidence")
        return [
            LabelIssue(
                int(i),
                round(float(np.abs(probabilities[i] - rows[i]).max()), 4),
                joined(c for c, p in zip(kept, probabilities[i], strict=True) if p >= 0.5),
            )
            for i in ranked
        ]

    def activate(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return sigmoid(logits)  # each label on its own; no temperature

    def view_probabilities(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return sigmoid(logits).mean(axis=1)

    def from_exported(self, output: np.ndarray) -> np.ndarray:
        return output  # the graph gives the sigmoid probabilities

    def thresholds(self, chosen: dict[str, float], classes: list[str]) -> np.ndarray:
        """In label order; 0.5 where none was chosen."""
        return np.array([float(chosen.get(name, 0.5)) for name in classes], dtype=np.float32)

    def decide(self, probabilities: np.ndarray, classes: list[str], thresholds) -> list[str]:
        chosen = probabilities >= np.asarray(thresholds)[None, :]
        return [joined(c for c, hit in zip(classes, row, strict=True) if hit) for row in chosen]

    def metrics(self, labels: list[str], probabilities: np.ndarray, classes: list[str], thresholds) -> dict:
        return multilabel_metrics(self.targets(labels, classes), probabilities, classes, thresholds)

    def csv_label(self, label: str) -> str:
        return " ".join(labels_of(label))

    def csv_columns(self, classes: list[str]) -> list[str]:
        return list(classes)  # one probability a label

    def csv_details(self, row: np.ndarray, classes: list[str], top_k: int) -> list[str]:
        return [f"{p:.6f}" for p in row]

    def loss(self, logits, targets, weights=None, smoothing: float = 0.0):
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(logits, targets.float(), pos_weight=weights)

    def mix(self, mixup, images, targets):
        lam = mixup._mix_batch(images)  # the label vectors are mixed as the images are (timm's batch mode)
        return images, targets * lam + targets.flip(0) * (1.0 - lam)

    def val_metrics(self, num_classes: int):
        from torchmetrics.classification import MultilabelExactMatch, MultilabelF1Score

        return MultilabelExactMatch(num_labels=num_classes), MultilabelF1Score(num_labels=num_classes, average="macro")

    def scored(self, logits, targets):
        return logits.sigmoid(), targets.long()

    def exported(self, logits, mirrored, temperature: float):
        if mirrored is None:
            return logits.sigmoid()
        return (logits.sigmoid() + mirrored.sigmoid()) / 2


def together(labels: list[str]) -> list[list[str]]:
    """Pairs of labels carried by exactly the same images (each seen at least twice)."""
    carriers: dict[str, set[int]] = {}
    for index, label in enumerate(labels):
        for part in labels_of(label):
            carriers.setdefault(part, set()).add(index)
    names = sorted(n for n, images in carriers.items() if len(images) >= 2)
    return [[a, b] for i, a in enumerate(names) for b in names[i + 1 :] if carriers[a] == carriers[b]]


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
        "task": "multi-label",
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
