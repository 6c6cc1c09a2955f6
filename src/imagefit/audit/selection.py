"""Which unlabelled images to label next (`imagefit suggest`): uncertain ones, spread over the embedding space.

Pure NumPy. Uncertainty is the margin between the two most probable classes of the calibrated
probabilities (Scheffer et al. 2001; for a multi-label run, the closest any label comes to its
threshold). The UNCERTAIN_SHARE most uncertain images (at least CANDIDATES_PER_PICK per image to
pick) are the candidates; among them k-center greedy (Sener and Savarese, ICLR 2018) picks, one at a
time, the candidate farthest (cosine distance of the backbone embeddings) from everything labelled
and picked so far, so that a batch of suggestions does not spend its labels on one cluster of
look-alikes. Whether this beats random picks is measured, not assumed (benchmarks/RESULTS.md).
"""

from __future__ import annotations

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


def k_center_greedy(embeddings: np.ndarray, n: int, covered: np.ndarray | None = None, order=None) -> list[int]:
    """N indices of EMBEDDINGS, each the farthest (cosine) from COVERED and the ones picked before it.

    With nothing covered, the first pick is ORDER[0] (the most uncertain), else index 0. Ties go to the
    earlier index of ORDER.
    """
    vectors = normalise(embeddings)
    if not len(vectors) or n <= 0:
        return []
    order = np.arange(len(vectors)) if order is None else np.asarray(order)
    vectors = vectors[order]
    if covered is not None and len(covered):
        nearest = 1.0 - (vectors @ normalise(covered).T).max(axis=1)
    else:
        nearest = np.full(len(vectors), np.inf)
    picked: list[int] = []
    for _ in range(min(n, len(vectors))):
        choice = int(np.argmax(nearest))
        picked.append(choice)
        nearest = np.minimum(nearest, 1.0 - vectors @ vectors[choice])
        nearest[picked] = -np.inf
    return [int(order[i]) for i in picked]


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
    """N eligible images: the CANDIDATES_PER_PICK * N most uncertain, thinned by k-center greedy."""
    margin = margins(probabilities, thresholds)
    pool = np.flatnonzero(eligible)
    by_margin = pool[np.argsort(margin[pool], kind="stable")]
    candidates = by_margin[: max(n, CANDIDATES_PER_PICK * n)]
    picked = k_center_greedy(embeddings[candidates], n, covered, order=np.arange(len(candidates)))
    indices = [int(candidates[i]) for i in picked]
    distances = np.zeros(len(indices))
    if covered is not None and len(covered) and indices:
        distances = 1.0 - (normalise(embeddings[indices]) @ normalise(covered).T).max(axis=1)
    return Choice(indices, margin[indices], distances)
