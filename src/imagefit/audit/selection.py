"""Which unlabelled images to label next (`imagefit suggest`): uncertain ones, typical of their kind.

Uncertainty is the margin between the two most probable classes of the calibrated probabilities
(Scheffer et al. 2001; for a multi-label run, the closest any label comes to its threshold). The
CANDIDATES_PER_PICK * N most uncertain images are the candidates. Among them k-means (scikit-learn,
on unit-length backbone embeddings) makes N clusters, and from each the member nearest its centre is
picked, the largest cluster's first: a batch spreads over the kinds of uncertain image instead of
spending its labels on one cluster of look-alikes, and each pick is typical of its kind rather than an
outlier (Hacohen et al., ICML 2022: at small budgets typical images teach more). The earlier pick,
k-center greedy (Sener and Savarese, ICLR 2018: each candidate farthest from everything labelled),
chose outliers; measured against it and against random picks in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from imagefit.prediction.openset import normalise

CANDIDATES_PER_PICK = 5  # the most uncertain images considered per suggestion


def margins(probabilities: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """Uncertainty as a margin in [0, 1] (small: uncertain): top-1 minus top-2 probability, or for a multi-label
    run (THRESHOLDS given) the smallest distance of any label's probability to its threshold."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if thresholds is not None:
        return np.abs(probabilities - np.asarray(thresholds)[None, :]).min(axis=1)
    if probabilities.shape[1] < 2:
        return 1.0 - probabilities[:, 0]
    top2 = -np.partition(-probabilities, 1, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]


def typical_per_cluster(embeddings: np.ndarray, n: int) -> list[int]:
    """N indices of EMBEDDINGS: k-means on the unit vectors into N clusters, from each the member nearest its
    centre, the largest cluster's first; fewer clusters than N (identical vectors) are topped up in index order."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    vectors = normalise(embeddings)
    n = min(n, len(vectors))
    if n <= 0:
        return []
    with warnings.catch_warnings():  # fewer distinct vectors than clusters: topped up below
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = KMeans(n_clusters=n, n_init=3, random_state=0).fit(vectors)
    picked: list[int] = []
    for cluster in np.argsort(-np.bincount(fitted.labels_, minlength=n), kind="stable"):
        members = np.flatnonzero(fitted.labels_ == cluster)
        if len(members):
            spread = ((vectors[members] - fitted.cluster_centers_[cluster]) ** 2).sum(axis=1)
            picked.append(int(members[np.argmin(spread)]))
    taken = set(picked)
    rest = [i for i in range(len(vectors)) if i not in taken]
    return picked + rest[: n - len(picked)]


@dataclass
class Choice:
    """The chosen pool indices, in the order picked, with each one's margin and distance to what was covered."""

    indices: list[int]
    margins: np.ndarray
    distances: np.ndarray


def choose(
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    n: int,
    *,
    eligible: np.ndarray,
    covered: np.ndarray | None = None,
    thresholds: np.ndarray | None = None,
) -> Choice:
    """N eligible images: the CANDIDATES_PER_PICK * N most uncertain, one typical image of each of N clusters."""
    margin = margins(probabilities, thresholds)
    pool = np.flatnonzero(eligible)
    by_margin = pool[np.argsort(margin[pool], kind="stable")]
    candidates = by_margin[: max(n, CANDIDATES_PER_PICK * n)]
    picked = typical_per_cluster(embeddings[candidates], n)
    indices = [int(candidates[i]) for i in picked]
    distances = np.zeros(len(indices))
    if covered is not None and len(covered) and indices:
        distances = 1.0 - (normalise(embeddings[indices]) @ normalise(covered).T).max(axis=1)
    return Choice(indices, margin[indices], distances)
