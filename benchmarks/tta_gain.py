"""Test-time augmentation: figures on a run's test split with 1 (none), 2, 4 and 6 views, one process.

python3 benchmarks/tta_gain.py runs/clothing-bench
"""

from __future__ import annotations

import sys
import time

from imagefit.evaluation.evaluator import evaluate


def main(run_dir: str) -> None:
    print("| views | accuracy | macro-F1 | log loss | seconds |")
    print("|---|---|---|---|---|")
    for views in (1, 2, 4, 6):
        started = time.perf_counter()
        (result,) = evaluate(run_dir, split="test", tta_n=views)
        figures = result.metrics
        print(
            f"| {views} | {figures['accuracy']:.4f} | {figures['macro_f1']:.4f} | {figures['log_loss']:.4f} "
            f"| {time.perf_counter() - started:.1f} |",
            flush=True,
        )
    evaluate(run_dir, split="test")  # leave the run's stored figures as without TTA


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
