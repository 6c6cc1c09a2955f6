"""Near-duplicate detection: recall per kind of edit, and pairs flagged among distinct images.

    python3 benchmarks/near_duplicate_threshold.py ../shared/data/clothing-small --copies 100

Embeds every image with the audit's model (cached) and computes its pHash, then makes edited
copies of `--copies` images and reports, per edit, the share of copies caught by the embeddings
alone (cosine >= NEAR_DUPLICATE_SIMILARITY), by pHash alone at several Hamming distances, and by
the audit's rule (cosine >= NEAR_DUPLICATE_SIMILARITY, or pHash within PHASH_DISTANCE bits and
cosine >= PHASH_SIMILARITY, or pHash within STRICT_PHASH bits). The last row counts pairs of *different*
files (different bytes) that each rule flags, per 1,000 images: real re-encoded duplicates among
them, and false alarms.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imagefit.audit.embeddings import embed, embedding_model
from imagefit.audit.phash import close_pairs, perceptual_hashes
from imagefit.audit.similarity import NEAR_DUPLICATE_SIMILARITY, PHASH_DISTANCE, PHASH_SIMILARITY, STRICT_PHASH
from imagefit.data import scan
from imagefit.data.decode import open_image

DISTANCES = (4, 6, 8, 10)


def audit_rule(cosine: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The audit's near-duplicate rule (imagefit.audit.similarity), on arrays of pair figures."""
    return (
        (cosine >= NEAR_DUPLICATE_SIMILARITY)
        | ((bits <= PHASH_DISTANCE) & (cosine >= PHASH_SIMILARITY))
        | (bits <= STRICT_PHASH)
    )


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _resize(image: Image.Image, share: float) -> Image.Image:
    return image.resize((max(1, round(image.width * share)), max(1, round(image.height * share))), Image.BICUBIC)


def _crop(image: Image.Image, share: float) -> Image.Image:
    dx, dy = round(image.width * (1 - share) / 2), round(image.height * (1 - share) / 2)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


EDITS = {
    "resize 50%": lambda im: _resize(im, 0.5),
    "resize 75% + JPEG q70": lambda im: _jpeg(_resize(im, 0.75), 70),
    "resize 90%": lambda im: _resize(im, 0.9),
    "JPEG q30": lambda im: _jpeg(im, 30),
    "JPEG q90": lambda im: _jpeg(im, 90),
    "crop 95%": lambda im: _crop(im, 0.95),
    "crop 90%": lambda im: _crop(im, 0.9),
    "crop 80%": lambda im: _crop(im, 0.8),
    "grayscale": lambda im: im.convert("L").convert("RGB"),
    "brightness +10%": lambda im: im.point(lambda v: min(255, int(v * 1.1))),
    "rotate 5 degrees": lambda im: im.rotate(5, resample=Image.BICUBIC, expand=False),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--copies", type=int, default=100)
    args = parser.parse_args()
    inventory = scan(Path(args.data))
    samples = inventory.samples
    locators = [s.path for s in samples]
    hashes = [inventory.facts[s.path].sha256 for s in samples]
    sides = [min(inventory.facts[s.path].width, inventory.facts[s.path].height) for s in samples]
    model, preprocess, name = embedding_model(None, median_side=int(np.median(sides)))
    vectors = embed(locators, hashes, model, preprocess, cache_name=name)
    phashes, valid = perceptual_hashes(locators)
    picked = np.random.default_rng(0).choice(len(samples), size=min(args.copies, len(samples)), replace=False)
    header = ["edit", "embeddings"] + [f"pHash <= {d}" for d in DISTANCES] + ["audit rule", "median cosine"]
    print(f"{Path(args.data).name}: {len(samples)} images, {len(picked)} copies per edit")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with tempfile.TemporaryDirectory() as scratch:
        for edit, change in EDITS.items():
            paths = []
            for index in picked:
                path = Path(scratch) / f"{edit.replace(' ', '_').replace('%', '').replace('+', '')}_{index}.png"
                change(open_image(samples[index].path)).convert("RGB").save(path)
                paths.append(str(path))
            copies = embed(
                paths, [f"{edit}-{p}" for p in paths], model, preprocess, cache_name="bench", cache_dir=Path(scratch)
            )
            cosine = (copies * vectors[picked]).sum(axis=1)
            copy_hashes, _ = perceptual_hashes(paths)
            bits = np.bitwise_count(copy_hashes ^ phashes[picked])
            by_embedding = cosine >= NEAR_DUPLICATE_SIMILARITY
            cells = [f"{by_embedding.mean():.2f}"] + [f"{(bits <= d).mean():.2f}" for d in DISTANCES]
            cells += [f"{audit_rule(cosine, bits).mean():.2f}", f"{np.median(cosine):.3f}"]
            print(f"| {edit} | " + " | ".join(cells) + " |", flush=True)
    distinct = np.array(hashes)
    similarity = vectors @ vectors.T
    upper = np.triu(similarity >= NEAR_DUPLICATE_SIMILARITY, k=1)
    embedding_pairs = {(i, j) for i, j in zip(*np.nonzero(upper), strict=True) if distinct[i] != distinct[j]}
    per_thousand = 1000 / len(samples)
    cells = [f"{len(embedding_pairs) * per_thousand:.2f}"]
    for d in DISTANCES:
        pairs = [(i, j) for i, j, _ in close_pairs(phashes, valid, d) if distinct[i] != distinct[j]]
        cells.append(f"{len(pairs) * per_thousand:.2f}")
    close = close_pairs(phashes, valid, max(PHASH_DISTANCE, STRICT_PHASH))
    rule = {
        (i, j)
        for i, j, bits in close
        if distinct[i] != distinct[j] and audit_rule(np.array([similarity[i, j]]), np.array([bits]))[0]
    }
    cells += [f"{len(embedding_pairs | rule) * per_thousand:.2f}", ""]
    print("| pairs of different files flagged, per 1,000 images | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
