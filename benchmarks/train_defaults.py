"""Train with imagefit's defaults (or given overrides) and print one Markdown row of measured figures.

    python3 benchmarks/train_defaults.py ../shared/data/clothing-small
    python3 benchmarks/train_defaults.py ../shared/data/hymenoptera --epochs 4 --image-size 160
    python3 benchmarks/train_defaults.py ../shared/data/clothing-small --keep runs/clothing-bench

`--keep DIR` keeps the run folder at DIR (for the prediction benchmarks); otherwise it is thrown away.

Columns: data, options, split used for the headline figures (test when the data has one, else
val), accuracy, macro-F1, epochs run, wall time (scan to run folder), and training images/s
(training images seen over the summed epoch seconds, validation included).
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

import imagefit
from imagefit.cli import parse_overrides


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    data, options = argv[0], argv[1:]
    keep = None
    if "--keep" in options:
        at = options.index("--keep")
        keep, options = Path(options[at + 1]), options[:at] + options[at + 2 :]
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        run = imagefit.train(data, out=keep or Path(scratch) / "run", **parse_overrides(options))
        wall = time.perf_counter() - started
        with (run.path / "history.csv").open() as handle:
            history = list(csv.DictReader(handle))
        train_images = sum(s.split == "train" for s in run.split())
        metrics = run.metrics  # read before the scratch folder goes
    split = "test" if "test" in metrics else "val"
    speed = train_images * len(history) / sum(float(row["seconds"]) for row in history)
    print("| data | options | split | accuracy | macro-F1 | epochs | wall | train img/s |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {Path(data).name} | {' '.join(options) or 'defaults'} | {split} | {metrics[split]['accuracy']:.4f} "
        f"| {metrics[split]['macro_f1']:.4f} | {len(history)} | {wall / 60:.1f} min | {speed:.1f} |"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
