"""Write a CSV naming a class-balanced subset of ../shared/data/cifar10.zip, read in place (no image is copied).

    python3 benchmarks/cifar_subset.py OUT.csv [--train 5000] [--test 1000] [--seed 0]

The rows are `path,label,split` with zip locators (`/abs/cifar10.zip::cifar10/train/cat/0001.jpg`):
`--train` images from the zip's train folder (split train; imagefit carves its val split from
them) and `--test` from its test folder, the same number from each class.
"""

from __future__ import annotations

import argparse
import csv
import random
import zipfile
from collections import defaultdict
from pathlib import Path

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10.zip"


def write_subset(out: Path, *, train: int = 5000, test: int = 1000, seed: int = 0, archive: Path = CIFAR) -> Path:
    """Write the subset CSV to OUT and return OUT."""
    with zipfile.ZipFile(archive) as handle:
        names = [n for n in handle.namelist() if n.endswith(".jpg")]
    by_split_class: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in names:
        _, split, label, _ = name.split("/")
        by_split_class[(split, label)].append(name)
    labels = sorted({label for _, label in by_split_class})
    rng = random.Random(seed)
    rows = []
    for split, total in (("train", train), ("test", test)):
        for label in labels:
            members = sorted(by_split_class[(split, label)])
            rows += [[f"{archive.resolve()}::{m}", label, split] for m in rng.sample(members, total // len(labels))]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_subset(args.out, train=args.train, test=args.test, seed=args.seed))


if __name__ == "__main__":
    main()
