"""Active learning curves: `imagefit suggest --n N` against N random images per round, test accuracy after each.

    python3 benchmarks/active_learning.py --sets clothing,cifar --json results/issue29-active-learning.json

Per dataset: a seeded START share of the training images is labelled, the rest is the pool. Round 0
trains on the labelled images (`imagefit train MANIFEST --quality fast --no-report`, in a child process,
the test split given in the manifest); then, for each strategy, ROUNDS times: N images of the pool get
their held-back labels (chosen by `imagefit.suggest` on the last run, or at random), and the run is
trained again. `--quality fast` (the head on frozen features, the feature cache shared by every run)
keeps a curve within minutes; pass other train options after `--`. Datasets: clothing (clothing-small's
train and test folders), cifar (the 5,000 / 1,000 subset of `cifar_subset.py`, extracted to files).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from cifar_subset import write_subset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def clothing(scratch: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    root = SHARED / "clothing-small"
    return _folder_items(root / "train"), _folder_items(root / "test")


def cifar(scratch: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The subset's images extracted to SCRATCH/cifar/<split>/<label>/ (suggest takes files)."""
    subset = write_subset(scratch / "cifar-subset.csv")
    items: dict[str, list] = {"train": [], "test": []}
    with subset.open(newline="") as handle, zipfile.ZipFile(SHARED / "cifar10.zip") as archive:
        for row in csv.DictReader(handle):
            name = row["path"].split("::", 1)[1]
            target = scratch / "cifar" / row["split"] / row["label"] / Path(name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
            items[row["split"]].append((str(target), row["label"]))
    return items["train"], items["test"]


def _folder_items(folder: Path) -> list[tuple[str, str]]:
    return [(str(p.resolve()), p.parent.name) for p in sorted(folder.glob("*/*")) if p.is_file()]


SETS = {"clothing": clothing, "cifar": cifar}


def write_manifest(path: Path, labelled, test, val=()) -> Path:
    """path,label,split of the labelled (train), test and (when given, else the run carves it) val items: what
    `imagefit train` reads."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows([[p, label, "train"] for p, label in labelled] + [[p, label, "test"] for p, label in test])
        writer.writerows([[p, label, "val"] for p, label in val])
    return path


def train(labelled, test, out: Path, options: list[str], env: dict) -> dict:
    """One run on LABELLED (train) and TEST, in a child process: test accuracy, macro-F1, wall time."""
    manifest = write_manifest(out.with_suffix(".csv"), labelled, test)
    command = [sys.executable, "-m", "imagefit.cli", "train", str(manifest), "--out", str(out), "--no-report"]
    started = time.perf_counter()
    done = subprocess.run(command + options, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: {done.stderr.strip().splitlines()[-1:]}")
    test_figures = json.loads((out / "metrics.json").read_text())["test"]
    wall = time.perf_counter() - started
    return {
        "labelled": len(labelled),
        "accuracy": test_figures["accuracy"],
        "macro_f1": test_figures["macro_f1"],
        "wall": wall,
    }


def pick(strategy: str, run: Path, pool: list[tuple[str, str]], n: int, rng: random.Random) -> tuple[list, float]:
    """N pool items chosen by STRATEGY, and the seconds the choice took."""
    started = time.perf_counter()
    if strategy == "random":
        return rng.sample(pool, n), time.perf_counter() - started
    import imagefit

    chosen = {row[0] for row in imagefit.suggest(run, [p for p, _ in pool], n=n).rows}
    return [item for item in pool if item[0] in chosen], time.perf_counter() - started


def curve(name: str, scratch: Path, args, options: list[str], env: dict) -> dict:
    train_items, test = SETS[name](scratch)
    rng = random.Random(args.seed)
    start = rng.sample(train_items, round(args.start * len(train_items)))
    first = train(start, test, scratch / f"{name}-0", options, env)
    print(f"# {name} round 0: {len(start)} labelled, test {first['accuracy']:.4f} ({first['wall']:.0f} s)", flush=True)
    result = {"start": first, "suggest": [], "random": []}
    for strategy in args.strategies.split(","):
        labelled, run = list(start), scratch / f"{name}-0"
        strategy_rng = random.Random(args.seed + 1)
        for round_ in range(1, args.rounds + 1):
            known = {p for p, _ in labelled}
            pool = [item for item in train_items if item[0] not in known]
            chosen, seconds = pick(strategy, run, pool, args.n, strategy_rng)
            labelled += chosen
            run = scratch / f"{name}-{strategy}-{round_}"
            row = train(labelled, test, run, options, env) | {"pick_seconds": seconds}
            result[strategy].append(row)
            print(
                f"# {name} {strategy} round {round_}: {len(labelled)} labelled, test {row['accuracy']:.4f}", flush=True
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="clothing,cifar")
    parser.add_argument("--start", type=float, default=0.1, help="share of the training images labelled at first")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategies", default="suggest,random", help="suggest, random or both (the same picks alone)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("options", nargs=argparse.REMAINDER, help="train options after -- (default: --quality fast)")
    args = parser.parse_args()
    options = [o for o in args.options if o != "--"] or ["--quality", "fast"]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "IMAGEFIT_CACHE": str(Path(scratch) / "cache")}
        for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
            results[name] = curve(name, Path(scratch), args, options, env)
    print("| data | strategy | " + " | ".join(f"round {r}" for r in range(args.rounds + 1)) + " |")
    print("|---|---|" + "---|" * (args.rounds + 1))
    for name, result in results.items():
        for strategy in [s for s in ("suggest", "random") if result[s]]:
            cells = [result["start"]] + result[strategy]
            print(
                f"| {name} | {strategy} | " + " | ".join(f"{c['accuracy']:.4f} ({c['labelled']})" for c in cells) + " |"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"options": options, "args": vars(args) | {"json": str(args.json)}, "results": results},
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
