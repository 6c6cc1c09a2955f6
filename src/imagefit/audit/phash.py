"""Perceptual hashes (imagehash's pHash: a 64-bit DCT signature of the 32x32 grayscale picture) and the pairs of
images whose hashes differ in few bits: copies that were resized, re-encoded, recoloured or turned grey,
which embeddings of a classifier can score well below their near-duplicate threshold."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from imagefit.data.decode import UNREADABLE, open_image

_ROWS = 256  # hashes compared at once against all others (256 x 60,000 x 8 bytes = 123 MB)


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
    """(i, j, distance) for i < j with Hamming distance <= max_distance, over all pairs, in blocks."""
    pairs = []
    for start in range(0, len(hashes), _ROWS):
        block = hashes[start : start + _ROWS]
        distances = np.bitwise_count(block[:, None] ^ hashes[None, :])
        rows, cols = np.nonzero(distances <= max_distance)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + row
            if i < col and valid[i] and valid[col]:
                pairs.append((i, col, int(distances[row, col])))
    return pairs


def nearest_distances(hashes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Each of HASHES' smallest Hamming distance to any of OTHERS (65, more than any, when OTHERS is empty), in
    blocks of _ROWS rows as `close_pairs` compares them."""
    nearest = np.full(len(hashes), 65, dtype=np.int64)
    if not len(others):
        return nearest
    for start in range(0, len(hashes), _ROWS):
        block = hashes[start : start + _ROWS]
        nearest[start : start + _ROWS] = np.bitwise_count(block[:, None] ^ others[None, :]).min(axis=1)
    return nearest
