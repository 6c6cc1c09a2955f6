"""Two processes write the vector cache at once from an empty folder, TRIALS times: how often a row is lost.

    python3 benchmarks/cache_concurrency.py --trials 60 --json benchmarks/results/cache-concurrency.json

Each trial: two spawned processes put 40 vectors each (one transaction per vector) into a new store;
a trial is lost when the store afterwards holds fewer than 80, or a file was set aside as damaged.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np

from imagefit.data.cache import VectorStore


def _writer(root: Path, first: int) -> None:
    warnings.simplefilter("ignore")
    store = VectorStore(root)
    for i in range(first, first + 40):
        store.put("space", {f"h{i}": np.full(4, i, dtype=np.float32)}, kind="features")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    lost, set_aside = 0, 0
    for _ in range(args.trials):
        root = Path(tempfile.mkdtemp())
        workers = [context.Process(target=_writer, args=(root, first)) for first in (0, 1000)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        got = VectorStore(root).get("space", [f"h{i}" for i in [*range(40), *range(1000, 1040)]])
        lost += len(got) != 80
        set_aside += bool(list(root.glob("vectors.damaged-*")))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    row = {"commit": commit, "trials": args.trials, "trials_losing_rows": lost, "trials_setting_aside": set_aside}
    print(json.dumps(row))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
