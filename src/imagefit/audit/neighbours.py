"""Nearest neighbours by cosine among L2-normalised embeddings, for the audit's near duplicates and outliers.

Exact search compares every image with every other: N^2 dot products. Measured on cifar10's audit embeddings
(benchmarks/RESULTS.md, "The audit's neighbour searches at scale"): FAISS's exact search took 30 s for 60,000
images (scikit-learn's, which imagefit used before, 87 s and 3x the memory), and would take about 14 minutes for
300,000. Up to EXACT_UP_TO vectors (about 80 s) the search is exact (FAISS's flat inner-product index); above,
FAISS's inverted-file index: the vectors are grouped in k-means cells and each query searches the PROBES cells
nearest to it (300,000 in 5 minutes, 98 % of the exact 5 nearest found). `Neighbours` has scikit-learn's
NearestNeighbors interface, which is what cleanlab's outlier score takes as a search it did not build
(`OutOfDistribution(params={"knn": ...})`).
"""

from __future__ import annotations

import math

import numpy as np

EXACT_UP_TO = 100_000
PROBES = 16
POINTS_PER_CELL = 39  # FAISS's k-means wants at least 39 training points a centroid
MOST_CELLS = 4096
TRAINING_PER_CELL = 40  # k-means is trained on at most this many points a cell (a seeded sample)
KMEANS_ITERATIONS = 10  # FAISS's default is 25; the cells only need to be roughly right: PROBES of them are read


def cell_count(count: int) -> int:
    """Cells of the inverted file for COUNT vectors: about 4 sqrt(N) (FAISS's guideline), each with enough
    points to train its centroid."""
    return max(1, min(round(4 * math.sqrt(count)), count // POINTS_PER_CELL, MOST_CELLS))


class Neighbours:
    """The k nearest of the fitted vectors, with NearestNeighbors' `fit`, `kneighbors`, `n_neighbors`, `metric`.

    Distances are cosine distances (1 - inner product). Queried with the fitted vectors themselves (or with no
    X, as scikit-learn's `kneighbors()`), each vector's own row is left out of its neighbours. The last query's
    answer is kept: cleanlab asks the same one twice. `exact` None chooses by size (EXACT_UP_TO).
    """

    metric = "cosine"

    def __init__(self, n_neighbors: int, *, exact: bool | None = None, seed: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.exact = exact
        self.seed = seed
        self._last: tuple = (None, None, None)  # (the query itself, k, the answer)

    def fit(self, vectors: np.ndarray) -> Neighbours:
        import faiss

        self._fit_X = np.ascontiguousarray(vectors, dtype=np.float32)
        self._last = (None, None, None)
        count, width = self._fit_X.shape
        exact = count <= EXACT_UP_TO if self.exact is None else self.exact
        cells = cell_count(count)
        if exact or cells < 2:
            self.index = faiss.IndexFlatIP(width)
        else:
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(width), width, cells, faiss.METRIC_INNER_PRODUCT)
            rows = np.random.default_rng(self.seed).permutation(count)[: cells * TRAINING_PER_CELL]
            self.index.cp.seed = self.seed
            self.index.cp.niter = KMEANS_ITERATIONS
            self.index.train(self._fit_X[np.sort(rows)])
            self.index.nprobe = min(PROBES, cells)
        self.index.add(self._fit_X)
        return self

    def kneighbors(self, X: np.ndarray | None = None, n_neighbors: int | None = None):
        """(cosine distances [N, k], indices [N, k]), nearest first; an index of -1 (distance 2) where an
        approximate search found fewer than k."""
        k = min(n_neighbors or self.n_neighbors, len(self._fit_X) - 1)
        if self._last[0] is X and self._last[1] == k:
            return self._last[2]
        own = X is None or X is self._fit_X or (X.shape == self._fit_X.shape and np.array_equal(X, self._fit_X))
        queries = self._fit_X if X is None else np.ascontiguousarray(X, dtype=np.float32)
        similarities, indices = self.index.search(queries, k + 1 if own else k)
        if own:
            similarities, indices = _without_self(similarities, indices)
        answer = (np.where(indices < 0, 2.0, 1.0 - similarities).astype(np.float32), indices)
        self._last = (X, k, answer)
        return answer


def _without_self(similarities: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row without its own index (or without its last column, where the search did not return it)."""
    rows = len(indices)
    keep = indices != np.arange(rows)[:, None]
    keep[keep.all(axis=1), -1] = False
    width = indices.shape[1] - 1
    return similarities[keep].reshape(rows, width), indices[keep].reshape(rows, width)
