"""Test-time adaptation on shifted copies of a labelled folder: accuracy with and without `predict --adapt`.

    python3 benchmarks/shifted_predict.py RUN ../shared/data/clothing-small/test --json results/tta-clothing.json

Writes shifted copies of every image under FOLDER (class folders) into a scratch folder: unchanged,
grayscale, Gaussian blur (radius 2), a warm colour cast (red x1.25, blue x0.7), JPEG quality 20, dim
(a third of the contrast over a bright floor), Gaussian noise (standard deviation 40 of 255) and heavy blur
(radius 5). Each is predicted by `imagefit predict RUN DIR --out CSV`
in a child process, without and with `--adapt`, one after the other; the row gives accuracy and
macro-F1 against the folder names, the shift and changed predictions that --adapt printed, wall time and
the child's peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps
from sklearn.metrics import accuracy_score, f1_score

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _cast(image: Image.Image) -> Image.Image:
    red, green, blue = image.split()
    return Image.merge("RGB", (red.point(lambda v: min(255, int(v * 1.25))), green, blue.point(lambda v: int(v * 0.7))))


def _noise(image: Image.Image) -> Image.Image:
    """Gaussian pixel noise of standard deviation 40 (of 255), seeded by the picture's size."""
    pixels = np.asarray(image, dtype=np.float32)
    rng = np.random.default_rng(pixels.shape[0] * 7919 + pixels.shape[1])
    return Image.fromarray(np.clip(pixels + rng.normal(0, 40, pixels.shape), 0, 255).astype(np.uint8))


SHIFTS = {
    "none": lambda image: image,
    "grayscale": lambda image: ImageOps.grayscale(image).convert("RGB"),
    "blur": lambda image: image.filter(ImageFilter.GaussianBlur(2)),
    "colour cast": _cast,
    "jpeg 20": None,  # saved at quality 20
    "dim": lambda image: image.point(lambda v: v // 3 + 150),
    "noise": lambda image: _noise(image),
    "heavy blur": lambda image: image.filter(ImageFilter.GaussianBlur(5)),
}


def write_shifted(folder: Path, into: Path, name: str) -> Path:
    """Every image of FOLDER/<class>/ shifted, into INTO/<class>/ (JPEG quality 20 for 'jpeg 20', else PNG)."""
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES):
        image = Image.open(path).convert("RGB")
        target = into / path.parent.name / path.stem
        target.parent.mkdir(parents=True, exist_ok=True)
        if SHIFTS[name] is None:
            image.save(target.with_suffix(".jpg"), quality=20)
        else:
            SHIFTS[name](image).save(target.with_suffix(".png"))
    return into


def predict(run: Path, folder: Path, out: Path, adapt: bool) -> dict:
    """One `imagefit predict` in a child process: accuracy, macro-F1, what --adapt said, wall and peak RSS."""
    command = [sys.executable, "-m", "imagefit.cli", "predict", str(run), str(folder), "--out", str(out), "--full"]
    command += ["--overwrite"] + (["--adapt"] if adapt else [])
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=log, text=True, env={**os.environ, "COLUMNS": "400"}
        )
        _, status, usage = os.wait4(process.pid, 0)
        log.seek(0)
        said = [line for line in log.read().splitlines() if line.startswith("adapt:")]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    truth = [Path(row["path"]).parent.name for row in rows]
    labels = [row["Category"] for row in rows]
    return {
        "accuracy": accuracy_score(truth, labels),
        "macro_f1": f1_score(truth, labels, average="macro"),
        "said": said[0] if said else "",
        "wall": time.perf_counter() - started,
        "peak_gb": usage.ru_maxrss / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("folder", type=Path, help="a labelled folder of class folders (a test split)")
    parser.add_argument("--shifts", default=",".join(SHIFTS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    print("| shift | accuracy / macro-F1 | with --adapt | --adapt said | wall plain / adapt | peak RSS plain / adapt |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for name in [s.strip() for s in args.shifts.split(",")]:
            folder = write_shifted(args.folder, Path(scratch) / name.replace(" ", "-"), name)
            plain = predict(args.run, folder, Path(scratch) / "plain.csv", adapt=False)
            adapted = predict(args.run, folder, Path(scratch) / "adapted.csv", adapt=True)
            results[name] = {"plain": plain, "adapt": adapted}
            said = adapted["said"].removeprefix("adapt: ")
            print(
                f"| {name} | {plain['accuracy']:.4f} / {plain['macro_f1']:.4f} | {adapted['accuracy']:.4f} / "
                f"{adapted['macro_f1']:.4f} | {said} | {plain['wall']:.1f} / {adapted['wall']:.1f} s | "
                f"{plain['peak_gb']:.2f} / {adapted['peak_gb']:.2f} GB |",
                flush=True,
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"run": str(args.run), "folder": str(args.folder), "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
