"""Does the val/test data look like the training data? A domain classifier on embeddings, and the nearest-
neighbour distance of each val/test image to the training images (NumPy and scikit-learn only).

A logistic regression learns to tell training embeddings from the others; its cross-validated
AUC is 0.5 when the splits look alike and near 1 when every val/test image can be told apart
(other cameras, lighting, a changed product line). Per-class AUCs (on the same out-of-fold
scores) say where the difference lies; the images farthest from any training image show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FOLDS = 5
SHOWN = 12  # images listed as the most unlike the training data
WARN_AUC = 0.75  # above this, imagefit train says the splits differ


@dataclass
class Shift:
    auc: float
    compared: str
    per_class: dict[str, float] = field(default_factory=dict)
    most_unlike: list[tuple[int, float]] = field(default_factory=list)  # (index into the others, distance)


def domain_shift(
    train: np.ndarray,
    others: np.ndarray,
    *,
    train_labels: list[str] | None = None,
    other_labels: list[str] | None = None,
    compared: str = "train vs val/test",
    seed: int = 0,
) -> Shift | None:
    """The shift between TRAIN and OTHERS embeddings [N, D]; None when either side is too small to tell."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if len(train) < FOLDS or len(others) < FOLDS:
        return None
    vectors = _normalise(np.concatenate([train, others]))
    side = np.r_[np.zeros(len(train)), np.ones(len(others))]
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    # Balanced: a small val split against a large train split must not win by predicting "train".
    classifier = LogisticRegression(max_iter=500, C=0.5, class_weight="balanced")
    scores = cross_val_predict(classifier, vectors, side, cv=folds, method="predict_proba")[:, 1]
    shift = Shift(round(float(roc_auc_score(side, scores)), 4), compared)
    if train_labels is not None and other_labels is not None:
        labels = np.array([*train_labels, *other_labels])
        for label in sorted(set(other_labels)):
            inside = labels == label
            if len(set(side[inside])) == 2 and min((side[inside] == 0).sum(), (side[inside] == 1).sum()) >= 3:
                shift.per_class[label] = round(float(roc_auc_score(side[inside], scores[inside])), 4)
    distances = 1.0 - (vectors[len(train) :] @ vectors[: len(train)].T).max(axis=1)
    order = np.argsort(-distances)[:SHOWN]
    shift.most_unlike = [(int(i), round(float(distances[i]), 4)) for i in order]
    return shift


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
