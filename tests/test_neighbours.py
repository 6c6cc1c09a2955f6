"""The audit's neighbour search: exact gives cleanlab's own outlier scores, each vector's own row is left out,
and the approximate index above the size limit finds the same near duplicates."""

import numpy as np
import pytest
from cleanlab.outlier import OutOfDistribution

from imagefit.audit import neighbours
from imagefit.audit.neighbours import Neighbours, cell_count
from imagefit.audit.similarity import near_duplicate_findings, outlier_findings
from imagefit.data.sources import Sample


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _clustered(count: int, *, clusters: int, width: int = 128, spread: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, width))
    return _unit(centres[rng.integers(0, clusters, count)] + spread * rng.normal(size=(count, width)))


def test_the_exact_search_gives_cleanlabs_own_outlier_scores():
    vectors = _clustered(400, clusters=8)
    own = OutOfDistribution().fit_score(features=vectors, verbose=False)
    ours = OutOfDistribution(params={"knn": Neighbours(10).fit(vectors)}).score(features=vectors)
    np.testing.assert_allclose(ours, own, atol=1e-5)


def test_each_vector_is_left_out_of_its_own_neighbours_even_beside_an_exact_copy():
    vectors = _clustered(50, clusters=3)
    vectors[7] = vectors[3]
    distances, indices = Neighbours(4).fit(vectors).kneighbors()
    assert indices.shape == (50, 4) and not (indices == np.arange(50)[:, None]).any()
    assert indices[3, 0] == 7 and indices[7, 0] == 3 and distances[3, 0] == pytest.approx(0.0, abs=1e-6)
    assert (np.diff(distances, axis=1) >= -1e-6).all(), "nearest first"


def test_the_inverted_file_finds_nearly_every_exact_neighbour(monkeypatch):
    vectors = _clustered(4000, clusters=40, seed=1)
    _, exact = Neighbours(5, exact=True).fit(vectors).kneighbors()
    search = Neighbours(5, exact=False).fit(vectors)
    assert search.index.ntotal == 4000 and search.index.nlist == cell_count(4000) > 1, "an inverted file"
    _, approximate = search.kneighbors()
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approximate, exact, strict=True)])
    assert recall >= 0.95
    # near duplicates above the exact limit: the same pairs as the exact search
    rng = np.random.default_rng(2)
    copies = _unit(vectors[:20] + 0.05 * rng.normal(size=(20, vectors.shape[1])) / np.sqrt(vectors.shape[1]))
    planted = np.vstack([vectors, copies])
    samples = [Sample(f"{i}.jpg", "a", "train") for i in range(len(planted))]
    hashes = [str(i) for i in range(len(planted))]
    found = {tuple(f.paths) for f in near_duplicate_findings(planted, samples, hashes) if f.kind == "near_duplicate"}
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 1000)
    again = {tuple(f.paths) for f in near_duplicate_findings(planted, samples, hashes) if f.kind == "near_duplicate"}
    assert {(f"{i}.jpg", f"{4000 + i}.jpg") for i in range(20)} <= found and again == found


def test_the_cell_count_follows_the_size_and_single_images_find_nothing():
    assert cell_count(300_000) == round(4 * 300_000**0.5) and cell_count(1_000) == 1_000 // 39
    assert cell_count(10) == 1 and cell_count(10**9) == 4096
    one = [Sample("a.jpg", "a", "train")]
    vector = _unit(np.ones((1, 8)))
    assert near_duplicate_findings(vector, one, ["h"]) == [] and outlier_findings(vector, one) == []


def test_the_phash_pairs_are_every_pair_within_the_distance_by_brute_force():
    from imagefit.audit.phash import close_pairs, nearest_distances

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 600, dtype=np.int64).view(np.uint64)
    hashes[100:150] = hashes[:50] ^ np.uint64(0b1011)  # three bits apart
    hashes[300:305] = hashes[0]  # identical
    valid = np.ones(600, dtype=bool)
    valid[7] = False
    distances = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    truth = [
        (i, j, int(distances[i, j]))
        for i, j in zip(*np.nonzero(distances <= 8), strict=True)
        if i < j and valid[i] and valid[j]
    ]
    assert close_pairs(hashes, valid, 8) == truth and len(truth) >= 49 + 15
    assert nearest_distances(hashes[:50], hashes[100:]).tolist() == distances[:50, 100:].min(axis=1).tolist()
    assert nearest_distances(hashes[:3], hashes[:0]).tolist() == [65, 65, 65]
