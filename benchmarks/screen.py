"""Screen a recipe change on the four reference datasets and print one Markdown table row.

    python3 benchmarks/screen.py --label "defaults" --time-limit clothing=8m,cifar=8m,digits=4m,hymenoptera=3m
    python3 benchmarks/screen.py --label "bn on" --time-limit 4m -- --finetune-bn true
    python3 benchmarks/screen.py --label "full" --sets clothing,digits -- --epochs 12

Each dataset trains in its own child process (`imagefit train DATA --out TMP --no-report` plus the
options after `--`), one after another, with a private feature cache per screen unless
`--cache DIR` is given (then a warm cache makes phase 1 free, as it is for a user's second run).
The row gives, per dataset, the headline accuracy (test where the data has a test split, else
val) with macro-F1 and balanced accuracy, then the total wall time and the largest peak RSS.
`--time-limit` is one duration for every set or `set=duration,...`. `--keep DIR` copies each run's
history, config, metrics and per-image predictions into DIR/<set>; `--keep-runs DIR` the whole run folders
(without checkpoints and logs), to evaluate again later. `--details` also prints one
row per dataset: epochs, kept epoch, the epochs of a soup (`--soup true`) with the kept epoch's own
plain accuracy beside it, the prediction settings chosen on val, the headline accuracy
and ECE with the plain settings (training size, one view, no temperature) and with the chosen
ones, wall time and peak RSS.

Datasets (from ../shared/data): clothing (clothing-small, test split), hymenoptera (val),
digits (val carved from the class folders), cifar (5,000 train / 1,000 test from cifar10.zip,
read in place through a CSV that `benchmarks/cifar_subset.py` writes), steel (steel-defects, a 20 %
test split carved), tiles (magnetic-tiles, its own test split). `--json FILE` writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cifar_subset import write_subset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "clothing": SHARED / "clothing-small",
    "hymenoptera": SHARED / "hymenoptera",
    "digits": SHARED / "digits",
    "cifar": None,  # written on the fly
    "steel": SHARED / "steel-defects",
    "tiles": SHARED / "magnetic-tiles",
}
SET_OPTIONS = {"steel": ["--test-split", "0.2"]}  # steel has no split of its own: a test split is carved


def keep_files(run: Path, into: Path) -> None:
    """Copy the small files of RUN (its history, config, metrics and per-image predictions of each evaluated split)
    into INTO, before the scratch is deleted."""
    into.mkdir(parents=True, exist_ok=True)
    names = ["history.csv", "config.json", "metrics.json"] + sorted(p.name for p in run.glob("predictions-*.csv"))
    for name in names:
        if (run / name).is_file():
            shutil.copy2(run / name, into / name)


def run_one(data: Path, out: Path, options: list[str], env: dict) -> dict:
    """Train one dataset in a child process; its metrics, history length, wall time and peak RSS."""
    command = [sys.executable, "-m", "imagefit.cli", "train", str(data), "--out", str(out), "--no-report", *options]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        stderr = log.read()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {process.returncode}"}
    metrics = json.loads((out / "metrics.json").read_text())
    history = (out / "history.csv").read_text().strip().splitlines()[1:]
    said = ("plan:", "adapt:", "prediction:", "time limit", "soup:")
    plan = [line for line in stderr.splitlines() if line.startswith(said)]
    return {"metrics": metrics, "epochs": len(history), "wall": wall, "peak_gb": usage.ru_maxrss / 1e6, "plan": plan}


def headline(result: dict) -> str:
    if "error" in result:
        return f"error: {result['error'][:60]}"
    metrics = result["metrics"]
    split = "test" if "test" in metrics else "val"
    figures = metrics[split]
    return f"{figures['accuracy']:.4f} / {figures['macro_f1']:.4f} / {figures['balanced_accuracy']:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", default="defaults")
    parser.add_argument("--time-limit", default="", help="passed to every run (e.g. 4m); empty: the recipe's epochs")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: a new one)")
    parser.add_argument("--details", action="store_true")
    parser.add_argument("--keep", type=Path, help="copy each run's history, config, metrics and predictions here")
    parser.add_argument("--keep-runs", type=Path, help="copy whole run folders here (no checkpoints, logs)")
    parser.add_argument("--json", type=Path, help="write every run's metrics, wall time and peak RSS here")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="recipe options after --")
    args = parser.parse_args()
    options = [o for o in args.options if o != "--"]
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    limits = time_limits(args.time_limit, names)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        env = {**os.environ, "IMAGEFIT_CACHE": str(args.cache or scratch / "cache")}
        results = {}
        for name in names:
            data = SETS[name] or write_subset(scratch / "cifar10-subset.csv")
            limit = ["--time-limit", limits[name]] if limits.get(name) else []
            results[name] = run_one(data, scratch / name, SET_OPTIONS.get(name, []) + options + limit, env)
            if args.keep:
                keep_files(scratch / name, args.keep / name)
            if args.keep_runs and (scratch / name).is_dir():
                ignore = shutil.ignore_patterns("checkpoints", "logs")
                shutil.copytree(scratch / name, args.keep_runs / name, ignore=ignore, dirs_exist_ok=True)
            if "error" not in results[name]:
                results[name]["plain"] = plain_figures(scratch / name)
                results[name]["single"] = plain_figures(scratch / name, single=True)
                results[name]["soup"] = json.loads((scratch / name / "config.json").read_text()).get("soup", {})
            print(f"# {name}: {headline(results[name])} ({results[name].get('wall', 0) / 60:.1f} min)", flush=True)
    if args.json:
        raw = {"label": args.label, "options": options, "time_limit": args.time_limit, "results": results}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    wall = sum(r.get("wall", 0.0) for r in results.values())
    peak = max((r.get("peak_gb", 0.0) for r in results.values()), default=0.0)
    print(f"| variant | {' | '.join(names)} | wall | peak RSS |")
    print(f"|---|{'---|' * len(names)}---|---|")
    cells = " | ".join(headline(results[n]) for n in names)
    print(f"| {args.label} | {cells} | {wall / 60:.1f} min | {peak:.2f} GB |")
    if args.details:
        print(
            "| data | epochs | kept | soup of epochs | kept epoch alone, plain acc | predict with | plain acc / ECE "
            "| chosen acc / ECE | wall | peak RSS |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, result in results.items():
            if "error" in result:
                continue
            metrics = result["metrics"]
            split = "test" if "test" in metrics else "val"
            chosen, plain = metrics[split], result["plain"]
            setting = (
                f"{chosen.get('image_size')} px, {chosen.get('tta_n')} view(s), T {chosen.get('temperature', 1):.2f}"
            )
            soup = "+".join(map(str, result["soup"].get("epochs", []))) or "-"
            alone = f"{result['single']['accuracy']:.4f}" if result["single"] else "= plain"
            print(
                f"| {name} | {result['epochs']} | {metrics.get('best_epoch')} | {soup} | {alone} | {setting} "
                f"| {plain['accuracy']:.4f} / {plain['ece']:.4f} | {chosen['accuracy']:.4f} / {chosen['ece']:.4f} "
                f"| {result['wall'] / 60:.1f} min | {result['peak_gb']:.2f} GB |"
            )
            for line in result["plan"]:
                print(f"<!-- {name}: {line} -->")


def time_limits(text: str, names: list[str]) -> dict[str, str]:
    """'8m' for every set, or 'clothing=8m,digits=4m' per set."""
    if "=" not in text:
        return {name: text for name in names}
    return dict(part.split("=", 1) for part in text.split(",") if part)


def plain_figures(run_dir: Path, *, single: bool = False) -> dict:
    """Headline-split accuracy and ECE with the plain settings: training size, one view, no temperature.

    With `single`, of the kept epoch alone (checkpoints/best.ckpt) when the run kept a soup of epochs;
    an empty dict when it did not.
    """
    import torch

    from imagefit.evaluation.calibration import view_probabilities
    from imagefit.files import cpu_tensors
    from imagefit.models.trained import load_trained
    from imagefit.prediction.batches import map_batches
    from imagefit.prediction.predictors import TorchPredictor
    from imagefit.runs import load_run
    from imagefit.tasks.scores import calibration_error

    run = load_run(run_dir)
    split = "test" if "test" in run.metrics else "val"
    samples = [s for s in run.split() if s.split == split]
    if single:
        if len(run.config.get("soup", {}).get("epochs", [])) < 2:
            return {}
        state = torch.load(run.path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        model = load_trained(run)
        model.load_state_dict(cpu_tensors(state, "model."))
        predictor = TorchPredictor(model.eval(), run.classes, run.train_preprocess)
    else:
        predictor = TorchPredictor.from_run(run.path)
    paths, logits, _ = map_batches(predictor.logits, run.train_preprocess, [s.path for s in samples], average=False)
    truth = {s.path: run.classes.index(s.label) for s in samples}
    targets = [truth[p] for p in paths]
    probabilities = view_probabilities(logits, 1.0)
    accuracy = float((probabilities.argmax(1) == targets).mean())
    return {"accuracy": accuracy, "ece": calibration_error(targets, probabilities)}


if __name__ == "__main__":
    main()
