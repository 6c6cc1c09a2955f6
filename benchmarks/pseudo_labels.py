"""Label-scarce learning: a run on a share of the training labels, then its `--unlabelled` students on the rest.

    python3 benchmarks/pseudo_labels.py --sets clothing --keep 0.1 --json results/issue29-pseudo-labels.json

Per dataset and kept share: a seeded KEEP share of the training images keeps its labels (val is carved
from them, 15 %, as a user's run would), the rest is given as unlabelled images (a folder of links), and
`imagefit train MANIFEST --unlabelled POOL --no-report` runs in a child process with the test split in
the manifest. The run it starts with is the labelled-only row (the same split, seed and recipe); the
student it keeps (or the run itself) is the `--unlabelled` row. Also: how many pseudo-labels each round
took and how many of them were right (the held-back labels), wall time and the child's peak RSS.
`--ceiling` adds a run on every training label; `--keep-runs DIR` copies each run's history, config and
metrics into DIR/<run>. Datasets: clothing (clothing-small train / test),
cifar (the 5,000 / 1,000 subset of `cifar_subset.py`), digits (a seeded 20 % test split of digits/).
Other train options after `--`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from active_learning import SHARED, _folder_items, cifar, clothing, write_manifest
from screen import keep_files


def digits(scratch: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    items = _folder_items(SHARED / "digits")
    rng = random.Random(0)
    test = set(rng.sample(range(len(items)), round(0.2 * len(items))))
    return [x for i, x in enumerate(items) if i not in test], [x for i, x in enumerate(items) if i in test]


SETS = {"clothing": clothing, "cifar": cifar, "digits": digits}


def run_child(labelled, test, out: Path, options: list[str], env: dict, pool: Path | None, val=()) -> dict:
    """`imagefit train` on LABELLED (+ the POOL unlabelled; VAL when given, else carved) in a child process: wall
    seconds and peak RSS."""
    manifest = write_manifest(out.with_suffix(".csv"), labelled, test, val)
    command = [sys.executable, "-m", "imagefit.cli", "train", str(manifest), "--out", str(out), "--no-report"]
    command += ["--unlabelled", str(pool) if pool else "none"]
    started = time.perf_counter()
    done = subprocess.run(command + options, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: {done.stderr.strip().splitlines()[-3:]}")
    lines = [line for line in done.stderr.splitlines() if line.startswith(("pseudo-labels", "round "))]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # the largest child so far, GB
    return {"wall": time.perf_counter() - started, "peak_rss_gb_so_far": round(peak, 2), "lines": lines}


def figures(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {key: metrics[split][key] for split in ("test",) for key in ("accuracy", "macro_f1")} | {
        "val_log_loss": metrics["val"]["log_loss"],
        "val_accuracy": metrics["val"]["accuracy"],
    }


def students(run: Path, truth: dict[str, str], lines: list[str]) -> tuple[Path, list[dict]]:
    """The run the chain returned (its last student the round lines call kept, else the run) and each student's row."""
    kept, rounds = run, []
    for number in range(1, 4):
        student = run.with_name(f"{run.name}-student{number}")
        if not (student / "metrics.json").exists():
            break
        with (student / "pseudo-labels.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        right = sum(truth[os.path.realpath(r["path"])] == r["label"] for r in rows)
        rounds.append(figures(student) | {"round": number, "pseudo_labels": len(rows), "pseudo_right": right})
        if any(line.startswith(f"round {number}:") and line.endswith(f"{student.name} kept") for line in lines):
            kept = student
    return kept, rounds


def split_share(train_items: list[tuple[str, str]], keep: float, seed: int) -> tuple[list, list]:
    """The seeded KEEP share of the training items that keeps its labels, and the rest (the unlabelled pool)."""
    labelled = random.Random(seed).sample(train_items, round(keep * len(train_items)))
    known = {p for p, _ in labelled}
    return labelled, [item for item in train_items if item[0] not in known]


def one(name: str, keep: float, scratch: Path, args, options: list[str], env: dict) -> dict:
    train_items, test = SETS[name](scratch)
    labelled, rest = split_share(train_items, keep, args.seed)
    pool = scratch / f"{name}-{keep}-pool"
    pool.mkdir()
    truth = {}
    for i, (path, label) in enumerate(rest):
        (pool / f"{i:06d}{Path(path).suffix}").symlink_to(path)
        truth[os.path.realpath(path)] = label
    run = scratch / f"{name}-{keep}"
    child = run_child(labelled, test, run, options, env, pool if truth else None)  # keep 1.0: the ceiling
    kept, rounds = students(run, truth, child["lines"])
    if args.keep_runs:
        for folder in [run, *(run.with_name(f"{run.name}-student{r['round']}") for r in rounds)]:
            keep_files(folder, args.keep_runs / folder.name)
    result = {
        "labelled": len(labelled),
        "unlabelled": len(truth),
        "labelled_only": figures(run),
        "with_unlabelled": figures(kept) | {"kept": kept.name},
        "rounds": rounds,
        **child,
    }
    print(f"# {name} {keep}: {json.dumps(result)}", flush=True)
    if args.ceiling:
        ceiling = run_child(train_items, test, scratch / f"{name}-all", options, env, None)
        result["ceiling"] = figures(scratch / f"{name}-all") | {"wall": ceiling["wall"]}
        if args.keep_runs:
            keep_files(scratch / f"{name}-all", args.keep_runs / f"{name}-all")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="clothing")
    parser.add_argument("--keep", default="0.1", help="shares of the training labels kept, e.g. 0.1,0.25")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ceiling", action="store_true", help="also train on every training label")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep-runs", type=Path, help="copy each run's history, config and metrics into this folder")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="train options after --")
    args = parser.parse_args()
    options = [o for o in args.options if o != "--"]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "IMAGEFIT_CACHE": str(Path(scratch) / "cache")}
        for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
            for keep in [float(k) for k in args.keep.split(",")]:
                results[f"{name}-{keep}"] = one(name, keep, Path(scratch), args, options, env)
    print("| data | labels | labelled-only test acc / F1 | --unlabelled test acc / F1 | rounds | wall s |")
    print("|---|---|---|---|---|---|")
    for key, r in results.items():
        a, b = r["labelled_only"], r["with_unlabelled"]
        print(
            f"| {key} | {r['labelled']} (+{r['unlabelled']}) | {a['accuracy']:.4f} / {a['macro_f1']:.4f} | "
            f"{b['accuracy']:.4f} / {b['macro_f1']:.4f} ({b['kept']}) | {len(r['rounds'])} | {r['wall']:.0f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"options": options, "args": vars(args) | {"json": str(args.json)},
                                         "results": results}, indent=1, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
