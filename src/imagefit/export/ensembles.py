"""`imagefit export ENS --int8` and `--format openvino` for an ensemble folder: one graph per member, checked whole.

The float ONNX form of an ensemble is one graph per member and ensemble.json (export.onnx); this module writes the
other forms the same way: each member's graph as OpenVINO IR (float, or int8 by NNCF) or as ONNX Runtime's int8,
into ENS/openvino, ENS/openvino-int8 or ENS/onnx-int8, with an ensemble.json that `imagefit predict`, `serve` and
`evaluate ENS --model` read as they read the float one. An int8 form is checked on what is shipped,
the ensemble: its top-1 agreement with the float ensemble on the members' shared val images must reach
int8.MIN_AGREEMENT, or every file written is removed and the export refused in one line. Averaging members
smooths each one's rounding, so an ensemble can pass where a member alone would not (each member's own agreement
is recorded beside it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from imagefit.errors import UserError
from imagefit.export.int8 import (
    CALIBRATION,
    Int8Check,
    calibration_images,
    compare_probabilities,
    copy_facts,
    quantize_onnx,
    refuse_below_floor,
)
from imagefit.export.onnx import export_onnx
from imagefit.export.openvino import check_against_onnx, write_ir
from imagefit.files import output_folder, refuse_overwrite, write_json
from imagefit.prediction.onnx import OnnxPredictor
from imagefit.runs import load_run

FORMATS = ("onnx", "openvino")


def export_ensemble(
    path: str | Path,
    *,
    fmt: str = "openvino",
    int8: bool = False,
    out: str | Path | None = None,
    calibration: int = CALIBRATION,
    overwrite: bool = False,
) -> tuple[Path, Int8Check | None]:
    """The ensemble at PATH exported member by member in FMT (int8: quantized, the whole checked on val) into OUT
    (default ENS/<fmt>[-int8]); the path of its ensemble.json, and the int8 check it passed (None for float)."""
    from imagefit.prediction.ensembles import load_ensemble

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt} is not supported; use --format onnx or --format openvino")
    path = Path(path)
    if fmt == "onnx" and not int8:
        return export_onnx(path, out=out, overwrite=overwrite), None
    ensemble = load_ensemble(path)
    folder = output_folder(Path(out) if out else path / f"{fmt}{'-int8' if int8 else ''}")
    facts_path = folder / "ensemble.json"
    refuse_overwrite(facts_path, overwrite=overwrite)
    members, written, graphs = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for index, (member, weight) in enumerate(zip(ensemble.members, ensemble.weights, strict=True), start=1):
            target = folder / f"member-{index}{'.int8' if int8 else ''}{'.xml' if fmt == 'openvino' else '.onnx'}"
            graph = export_onnx(member, out=Path(scratch) / f"member-{index}.onnx")
            written += _write_member(graph, target, load_run(member), fmt=fmt, int8=int8, calibration=calibration,
                                     overwrite=overwrite)  # fmt: skip
            members.append({"file": target.name, "weight": weight, "run": str(member)})
            graphs.append((graph, target))
        facts = {"kind": "onnx-ensemble", "classes": ensemble.classes, "members": members}
        check = None
        if int8:
            val = [(s.path, s.label) for s in ensemble.split() if s.split == "val"]
            check, agreements = compare_ensembles(graphs, ensemble.weights, val, calibration)
            refuse_below_floor(check, written, calibration)
            facts["int8"] = check.to_dict() | {"members_top1_agreement": agreements}
    write_json(facts_path, facts)
    return facts_path, check


def _write_member(graph: Path, target: Path, run, *, fmt: str, int8: bool, calibration: int, overwrite: bool):
    """One member's GRAPH written as TARGET in FMT (int8: calibrated on its own training images); the files written."""
    files = [target, target.with_suffix(".json")] + ([target.with_suffix(".bin")] if fmt == "openvino" else [])
    for file in files:
        refuse_overwrite(file, overwrite=overwrite)
    chosen = calibration_images(run, calibration)[0] if int8 else []
    if fmt == "openvino":
        write_ir(graph, target, chosen)
    else:
        quantize_onnx(graph, target, chosen)
    facts = copy_facts(graph, target)
    if fmt == "openvino" and not int8:
        check_against_onnx(graph, target)
    index = facts.get("unknown", {}).get("index")
    return files + ([target.with_name(index)] if index else [])


def compare_ensembles(
    graphs: list[tuple[Path, Path]], weights: list[float], val: list[tuple[str, str]], calibration: int
) -> tuple[Int8Check, list[float]]:
    """The int8 ensemble against the float one on VAL (path, label): the check of the whole (top-1 agreement and both
    accuracies), and each member's own top-1 agreement. Each member's pair of graphs sees each image decoded once."""
    locators, totals, agreements, paths = [p for p, _ in val], [0.0, 0.0], [], None
    for pair, weight in zip(graphs, weights, strict=True):
        predictors = [OnnxPredictor.from_file(path) for path in pair]
        read, before, after = compare_probabilities(*predictors, locators)
        if paths is not None and read != paths:
            raise UserError("the members read different val images: put every member's images back, then export")
        paths = read
        agreements.append(float(np.mean(before.argmax(axis=1) == after.argmax(axis=1))) if read else 1.0)
        totals = [totals[0] + weight * before, totals[1] + weight * after]
    if not paths:
        return Int8Check(0, 1.0, float("nan"), float("nan"), calibration), agreements
    classes = np.array(predictors[0].classes)
    truth = np.array([dict(val)[p] for p in paths])
    float_labels, int8_labels = (classes[np.asarray(total).argmax(axis=1)] for total in totals)
    agreement = float(np.mean(float_labels == int8_labels))
    accuracy = (float(np.mean(float_labels == truth)), float(np.mean(int8_labels == truth)))
    return Int8Check(len(paths), agreement, *accuracy, calibration, of="ensemble"), agreements
