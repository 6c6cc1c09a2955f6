"""Prediction images/s and test accuracy: PyTorch eager, ONNX Runtime and OpenVINO (fp32, int8; OpenVINO bf16 too),
side by side in one process.

    python3 benchmarks/int8_speed.py RUN ../shared/data/clothing-small/test --json results/issue30-int8-clothing.json

Exports RUN's float graph and quantizes it as `export --int8` does into a scratch folder (its val check is
printed, and the graph kept even where the export would refuse it), then predicts every image under
FOLDER (class folders) with each, at the run's prediction settings (its evaluation size and views; the
mirror is inside the graphs), batch 32, decode included in a thread pool beside the model; each timed
twice after a warm-up batch, the faster pass kept. OpenVINO reads the same ONNX files: float32 arithmetic
(imagefit's setting), bfloat16 (OpenVINO's own default on CPUs with bf16 units), and the int8 QDQ graph.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from imagefit.errors import UserError
from imagefit.export import int8
from imagefit.export.onnx import export_onnx
from imagefit.export.openvino import export_openvino
from imagefit.prediction.batches import predict_with
from imagefit.prediction.inputs import collect_inputs
from imagefit.prediction.onnx import OnnxPredictor
from imagefit.prediction.openvino import OpenVinoSession
from imagefit.prediction.predictors import TorchPredictor
from imagefit.runs import load_run

NNCF_ROW = "openvino int8 (export --format openvino --int8, NNCF)"


def measure(predictor, locators: list[str]) -> dict:
    predict_with(predictor, locators[:32])  # warm-up
    best, predictions = 0.0, None
    for _ in range(2):
        started = time.perf_counter()
        predictions = predict_with(predictor, locators)
        best = max(best, len(locators) / (time.perf_counter() - started))
    truth = [Path(p).parent.name for p in predictions.paths]
    accuracy = float(np.mean([a == b for a, b in zip(predictions.labels, truth, strict=True)]))
    return {"images_per_s": best, "accuracy": accuracy, "labels": predictions.labels}


def openvino(path: Path, precision: str) -> OnnxPredictor:
    """The graph at PATH in OpenVINO at PRECISION (f32 is what `--backend openvino` uses)."""
    predictor = OnnxPredictor.from_file(path, runtime="openvino")
    predictor.session = OpenVinoSession(path, precision=precision)
    return predictor


def print_table(results: dict, sizes: dict | None = None) -> None:
    """One markdown row a backend: images/s, against eager, test accuracy, top-1 agreement with eager (file size)."""
    base = results["pytorch eager"]
    header = "| backend | images/s | x eager | test accuracy | top-1 agreement with eager |"
    print(header + (" file |" if sizes else ""))
    print("|---|---|---|---|---|" + ("---|" if sizes else ""))
    for name, row in results.items():
        agree = float(np.mean([a == b for a, b in zip(row["labels"], base["labels"], strict=True)]))
        size = (f" {sizes[name] / 1e6:.1f} MB |" if name in sizes else " - |") if sizes else ""
        print(
            f"| {name} | {row['images_per_s']:.1f} | {row['images_per_s'] / base['images_per_s']:.2f} | "
            f"{row['accuracy']:.4f} | {agree:.4f} |{size}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    locators = collect_inputs([args.folder])
    with tempfile.TemporaryDirectory() as scratch:
        float_path = export_onnx(args.run, out=Path(scratch) / "model.onnx")
        # quantized and checked as `export --int8` does, but kept whatever the check says, to measure it
        int8_path = Path(scratch) / "model.int8.onnx"
        samples = load_run(args.run).split()
        train = sorted(s.path for s in samples if s.split == "train")
        chosen = sorted(random.Random(0).sample(train, min(args.calibration, len(train))))
        int8._quantize(float_path, int8_path, chosen)
        shutil.copyfile(float_path.with_suffix(".json"), int8_path.with_suffix(".json"))
        check = int8.compare(
            float_path, int8_path, [(s.path, s.label) for s in samples if s.split == "val"], len(chosen)
        )
        print(
            check.line(),
            "(export --int8 refuses under 99 %)" if check.agreement < int8.MIN_AGREEMENT else "",
            flush=True,
        )
        sizes = {"onnx fp32": float_path.stat().st_size, "onnx int8": int8_path.stat().st_size}
        sizes.update({"openvino fp32": sizes["onnx fp32"], "openvino bf16": sizes["onnx fp32"]})
        sizes["openvino int8 (the ONNX Runtime QDQ graph)"] = sizes["onnx int8"]
        try:
            nncf_out = Path(scratch) / "nncf" / "model.int8.xml"
            nncf_path, nncf_check = export_openvino(args.run, out=nncf_out, int8=True, calibration=args.calibration)
        except UserError as refused:  # under the 99 % floor: the export refuses, so there is no such file to time
            nncf_path, nncf_check = None, {"refused": str(refused)}
            print("NNCF refused:", refused, flush=True)
        else:
            print("NNCF", nncf_check.line(), flush=True)
            nncf_check = nncf_check.to_dict()
            sizes[NNCF_ROW] = nncf_path.with_suffix(".bin").stat().st_size
        results = {
            "pytorch eager": measure(TorchPredictor.from_run(args.run), locators),
            "onnx fp32": measure(OnnxPredictor.from_file(float_path), locators),
            "onnx int8": measure(OnnxPredictor.from_file(int8_path), locators),
            "openvino fp32": measure(openvino(float_path, "f32"), locators),
            "openvino bf16": measure(openvino(float_path, "bf16"), locators),
            "openvino int8 (the ONNX Runtime QDQ graph)": measure(openvino(int8_path, "f32"), locators),
        }
        if nncf_path is not None:
            results[NNCF_ROW] = measure(openvino(nncf_path, "f32"), locators)
    print(f"{len(locators)} images")
    print_table(results, sizes)
    if args.json:
        raw = {name: {k: v for k, v in row.items() if k != "labels"} for name, row in results.items()}
        raw["int8_check"], raw["sizes"] = check.to_dict(), sizes
        raw["nncf_int8_check"] = nncf_check
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
