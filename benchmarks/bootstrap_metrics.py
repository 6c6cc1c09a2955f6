"""How far a test figure can move by chance: bootstrap intervals of accuracy, macro-F1 and balanced accuracy.

    python3 benchmarks/bootstrap_metrics.py RUN/predictions-test.csv [OTHER.csv ...] [--resamples 2000] [--json F]

Each CSV is a run's per-image predictions (`predictions-<split>.csv`: path, true, predicted, ...; `screen.py
--keep DIR` copies them). The images are drawn with replacement RESAMPLES times (seeded); each figure's 95 %
interval is the 2.5th and 97.5th percentiles of the resampled figures. With two or more CSVs over the same images,
each one after the first is also compared with the first on the same resamples (paired): the interval of the
difference says whether the two runs differ by more than the test set's own noise.
"""

from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score

FIGURES = {
    "accuracy": lambda t, p: float((t == p).mean()),
    "macro_f1": lambda t, p: float(f1_score(t, p, average="macro", zero_division=0)),
    "balanced_accuracy": lambda t, p: float(balanced_accuracy_score(t, p)),
}


def read(path: Path) -> dict[str, tuple[str, str]]:
    """path -> (true, predicted) of a predictions CSV."""
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["path"]: (row["true"], row["predicted"]) for row in csv.DictReader(handle)}


def figures(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {name: fn(true, predicted) for name, fn in FIGURES.items()}


def interval(values: list[float]) -> list[float]:
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def bootstrap(runs: list[dict[str, tuple[str, str]]], resamples: int, seed: int = 0) -> list[dict]:
    """Per run: each figure, its 95 % interval, and (after the first) the paired difference from the first."""
    paths = sorted(runs[0])
    missing = [i for i, run in enumerate(runs) if sorted(run) != paths]
    if missing:
        raise SystemExit(f"the CSVs number {missing} do not hold the same images as the first")
    true = np.array([runs[0][p][0] for p in paths])
    predicted = [np.array([run[p][1] for p in paths]) for run in runs]
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(paths), len(paths)) for _ in range(resamples)]
    resampled = [[figures(true[d], pred[d]) for d in draws] for pred in predicted]
    out = []
    for i, pred in enumerate(predicted):
        row = {"images": len(paths)}
        for name, value in figures(true, pred).items():
            row[name] = round(value, 4)
            row[f"{name}_95"] = interval([r[name] for r in resampled[i]])
            if i:
                diffs = [a[name] - b[name] for a, b in zip(resampled[i], resampled[0], strict=True)]
                row[f"{name}_minus_first_95"] = interval(diffs)
        out.append(row)
    return out


def main() -> None:
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")  # a resample may miss a class
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csvs", nargs="+", type=Path)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = bootstrap([read(p) for p in args.csvs], args.resamples)
    for path, row in zip(args.csvs, rows, strict=True):
        parts = [f"{name} {row[name]:.4f} [{row[name + '_95'][0]:.4f}, {row[name + '_95'][1]:.4f}]" for name in FIGURES]
        paired = [f"{name} {row[name + '_minus_first_95']}" for name in FIGURES if name + "_minus_first_95" in row]
        print(f"{path}: " + "; ".join(parts) + (f"; minus the first, 95 %: {'; '.join(paired)}" if paired else ""))
    if args.json:
        record = {"csvs": [str(p) for p in args.csvs], "resamples": args.resamples, "rows": rows}
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
