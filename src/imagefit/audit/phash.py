"""Perceptual hashes (imagehash's pHash: a 64-bit DCT signature of the 32x32 grayscale picture) and the pairs of
images whose hashes differ in few bits: copies that were resized, re-encoded, recoloured or turned grey,
which embeddings of a classifier can score well below their near-duplicate threshold."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from imagefit.data.decode import UNREADABLE, open_image


def perceptual_hashes(locators: list[str], *, workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, valid): the pHash of each image as uint64, and False where a file could not be read."""
    import imagehash

    def one(locator: str) -> int | None:
        try:
            bits = imagehash.phash(open_image(locator)).hash.flatten()
        except UNREADABLE:
            return None
        return int("".join("1" if b else "0" for b in bits), 2)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        values = list(pool.map(one, locators))
    hashes = np.array([v or 0 for v in values], dtype=np.uint64)
    valid = np.array([v is not None for v in values])
    return hashes, valid


def close_pairs(hashes: np.ndarray, valid: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for i < j with Hamming distance <= max_distance, over all pairs (FAISS's exact binary
    range search: 300,000 hashes in seconds, where comparing them in NumPy took minutes; benchmarks/RESULTS.md)."""
    if len(hashes) < 2:
        return []
    index = _binary_index(hashes)
    limits, distances, found = index.range_search(_codes(hashes), max_distance + 1)  # distance < radius
    rows = np.repeat(np.arange(len(hashes)), np.diff(limits).astype(np.int64))
    keep = (rows < found) & valid[rows] & valid[found]
    order = np.lexsort((found[keep], rows[keep]))
    return [
        (int(i), int(j), int(d))
        for i, j, d in zip(rows[keep][order], found[keep][order], distances[keep][order], strict=True)
    ]


def nearest_distances(hashes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Each of HASHES' smallest Hamming distance to any of OTHERS (65, more than any, when OTHERS is empty)."""
    if not len(others) or not len(hashes):
        return np.full(len(hashes), 65, dtype=np.int64)
    distances, _ = _binary_index(others).search(_codes(hashes), 1)
    return distances[:, 0].astype(np.int64)


def _codes(hashes: np.ndarray) -> np.ndarray:
    """The hashes as FAISS's binary codes: 8 bytes a hash (the byte order is the same for all: distances hold)."""
    return np.ascontiguousarray(np.asarray(hashes, dtype=np.uint64)).view(np.uint8).reshape(-1, 8)


def _binary_index(hashes: np.ndarray):
    import faiss

    index = faiss.IndexBinaryFlat(64)
    index.add(_codes(hashes))
    return index
