"""Time to accuracy: `imagefit train` (defaults) against a plain fine-tuning loop, side by side in one run.

    python3 benchmarks/speed_vs_baseline.py ../shared/data/clothing-small --baseline-epochs 4

DATA must hold train/ and test/ class folders (imagefit also uses validation/ when present; the
plain loop has no use for it). Each side runs in its own child process of this command, one
after the other on the same machine. Test accuracy is measured after every epoch with the
clock paused, so evaluation is charged to neither side; imagefit's last point is the model it
kept, at the wall time of the whole `imagefit.train` call (scan, features, training, final
evaluation and report). Prints the ratio "imagefit time to reach the loop's final test
accuracy / the loop's wall time" and writes OUT/curves.json and OUT/accuracy_vs_time.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Clock:
    """Wall-clock seconds since start, minus the time spent inside `paused()`."""

    def __init__(self):
        self.started = time.perf_counter()
        self.excluded = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.started - self.excluded

    def pause(self):
        clock = self

        class _Paused:
            def __enter__(self):
                self.at = time.perf_counter()

            def __exit__(self, *exc):
                clock.excluded += time.perf_counter() - self.at

        return _Paused()


def _classes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def part_baseline(data: Path, epochs: int, out: Path) -> None:
    sys.path.insert(0, str(HERE))
    from baseline_loop import accuracy, run_baseline, test_loader

    loader = test_loader(data / "test", _classes(data / "train"))
    points = []
    clock = Clock()

    def checkpoint(epoch, model):
        seconds = clock.now()
        with clock.pause():
            points.append({"epoch": epoch, "seconds": round(seconds, 1), "test_accuracy": accuracy(model, loader)})
            print(f"baseline epoch {epoch}: {points[-1]}", flush=True)
            out.write_text(json.dumps(points, indent=1))

    run_baseline(data / "train", epochs=epochs, checkpoint=checkpoint)


def part_imagefit(data: Path, out: Path, options: list[str]) -> None:
    import lightning as L
    import torch

    import imagefit
    from imagefit.cli import parse_overrides

    points = []
    clock = Clock()

    def probe(trainer, module, label):
        seconds = clock.now()
        with clock.pause():
            was_training = module.training
            module.eval()
            correct = total = 0
            with torch.no_grad():
                for images, targets in trainer.datamodule.eval_loader("test"):
                    correct += int((module(images).argmax(1) == targets).sum())
                    total += len(targets)
            module.train(was_training)
            points.append({"epoch": label, "seconds": round(seconds, 1), "test_accuracy": correct / total})
            print(f"imagefit {label}: {points[-1]}", flush=True)

    class TestProbe(L.Callback):
        def on_train_start(self, trainer, module):
            probe(trainer, module, "after head")

        def on_validation_end(self, trainer, module):
            probe(trainer, module, f"epoch {trainer.current_epoch + 1} of fine-tuning")

    with tempfile.TemporaryDirectory() as scratch:
        run = imagefit.train(data, out=Path(scratch) / "run", callbacks=[TestProbe()], **parse_overrides(options))
        seconds = clock.now()
        final = run.metrics["test"]["accuracy"]
    points.append({"epoch": "kept model", "seconds": round(seconds, 1), "test_accuracy": final})
    out.write_text(json.dumps(points, indent=1))


def time_to_reach(points: list[dict], target: float) -> float | None:
    return next((p["seconds"] for p in points if p["test_accuracy"] >= target), None)


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        axes.plot([p["seconds"] / 60 for p in points], [p["test_accuracy"] for p in points], marker="o", label=name)
    axes.set_xlabel("wall-clock minutes (test evaluation excluded)")
    axes.set_ylabel("test accuracy")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--baseline-epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/speed_vs_baseline"))
    parser.add_argument("--part", choices=["baseline", "imagefit"], help=argparse.SUPPRESS)
    parser.add_argument("--points", type=Path, help=argparse.SUPPRESS)
    args, imagefit_options = parser.parse_known_args()
    if args.part == "baseline":
        return part_baseline(args.data, args.baseline_epochs, args.points)
    if args.part == "imagefit":
        return part_imagefit(args.data, args.points, imagefit_options)
    args.out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for part in ("imagefit", "baseline"):
        points = args.out / f"{part}.json"
        command = [sys.executable, __file__, str(args.data), "--part", part, "--points", str(points)]
        command += ["--baseline-epochs", str(args.baseline_epochs), *imagefit_options]
        subprocess.run(command, check=True)
        curves[part] = json.loads(points.read_text())
    baseline, ours = curves["baseline"], curves["imagefit"]
    target = baseline[-1]["test_accuracy"]
    reached = time_to_reach(ours, target)
    summary = {
        "baseline_final_accuracy": target,
        "baseline_seconds": baseline[-1]["seconds"],
        "imagefit_final_accuracy": ours[-1]["test_accuracy"],
        "imagefit_seconds": ours[-1]["seconds"],
        "imagefit_seconds_to_baseline_accuracy": reached,
        "ratio": None if reached is None else round(reached / baseline[-1]["seconds"], 3),
    }
    labels = {"imagefit": "imagefit train (defaults)", "baseline": f"plain loop ({args.baseline_epochs} epochs)"}
    (args.out / "curves.json").write_text(json.dumps({"curves": curves, "summary": summary}, indent=1))
    plot({labels[k]: v for k, v in curves.items()}, args.out / "accuracy_vs_time.png")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
