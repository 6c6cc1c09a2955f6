"""int8 by NNCF (OpenVINO's post-training quantizer) against ONNX Runtime's, on a run's val images.

    python3 benchmarks/int8_nncf.py RUN SCRATCH --json results/issue30-int8-nncf.json

Exports RUN's float graph into SCRATCH, quantizes it with ONNX Runtime as `export --int8` does, and with
NNCF (`nncf.quantize` on the OpenVINO model, presets performance and mixed, on the same 256 training
images), then compares each with the float graph on val the way the export's check does: top-1 agreement
and accuracy. The NNCF models run in OpenVINO (float32 hint), the ONNX Runtime one in ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np

from imagefit.export import int8
from imagefit.export.int8 import calibration_batches
from imagefit.export.onnx import export_onnx
from imagefit.runs import load_run


def nncf_int8(float_path: Path, target: Path, batches: list[np.ndarray], preset: str, **options) -> float:
    import nncf
    import openvino as ov

    started = time.perf_counter()
    model = ov.convert_model(str(float_path))
    dataset = nncf.Dataset(batches, lambda batch: {"images": batch})
    chosen = nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    quantized = nncf.quantize(model, dataset, preset=chosen, subset_size=len(batches), **options)
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    shutil.copyfile(float_path.with_suffix(".json"), target.with_suffix(".json"))
    return time.perf_counter() - started


def nncf_onnx_int8(float_path: Path, target: Path, batches: list[np.ndarray], **options) -> float:
    """NNCF on the ONNX graph itself: a QDQ ONNX file that ONNX Runtime runs."""
    import nncf
    import onnx

    started = time.perf_counter()
    dataset = nncf.Dataset(batches, lambda batch: {"images": batch})
    quantized = nncf.quantize(onnx.load(str(float_path)), dataset, subset_size=len(batches), **options)
    onnx.save(quantized, str(target))
    shutil.copyfile(float_path.with_suffix(".json"), target.with_suffix(".json"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("scratch", type=Path)
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    samples = load_run(args.run).split()
    train = sorted(s.path for s in samples if s.split == "train")
    val = [(s.path, s.label) for s in samples if s.split == "val"]
    chosen = sorted(random.Random(0).sample(train, min(args.calibration, len(train))))
    float_path = export_onnx(args.run, out=args.scratch / "model.onnx", overwrite=True)
    rows = {}
    started = time.perf_counter()
    ort_path = args.scratch / "model.int8.onnx"
    int8._quantize(float_path, ort_path, chosen)
    shutil.copyfile(float_path.with_suffix(".json"), ort_path.with_suffix(".json"))
    rows["onnxruntime static QDQ (export --int8)"] = (time.perf_counter() - started, ort_path)
    batches = calibration_batches(float_path, chosen)
    for preset in ("performance", "mixed"):
        target = args.scratch / f"model.nncf-{preset}.xml"
        rows[f"nncf {preset}, OpenVINO"] = (nncf_int8(float_path, target, batches, preset), target)
    target = args.scratch / "model.nncf-bias.xml"
    seconds = nncf_int8(float_path, target, batches, "performance", fast_bias_correction=False)
    rows["nncf performance, full bias correction, OpenVINO"] = (seconds, target)
    for fast in (True, False):
        target = args.scratch / f"model.nncf-onnx-{fast}.onnx"
        seconds = nncf_onnx_int8(float_path, target, batches, fast_bias_correction=fast)
        rows[f"nncf on the ONNX graph{'' if fast else ', full bias correction'}, ONNX Runtime"] = (seconds, target)
    more = sorted(random.Random(0).sample(train, min(4 * args.calibration, len(train))))
    target = args.scratch / "model.nncf-more.xml"
    rows[f"nncf performance, {len(more)} calibration images, OpenVINO"] = (
        nncf_int8(float_path, target, calibration_batches(float_path, more), "performance"),
        target,
    )
    raw = {}
    for name, (seconds, path) in rows.items():
        check = int8.compare(float_path, path, val, len(chosen))
        raw[name] = {**check.to_dict(), "quantize_seconds": round(seconds, 1)}
        print(
            f"| {name} | {check.agreement:.4f} | {check.float_accuracy:.4f} | {check.int8_accuracy:.4f} | "
            f"{seconds:.0f} s |",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
