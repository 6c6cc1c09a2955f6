"""Multi-label on real photos: 2x2 mosaics of clothing-small, each labelled with the classes it shows.

    python3 benchmarks/multilabel_mosaics.py ../shared/data/clothing-small --train 3000 --test 600 --time-limit 8m

Builds TRAIN mosaics from clothing-small's train photos and TEST mosaics from its test photos
(four photos a mosaic, 112 px tiles, 224 px in all, written to a temporary folder, never to the
project), then on the test mosaics compares:
1. `imagefit train` on the multi-label CSV with the defaults under `--time-limit`;
2. the same, head only (3 head epochs on cached features, no fine-tuning);
3. the baseline a user writes by hand: one single-label model a class ("dress" vs "other"), each
   head only on the same cached features, its probability of the class as the label's score and
   0.5 as its threshold.
Prints one row each: mean average precision (macro, micro), macro-F1 at the thresholds, subset
accuracy, Hamming loss and wall time.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

import imagefit
from imagefit.data import scan
from imagefit.prediction.loading import predict

TILE = 112
# The baselines and the head-only row skip what only the final model needs (prediction settings, unknown index).
LEAN = {"tune_inference": False, "unknown_index": False}


def build(source: Path, out: Path, *, train: int, test: int, seed: int) -> tuple[Path, list[str]]:
    """Mosaics and a path,labels,split CSV (labels parted by ';'); returns the CSV and the class names."""
    samples = scan(source).samples
    classes = sorted({s.label for s in samples})
    rng = random.Random(seed)
    rows = []
    for split, count, pool_splits in (("train", train, ("train",)), ("test", test, ("test",))):
        pool = [s for s in samples if s.split in pool_splits]
        for index in range(count):
            chosen = rng.sample(pool, 4)
            mosaic = Image.new("RGB", (2 * TILE, 2 * TILE))
            for position, sample in enumerate(chosen):
                with Image.open(sample.path) as photo:
                    tile = ImageOps.fit(photo.convert("RGB"), (TILE, TILE))
                mosaic.paste(tile, ((position % 2) * TILE, (position // 2) * TILE))
            path = out / split / f"{index:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            mosaic.save(path, quality=90)
            rows.append([str(path), ";".join(sorted({s.label for s in chosen})), split])
    table = out / "mosaics.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels", "split"])
        writer.writerows(rows)
    return table, classes


def scores(truth: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, f1_score

    chosen = probabilities >= thresholds[None, :]
    return {
        "map_macro": average_precision_score(truth, probabilities, average="macro"),
        "map_micro": average_precision_score(truth, probabilities, average="micro"),
        "macro_f1": f1_score(truth, chosen, average="macro", zero_division=0),
        "subset_accuracy": float((chosen == truth.astype(bool)).all(axis=1).mean()),
        "hamming_loss": float((chosen != truth.astype(bool)).mean()),
    }


def row(name: str, figures: dict, seconds: float) -> str:
    keys = ("map_macro", "map_micro", "macro_f1", "subset_accuracy", "hamming_loss")
    return f"| {name} | " + " | ".join(f"{figures[k]:.4f}" for k in keys) + f" | {seconds / 60:.1f} min |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=600)
    parser.add_argument("--time-limit", default="8m")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        table, classes = build(args.data, scratch / "mosaics", train=args.train, test=args.test, seed=args.seed)
        with table.open(newline="") as handle:
            test = [r for r in csv.DictReader(handle) if r["split"] == "test"]
        paths = [r["path"] for r in test]
        truth = np.array([[c in r["labels"].split(";") for c in classes] for r in test], dtype=np.float32)
        print("| model | mAP macro | mAP micro | macro-F1 | subset accuracy | Hamming loss | wall |")
        print("|---|---|---|---|---|---|---|")
        for name, options in (
            (f"multi-label, defaults, --time-limit {args.time_limit}", {"time_limit": args.time_limit}),
            ("multi-label, head only", {"epochs": 3, "frozen_epochs": 3, **LEAN}),
        ):
            started = time.perf_counter()
            run = imagefit.train(table, out=scratch / name.split(",")[1].strip(), report=False, **options)
            found = predict(run.path, paths)
            assert found.paths == paths and run.classes == classes
            print(row(name, scores(truth, found.probabilities, run.thresholds), time.perf_counter() - started))
        started = time.perf_counter()
        columns = []
        for label in classes:
            binary = scratch / f"binary-{label}.csv"
            with table.open(newline="") as source, binary.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["path", "label", "split"])
                for r in csv.DictReader(source):
                    writer.writerow([r["path"], label if label in r["labels"].split(";") else "other", r["split"]])
            run = imagefit.train(
                binary, out=scratch / f"binary-{label}", report=False, epochs=3, frozen_epochs=3, **LEAN
            )
            found = predict(run.path, paths)
            columns.append(found.probabilities[:, run.classes.index(label)])
        probabilities = np.stack(columns, axis=1)
        baseline = scores(truth, probabilities, np.full(len(classes), 0.5))
        print(row("one single-label model a class, head only", baseline, time.perf_counter() - started), flush=True)


if __name__ == "__main__":
    main()
