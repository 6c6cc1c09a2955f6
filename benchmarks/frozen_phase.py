"""Phase 1 (head only, backbone frozen) with and without the feature cache, side by side in one run.

    python3 benchmarks/frozen_phase.py ../shared/data/clothing-small

Three head-only trainings with the defaults otherwise (so epochs == frozen_epochs == 3):
  through the backbone  `--cached-head false`: Lightning epochs through the frozen backbone
  cache, cold           features of 3 views computed, then the head trained on them
  cache, warm           the same again: the features come from the cache
Wall time covers the whole `imagefit.train` call without report (scan, phase 1, final
evaluation), so the differences are phase 1. The cache lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import imagefit


def _row(name: str, run, wall: float) -> str:
    with (run.path / "history.csv").open() as handle:
        history = list(csv.DictReader(handle))
    head_seconds = sum(float(r["seconds"]) for r in history)
    split = "test" if "test" in run.metrics else "val"
    figures = run.metrics[split]
    return (
        f"| {name} | {wall:.0f} | {head_seconds:.1f} | {float(history[-1]['val_accuracy']):.4f} "
        f"| {split} {figures['accuracy']:.4f} / {figures['macro_f1']:.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print("| phase 1 | wall s | seconds in epochs (history) | val accuracy | accuracy / macro-F1 |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["IMAGEFIT_CACHE"] = str(Path(scratch) / "cache")
        for name, cached in (("through the backbone", False), ("cache, cold", True), ("cache, warm", True)):
            started = time.perf_counter()
            run = imagefit.train(
                args.data,
                out=Path(scratch) / name.replace(" ", "-").replace(",", ""),
                epochs=args.epochs,
                frozen_epochs=args.epochs,
                cached_head=cached,
                report=False,
            )
            print(_row(name, run, time.perf_counter() - started), flush=True)


if __name__ == "__main__":
    main()
