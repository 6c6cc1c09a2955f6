"""The audit's neighbour searches at 60,000 and 300,000 images: exact against FAISS's inverted file, time, peak RSS
and recall (issue 31).

    python3 benchmarks/audit_neighbours.py --vectors /tmp/cifar-vectors.npy --json results/issue31-audit-neighbours.json

Vectors: the audit's own embeddings (lite0 at 128 px, L2-normalised, `imagefit.audit.embeddings`) of cifar10.zip's
60,000 images, computed once into --vectors. 300,000: those and four copies of each, each copy the vector moved
by Gaussian noise as far as a crop moves it: the mean cosine between an image's embedding and that of a random
crop (70-90 % of its area, resized back) is measured on 500 images, and the noise is sized to give that cosine.
Each search runs in a child process of its own (its peak RSS is the child's): the search imagefit ran before
(scikit-learn's brute-force cosine NearestNeighbors, 60,000 only), FAISS exact (flat inner product) and FAISS's
inverted file as `imagefit.audit.neighbours` builds it; each asks every vector's 10 nearest others (cleanlab's
outlier k; near duplicates use the first 5). Exact search of all 300,000 is not run (hours here): exact answers
for a seeded sample of 2,000 queries give the recall. Also the pHash pair search (`audit.phash.close_pairs`) on
random 64-bit hashes of each size (its cost does not depend on the hashes), FAISS's binary range search against
the NumPy comparison imagefit ran before (60,000 only).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
K = 10
SAMPLE = 2000
COPIES = 4


def embed_cifar(target: Path) -> None:
    """The audit's embeddings of every cifar10.zip image, in member-name order, and the crop cosine, into TARGET."""
    from PIL import Image

    from imagefit.audit.embeddings import embed, embedding_model

    archive = (SHARED / "cifar10.zip").resolve()
    with zipfile.ZipFile(archive) as handle:
        names = sorted(n for n in handle.namelist() if n.endswith(".jpg"))
    locators = [f"{archive}::{n}" for n in names]
    model, preprocess, name = embedding_model(None, median_side=32)
    with tempfile.TemporaryDirectory() as scratch:
        vectors = embed(locators, names, model, preprocess, cache_name=name, cache_dir=Path(scratch) / "cache")
        rng = random.Random(0)
        chosen = sorted(rng.sample(range(len(names)), 500))
        crops = []
        with zipfile.ZipFile(archive) as handle:
            for index in chosen:
                with handle.open(names[index]) as member:
                    image = Image.open(member).convert("RGB")
                share = rng.uniform(0.7, 0.9) ** 0.5
                side = round(32 * share)
                left, top = rng.randint(0, 32 - side), rng.randint(0, 32 - side)
                path = Path(scratch) / f"crop{index}.png"
                image.crop((left, top, left + side, top + side)).resize((32, 32)).save(path)
                crops.append(str(path))
        cropped = embed(crops, crops, model, preprocess, cache_name=name, cache_dir=Path(scratch) / "cache")
    cosine = float(np.mean(np.sum(vectors[chosen] * cropped, axis=1)))
    np.save(target, vectors)
    target.with_suffix(".json").write_text(json.dumps({"crop_cosine": cosine, "images": len(names)}))


def vectors_of(path: Path, size: int) -> np.ndarray:
    """SIZE vectors: the real ones, then copies moved by noise to the measured crop cosine."""
    real = np.load(path)
    if size <= len(real):
        return real[:size]
    cosine = json.loads(path.with_suffix(".json").read_text())["crop_cosine"]
    width = real.shape[1]
    sigma = ((1.0 / cosine**2 - 1.0) / width) ** 0.5
    rng = np.random.default_rng(0)
    vectors = np.empty((size, width), dtype=np.float32)
    for start in range(0, size, len(real)):
        part = vectors[start : start + len(real)]
        if start == 0:
            part[:] = real[: len(part)]
            continue
        for row in range(0, len(part), 5000):  # in slices: no second copy of the whole set
            copy = real[row : min(row + 5000, len(part))]
            copy = copy + rng.normal(scale=sigma, size=copy.shape).astype(np.float32)
            part[row : row + len(copy)] = copy / np.linalg.norm(copy, axis=1, keepdims=True)
    return vectors


def sample_rows(size: int) -> np.ndarray:
    return np.sort(np.random.default_rng(1).choice(size, SAMPLE, replace=False))


