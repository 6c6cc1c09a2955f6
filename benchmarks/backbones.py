"""Several backbones on one split, then their ensemble: test figures and wall time of each.

    python3 benchmarks/backbones.py ../shared/data/clothing-small \\
        --models tf_efficientnet_lite0,tf_efficientnet_lite1,tf_efficientnet_lite2 --time-limit 8m --runs runs/bench

Trains each backbone with `imagefit.training.backbones.train_backbones` (the same as
`imagefit train DATA --model a,b,c`, here with a time limit each), then `imagefit ensemble` of
them with each method, and prints one row per run and per ensemble.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from imagefit.evaluation.ensembles import make_ensemble
from imagefit.report.compare import run_facts
from imagefit.training.backbones import train_backbones


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--models", default="tf_efficientnet_lite0,tf_efficientnet_lite1,tf_efficientnet_lite2")
    parser.add_argument("--time-limit", default="8m")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",")]
    started = time.perf_counter()
    runs = train_backbones(args.data, models, runs_dir=args.runs, time_limit=args.time_limit, report=False)
    print(f"trained {len(runs)} backbones in {(time.perf_counter() - started) / 60:.1f} min")
    print("| run | model | eval size | epochs | minutes | test accuracy | test macro-F1 |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        facts = run_facts(run.path)
        print(
            f"| {run.path.name} | {facts['model']} | {facts['eval_size']} | {facts['epochs']} | {facts['minutes']} "
            f"| {facts['test_accuracy']} | {facts['test_macro_f1']} |",
            flush=True,
        )
    for method in ("mean", "weighted", "greedy"):
        ensemble = make_ensemble([r.path for r in runs], out=args.runs / f"ensemble-{method}", method=method)
        test = ensemble.metrics["test"]
        weights = ", ".join(f"{w:.2f}" for w in ensemble.weights)
        print(
            f"| ensemble ({method}; weights {weights}) | - | - | - | - | {test['accuracy']:.4f} "
            f"| {test['macro_f1']:.4f} ({test['gain_over_best_member']:+.4f} over the best member) |"
        )


if __name__ == "__main__":
    main()
