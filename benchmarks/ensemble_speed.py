"""Prediction images/s and test accuracy of an ensemble folder (`--quality best`) on each backend, side by side.

    python3 benchmarks/ensemble_speed.py ENS ../shared/data/clothing-small/test --json results/F.json --calibration 1024

Every member is exported as `imagefit export` does (its prediction settings inside its graph), and the ensemble
as `imagefit export ENS --format openvino --int8` does (each member quantized by NNCF, the ensemble checked whole
on val; the check printed); the ensemble then predicts every image
under FOLDER (class folders) as `imagefit predict ENS` does (each member decodes and predicts, then the weighted
mean of their probabilities), with the members in PyTorch eager (at their own views, and at one view), ONNX
Runtime fp32, OpenVINO fp32 and OpenVINO int8. Batch 32, decode included, each timed twice after a warm-up
batch, the faster pass kept (int8_speed.measure).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from int8_speed import measure, openvino, print_table  # noqa: E402

from imagefit.errors import UserError  # noqa: E402
from imagefit.export.ensembles import export_ensemble  # noqa: E402
from imagefit.export.onnx import export_onnx  # noqa: E402
from imagefit.prediction.ensembles import EnsemblePredictor, load_ensemble  # noqa: E402
from imagefit.prediction.inputs import collect_inputs  # noqa: E402
from imagefit.prediction.onnx import OnnxPredictor  # noqa: E402


class OneView(EnsemblePredictor):
    """The eager ensemble with every member at one view (the plain image, no mirror)."""

    def __init__(self, ensemble: EnsemblePredictor) -> None:
        super().__init__(ensemble.members, ensemble.weights, ensemble.classes)
        for member in self.members:
            member.tta_n = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ensemble", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--calibration", type=int, default=256, help="training images NNCF calibrates each member on")
    args = parser.parse_args()
    locators = collect_inputs([args.folder])
    ensemble = load_ensemble(args.ensemble)
    with tempfile.TemporaryDirectory() as scratch:
        graphs = [export_onnx(member, out=Path(scratch) / f"m{i}.onnx") for i, member in enumerate(ensemble.members)]
        checks: dict = {}
        try:  # `imagefit export ENS --format openvino --int8`: every member quantized, the ensemble checked whole
            facts, check = export_ensemble(
                args.ensemble, fmt="openvino", int8=True, out=Path(scratch) / "int8", calibration=args.calibration
            )
            checks = json.loads(facts.read_text())["int8"]
            print("ensemble NNCF", check.line(), "members", checks["members_top1_agreement"], flush=True)
        except UserError as refused:  # under the 99 % floor: the ensemble has no int8 form to time
            facts, checks = None, {"refused": str(refused)}
            print("ensemble NNCF refused:", refused, flush=True)

        def of(members: list) -> EnsemblePredictor:
            return EnsemblePredictor(members, ensemble.weights, ensemble.classes)

        results = {"pytorch eager": measure(EnsemblePredictor.from_folder(args.ensemble), locators)}
        results["pytorch eager, one view"] = measure(OneView(EnsemblePredictor.from_folder(args.ensemble)), locators)
        results["onnx fp32"] = measure(of([OnnxPredictor.from_file(g) for g in graphs]), locators)
        results["openvino fp32"] = measure(of([openvino(g, "f32") for g in graphs]), locators)
        if facts is not None:
            files = [facts.parent / m["file"] for m in json.loads(facts.read_text())["members"]]
            results["openvino int8 (NNCF)"] = measure(of([openvino(f, "f32") for f in files]), locators)
    print(f"{len(locators)} images, {len(ensemble.members)} members")
    print_table(results)
    if args.json:
        raw = {name: {k: v for k, v in row.items() if k != "labels"} for name, row in results.items()}
        raw["nncf_int8_check"] = checks
        raw["calibration"] = args.calibration
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