def one(method: str, path: Path, size: int, out: Path) -> None:
    """One search in this (child) process: its wall time and answers into OUT (.npz)."""
    if method.startswith("phash"):
        from imagefit.audit.phash import close_pairs

        hashes = np.random.default_rng(0).integers(0, 2**63, size, dtype=np.int64).view(np.uint64)
        started = time.perf_counter()
        pairs = (numpy_pairs if method == "phash-numpy" else close_pairs)(hashes, np.ones(size, dtype=bool), 8)
        np.savez(out, wall=time.perf_counter() - started, pairs=len(pairs), peak_rss_gb=peak_rss())
        return
    vectors = vectors_of(path, size)
    started = time.perf_counter()
    if method == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        distances, indices = NearestNeighbors(n_neighbors=K, metric="cosine").fit(vectors).kneighbors()
    elif method == "exact-sample":  # the exact answers for the sampled queries only
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        rows = sample_rows(size)
        similarities, indices = index.search(vectors[rows], K + 1)
        distances, indices = 1.0 - similarities[:, 1:], indices[:, 1:]  # the query itself first
    else:
        from imagefit.audit.neighbours import Neighbours

        distances, indices = Neighbours(K, exact=method == "exact").fit(vectors).kneighbors()
    np.savez(out, wall=time.perf_counter() - started, distances=distances, indices=indices, peak_rss_gb=peak_rss())


def numpy_pairs(hashes: np.ndarray, valid: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """The pHash pair search imagefit ran before FAISS's (at 8ff96ae): NumPy, 256 rows against all at once."""
    pairs = []
    for start in range(0, len(hashes), 256):
        distances = np.bitwise_count(hashes[start : start + 256][:, None] ^ hashes[None, :])
        for row, col in zip(*np.nonzero(distances <= max_distance), strict=True):
            if start + row < col and valid[start + row] and valid[col]:
                pairs.append((start + int(row), int(col), int(distances[row, col])))
    return pairs


def peak_rss() -> float:
    """This process's peak resident memory, GB (vectors included: 300,000 of them are 1.5 GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def child(method: str, path: Path, size: int, scratch: Path) -> dict:
    out = scratch / f"{method}-{size}.npz"
    command = [sys.executable, __file__, "--one", method, "--size", str(size), "--vectors", str(path)]
    subprocess.run([*command, "--out", str(out)], check=True)
    loaded = dict(np.load(out))
    wall, peak = float(loaded["wall"]), float(loaded["peak_rss_gb"])
    print(f"{method} at {size}: {wall:.1f} s, peak RSS {peak:.2f} GB", flush=True)
    return loaded


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)]))


def compare(approximate: dict, exact: dict, rows: np.ndarray | None) -> dict:
    """Recall at 5 and 10, and how many near-duplicate pairs (cosine >= 0.95 among the 5 nearest) each found."""
    from imagefit.audit.similarity import NEAR_DUPLICATE_SIMILARITY, NEIGHBOURS

    found, distances = approximate["indices"], approximate["distances"]
    if rows is not None:
        found, distances = found[rows], distances[rows]

    def pairs(indices, dist):
        close = (1.0 - dist[:, :NEIGHBOURS]) >= NEAR_DUPLICATE_SIMILARITY
        rows, columns = np.nonzero(close)
        return {tuple(sorted((int(i), int(indices[i, j])))) for i, j in zip(rows, columns, strict=True)}

    return {
        "recall_at_5": recall(found, exact["indices"], 5),
        "recall_at_10": recall(found, exact["indices"], K),
        "near_duplicate_pairs": len(pairs(found, distances)),
        "exact_near_duplicate_pairs": len(pairs(exact["indices"], exact["distances"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=Path, required=True)
    parser.add_argument("--sizes", default="60000,300000")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one")
    parser.add_argument("--size", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.vectors, args.size, args.out)
        return
    if not args.vectors.exists():
        embed_cifar(args.vectors)
    results: dict = {"crop_cosine": json.loads(args.vectors.with_suffix(".json").read_text())["crop_cosine"]}
    with tempfile.TemporaryDirectory() as scratch:
        for size in [int(s) for s in args.sizes.split(",")]:
            row: dict = {}
            approximate = child("inverted-file", args.vectors, size, Path(scratch))
            if size <= 60_000:
                exact = child("exact", args.vectors, size, Path(scratch))
                for name in ("sklearn", "phash-numpy"):  # the searches imagefit ran before
                    before = child(name, args.vectors, size, Path(scratch))
                    row[name] = {"wall": float(before["wall"]), "peak_rss_gb": float(before["peak_rss_gb"])}
                row["recall"] = compare(approximate, exact, None)
            else:
                exact = child("exact-sample", args.vectors, size, Path(scratch))
                row["recall"] = compare(approximate, exact, sample_rows(size))
            for name, done in (("inverted_file", approximate), ("exact", exact)):
                row[name] = {"wall": float(done["wall"]), "peak_rss_gb": float(done["peak_rss_gb"])}
            row["phash"] = {k: float(v) for k, v in child("phash", args.vectors, size, Path(scratch)).items()}
            results[str(size)] = row
            print(json.dumps({str(size): row}, indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
