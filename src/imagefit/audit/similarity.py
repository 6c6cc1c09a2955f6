"""Findings from embeddings: near duplicates (and the leakage and label conflicts they reveal),
likely label errors (cleanlab on out-of-fold probabilities) and outliers (cleanlab)."""

from __future__ import annotations

import numpy as np

from imagefit.data.checks import Finding, related_findings
from imagefit.data.sources import Sample

# Cosine similarity of lite0 embeddings above which two different files count as the same picture
# (re-encoded, resized or lightly cropped); measured in benchmarks/RESULTS.md.
NEAR_DUPLICATE_SIMILARITY = 0.95
NEIGHBOURS = 5
OUTLIER_SHARE = 0.005


def near_duplicate_findings(
    vectors: np.ndarray, samples: list[Sample], hashes: list[str], threshold: float = NEAR_DUPLICATE_SIMILARITY
) -> list[Finding]:
    """Pairs of different files whose embeddings are nearly identical (k-nearest-neighbour search, not all pairs)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(NEIGHBOURS + 1, len(samples))
    distances, indices = NearestNeighbors(n_neighbors=k, metric="cosine").fit(vectors).kneighbors(vectors)
    seen, found = set(), []
    for i, (row_distances, row_indices) in enumerate(zip(distances, indices, strict=True)):
        for distance, j in zip(row_distances, row_indices, strict=True):
            similarity = 1.0 - float(distance)
            pair = (min(i, j), max(i, j))
            if j == i or similarity < threshold or pair in seen or hashes[i] == hashes[j]:
                continue
            seen.add(pair)
            members = [samples[pair[0]], samples[pair[1]]]
            found.append(Finding("near_duplicate", [m.path for m in members], score=round(similarity, 4)))
            found += related_findings(members, similarity=round(similarity, 4))
    return found


def out_of_fold_probabilities(vectors: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Class probabilities for each image from a logistic regression that never saw it (k-fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    smallest = int(np.bincount(labels).min())
    splitter = StratifiedKFold(n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    classifier = LogisticRegression(max_iter=300, C=1.0)
    return cross_val_predict(classifier, vectors, labels, cv=splitter, method="predict_proba")


def label_issue_findings(
    vectors: np.ndarray, samples: list[Sample], classes: list[str], probabilities: np.ndarray | None = None
) -> list[Finding]:
    """Likely mislabelled images, most likely first (cleanlab's find_label_issues)."""
    from cleanlab.filter import find_label_issues

    labels = np.array([classes.index(s.label) for s in samples])
    if probabilities is None:
        probabilities = out_of_fold_probabilities(vectors, labels)
    ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    return [
        Finding(
            "label_issue",
            [samples[i].path],
            score=round(1.0 - float(probabilities[i, labels[i]]), 4),
            detail={"label": samples[i].label, "suggested": classes[int(probabilities[i].argmax())]},
        )
        for i in ranked
    ]


def outlier_findings(vectors: np.ndarray, samples: list[Sample], share: float = OUTLIER_SHARE) -> list[Finding]:
    """The images least like any other (cleanlab's out-of-distribution score on embeddings), lowest first."""
    from cleanlab.outlier import OutOfDistribution

    scores = OutOfDistribution().fit_score(features=vectors, verbose=False)
    count = max(1, round(share * len(samples)))
    return [
        Finding("outlier", [samples[i].path], score=round(float(scores[i]), 4), detail={"label": samples[i].label})
        for i in np.argsort(scores)[:count]
    ]
