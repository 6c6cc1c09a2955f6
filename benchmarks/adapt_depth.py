"""How many BatchNorm layers `predict --adapt` should adapt: accuracy on shifted copies by depth.

    python3 benchmarks/adapt_depth.py RUN ../shared/data/clothing-small/test --shifts "none,noise" \
        --depths 0,3,12,24,64 --json results/issue29-adapt-depth.json

For each shift of `shifted_predict.py` and each depth (0: no adaptation), the run's model is loaded
afresh, its first DEPTH BatchNorm layers adapted to the shifted images, and the images predicted with one
view, in this process; accuracy against the class folders.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from shifted_predict import write_shifted

from imagefit.prediction.adapt import adapt_members, batchnorm_layers, reference_moments
from imagefit.prediction.batches import predict_with
from imagefit.prediction.inputs import collect_inputs
from imagefit.prediction.loading import load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--shifts", default="none,grayscale,colour cast,jpeg 20")
    parser.add_argument("--depths", default="0,1,3,6,12,24")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    results: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for shift in [s.strip() for s in args.shifts.split(",")]:
            locators = collect_inputs([write_shifted(args.folder, Path(scratch) / shift.replace(" ", "-"), shift)])
            results[shift] = {}
            for depth in depths:
                predictor = load_predictor(args.run)
                if depth:
                    reference = reference_moments(predictor)
                    adapt_members([predictor], [reference], locators, batch_size=32, threads=0, depth=depth)
                predictions = predict_with(predictor, locators, tta_n=1)
                truth = [Path(p).parent.name for p in predictions.paths]
                accuracy = float(np.mean([a == b for a, b in zip(predictions.labels, truth, strict=True)]))
                results[shift][depth] = accuracy
                layers = len(batchnorm_layers(predictor.model.backbone))
                print(f"{shift}: depth {depth} of {layers}: accuracy {accuracy:.4f}", flush=True)
    print("| shift | " + " | ".join(f"depth {d}" for d in depths) + " |")
    print("|---|" + "---|" * len(depths))
    for shift, row in results.items():
        print(f"| {shift} | " + " | ".join(f"{row[d]:.4f}" for d in depths) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"run": str(args.run), "folder": str(args.folder), "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
