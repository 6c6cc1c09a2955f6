"""Prediction images/s of a run: PyTorch eager vs ONNX Runtime, side by side in one process, decode included.

    python3 benchmarks/predict_speed.py runs/clothing-bench ../shared/data/clothing-small/test

Both paths use the same decode and preprocessing (a thread pool beside the model) and batch 32;
each is timed twice after a warm-up batch and the faster pass is kept. Also checks that the two
agree (largest probability difference, share of equal top-1).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from imagefit.export.onnx import export_onnx
from imagefit.prediction.batches import predict_with
from imagefit.prediction.inputs import collect_inputs
from imagefit.prediction.onnx import OnnxPredictor
from imagefit.prediction.predictors import TorchPredictor


def _best_rate(predictor, locators: list[str]) -> tuple[float, np.ndarray]:
    predict_with(predictor, locators[:32])  # warm-up
    best, probabilities = 0.0, None
    for _ in range(2):
        started = time.perf_counter()
        probabilities = predict_with(predictor, locators).probabilities
        best = max(best, len(locators) / (time.perf_counter() - started))
    return best, probabilities


def main(run_dir: str, images: str) -> None:
    run_path = Path(run_dir)
    onnx_path = run_path / "model.onnx"
    if not onnx_path.exists():
        export_onnx(run_path)
    locators = collect_inputs([Path(images)])
    torch_rate, torch_probabilities = _best_rate(TorchPredictor.from_run(run_path), locators)
    onnx_rate, onnx_probabilities = _best_rate(OnnxPredictor.from_file(onnx_path), locators)
    agree = (torch_probabilities.argmax(1) == onnx_probabilities.argmax(1)).mean()
    difference = np.abs(torch_probabilities - onnx_probabilities).max()
    print(f"images: {len(locators)}")
    print("| backend | images/s | ratio |")
    print("|---|---|---|")
    print(f"| PyTorch eager (channels_last) | {torch_rate:.1f} | 1.00 |")
    print(f"| ONNX Runtime | {onnx_rate:.1f} | {onnx_rate / torch_rate:.2f} |")
    print(f"top-1 agreement {agree:.4f}, largest probability difference {difference:.2e}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
