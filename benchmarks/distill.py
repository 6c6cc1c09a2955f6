"""Distillation: the small model alone against the small model taught by a larger run, same split, one table.

    python3 benchmarks/distill.py --json results/issue30-distill.json ../shared/data/clothing-small
    python3 benchmarks/distill.py --teacher RUN --json FILE ../shared/data/clothing-small   (options before DATA)
    python3 benchmarks/distill.py --teacher ENS --keep DIR ...   (the student runs kept in DIR/alone, DIR/distilled)

Three runs in child processes, each with `--no-report` and the given train options after `--`: the
teacher (`imagefit train DATA`, the default lite1; or `--teacher RUN`, an existing run or ensemble), the
student model trained alone (`imagefit train DATA --model STUDENT`), and the student distilled from the
teacher (`imagefit distill TEACHER --model STUDENT`). Test accuracy, macro-F1 and wall time of each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(command: list[str], out: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "imagefit.cli", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: {done.stderr.strip().splitlines()[-3:]}")
    return figures(json.loads((out / "metrics.json").read_text()), round(time.perf_counter() - started, 1))


def figures(metrics: dict, wall: float) -> dict:
    return {
        "test_accuracy": metrics["test"]["accuracy"],
        "test_macro_f1": metrics["test"]["macro_f1"],
        "val_accuracy": metrics["val"]["accuracy"],
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--student", default="tf_efficientnet_lite0")
    parser.add_argument("--teacher", type=Path, help="an existing run or ensemble folder (default: train one)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="a folder to keep the runs in (default: a scratch folder)")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="train options after --")
    args = parser.parse_args()
    options = [o for o in args.options if o != "--"]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        teacher = args.teacher or root / "teacher"
        if args.teacher is None:
            results["teacher"] = run(["train", str(args.data), "--out", str(teacher), "--no-report", *options], teacher)
        else:  # its own figures, as its run folder holds them
            results["teacher"] = figures(json.loads((teacher / "metrics.json").read_text()), float("nan"))
        alone = root / "alone"
        results["alone"] = run(
            ["train", str(args.data), "--out", str(alone), "--model", args.student, "--no-report", *options], alone
        )
        student = root / "distilled"
        command = ["distill", str(teacher), "--model", args.student, "--out", str(student), "--no-report", *options]
        results["distilled"] = run(command, student)
    print("| model | test accuracy | test macro-F1 | val accuracy | wall s |")
    print("|---|---|---|---|---|")
    for name, row in results.items():
        print(
            f"| {name} | {row['test_accuracy']:.4f} | {row['test_macro_f1']:.4f} | {row['val_accuracy']:.4f} | "
            f"{row['wall']:.0f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"options": options, "student": args.student, "results": results}, indent=1))


if __name__ == "__main__":
    main()
