"""Measure the near-duplicate threshold: similarity of edited copies vs. of the closest *different* image.

    python3 benchmarks/near_duplicate_threshold.py ../shared/data/clothing-small --copies 100

Embeds every image (cached), then makes edited copies of `--copies` images (JPEG quality 50,
resized to 60 %, centre crop of 90 %) and prints the cosine similarity of each copy to its
original beside the nearest-neighbour similarity among the original, distinct images.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imagefit.audit.embeddings import embed, embedding_model
from imagefit.audit.similarity import NEAR_DUPLICATE_SIMILARITY
from imagefit.data import scan
from imagefit.data.decode import open_image

EDITS = {
    "jpeg q50": lambda im: Image.open(io.BytesIO(_jpeg(im, 50))),
    "resize 60%": lambda im: im.resize((im.width * 3 // 5, im.height * 3 // 5)),
    "crop 90%": lambda im: im.crop((im.width // 20, im.height // 20, im.width * 19 // 20, im.height * 19 // 20)),
}


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--copies", type=int, default=100)
    args = parser.parse_args()
    inventory = scan(Path(args.data))
    samples = inventory.samples
    hashes = [inventory.facts[s.path].sha256 for s in samples]
    sides = [min(inventory.facts[s.path].width, inventory.facts[s.path].height) for s in samples]
    model, preprocess, name = embedding_model(None, median_side=int(np.median(sides)))
    vectors = embed([s.path for s in samples], hashes, model, preprocess, cache_name=name)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1)
    distinct = np.array([similarity[i][np.array(hashes) != hashes[i]].max() for i in range(len(samples))])
    picked = np.random.default_rng(0).choice(len(samples), size=min(args.copies, len(samples)), replace=False)
    print(f"{len(samples)} images; threshold in use: {NEAR_DUPLICATE_SIMILARITY}")
    print("| pairs | n | min | 1st pct | median | share >= 0.90 | share >= threshold |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for edit, change in EDITS.items():
            paths = []
            for index in picked:
                path = Path(scratch) / f"{edit.replace(' ', '_').replace('%', '')}_{index}.png"
                change(open_image(samples[index].path)).convert("RGB").save(path)
                paths.append(str(path))
            copies = embed(
                paths,
                [f"{edit}-{p}" for p in paths],
                model,
                preprocess,
                cache_name="threshold-scratch",
                cache_dir=Path(scratch),
            )
            scores = (copies * vectors[picked]).sum(axis=1)
            _row(f"copy vs original ({edit})", scores)
    _row("nearest different image (all)", distinct)


def _row(label: str, scores: np.ndarray) -> None:
    share = (scores >= NEAR_DUPLICATE_SIMILARITY).mean()
    print(
        f"| {label} | {len(scores)} | {scores.min():.4f} | {np.percentile(scores, 1):.4f} "
        f"| {np.median(scores):.4f} | {(scores >= 0.90).mean():.4f} | {share:.4f} |"
    )


if __name__ == "__main__":
    main()
