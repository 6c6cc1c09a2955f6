"""`imagefit export RUN --int8`: the exported graph quantized to int8 by ONNX Runtime, checked against the float one.

Static quantization (`onnxruntime.quantization.quantize_static`): QDQ format, int8 weights per channel,
uint8 activations (the U8S8 pair ONNX Runtime's x86 kernels run fastest), activation ranges calibrated
(min-max) on CALIBRATION training images of the run, preprocessed as prediction does. The float graph is
exported first (`export_onnx`), so the temperature, the mirrored view and the embedding are inside as
there. The int8 graph then predicts the run's val images beside the float one: when fewer than
MIN_AGREEMENT of the top-1 predictions agree, the int8 file is removed and the export refused in one
line; else both accuracies are said and kept in the facts JSON beside the graph (`int8`).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagefit.errors import UserError
from imagefit.files import refuse_overwrite, write_json
from imagefit.runs import load_run, read_json

CALIBRATION = 256  # training images that calibrate the activation ranges
MIN_AGREEMENT = 0.99  # share of val images whose int8 top-1 must equal the float graph's


@dataclass
class Int8Check:
    """How the int8 graph compares with the float one on the run's val images."""

    images: int
    agreement: float
    float_accuracy: float
    int8_accuracy: float
    calibration: int
    of: str = "model"  # what was quantized: "model", or "ensemble" (export.ensembles)

    def to_dict(self) -> dict:
        return {
            "val_images": self.images,
            "top1_agreement": self.agreement,
            "val_accuracy_float": self.float_accuracy,
            "val_accuracy_int8": self.int8_accuracy,
            "calibration_images": self.calibration,
        }

    def line(self) -> str:
        return (
            f"int8: top-1 agrees with the float {self.of} on {self.agreement:.1%} of {self.images} val images; "
            f"val accuracy {self.int8_accuracy:.4f} (float {self.float_accuracy:.4f}); calibrated on "
            f"{self.calibration} training images"
        )


def export_int8(
    run_path: str | Path, *, out: str | Path | None = None, calibration: int = CALIBRATION, overwrite: bool = False
) -> tuple[Path, Int8Check]:
    """Write RUN/model.int8.onnx (or OUT) with its facts JSON and unknown index beside it; the check it passed."""
    from imagefit.export.onnx import export_onnx

    run = load_member_run(run_path, "--int8")
    target = Path(out) if out else run.files.onnx.with_name("model.int8.onnx")
    if target.suffix.lower() != ".onnx":
        raise UserError(f"{target}: the output name must end in .onnx")
    chosen, val = calibration_images(run, calibration)
    for written in (target, target.with_suffix(".json")):
        refuse_overwrite(written, overwrite=overwrite)
    with tempfile.TemporaryDirectory() as scratch:
        float_path = export_onnx(run.path, out=Path(scratch) / "model.onnx")
        quantize_onnx(float_path, target, chosen)
        facts = copy_facts(float_path, target)
        check = compare(float_path, target, val, len(chosen))
    return target, settle(check, facts, [target], calibration)


def load_member_run(run_path: str | Path, option: str):
    """The run at RUN_PATH; an ensemble folder is refused in one line naming what exports it (export.ensembles)."""
    from imagefit.prediction.ensembles import is_ensemble

    if is_ensemble(run_path):
        raise UserError(
            f"{run_path} is an ensemble: {option} here exports one run at a time; `imagefit export {run_path} "
            f"{option}` (imagefit.export_ensemble) exports it member by member and checks the whole"
        )
    return load_run(Path(run_path))


def calibration_images(run, calibration: int) -> tuple[list[str], list[tuple[str, str]]]:
    """CALIBRATION training images of RUN (a seeded sample, sorted) and its val images as (path, label)."""
    if calibration < 1:
        raise UserError(f"--int8-calibration must be at least 1, got {calibration}")
    samples = run.split()
    train = [s.path for s in samples if s.split == "train"]
    val = [(s.path, s.label) for s in samples if s.split == "val"]
    return sorted(random.Random(0).sample(train, min(calibration, len(train)))), val


def copy_facts(float_path: Path, target: Path) -> dict:
    """The float graph's facts JSON and unknown index beside TARGET, renamed after it; the facts. (TARGET named
    as the graph, beside it, as RUN/model.xml is beside RUN/model.onnx: the same files, left as they are.)"""
    facts = read_json(float_path.with_suffix(".json"))
    index = facts.get("unknown", {}).get("index")
    if index:
        renamed = f"{target.stem}.{index.split('.', 1)[1]}"
        if float_path.with_name(index).resolve() != target.with_name(renamed).resolve():
            shutil.copyfile(float_path.with_name(index), target.with_name(renamed))
        facts["unknown"]["index"] = renamed
    write_json(target.with_suffix(".json"), facts)
    return facts


def settle(check: Int8Check, facts: dict, written: list[Path], calibration: int) -> Int8Check:
    """Refuse (the WRITTEN files removed) when the int8 model agrees with the float one on too few val images;
    else keep the check in the facts JSON beside the first written file."""
    refuse_below_floor(check, written, calibration)
    write_json(written[0].with_suffix(".json"), {**facts, "int8": check.to_dict()})
    return check


def refuse_below_floor(check: Int8Check, written: list[Path], calibration: int) -> None:
    """Remove the WRITTEN files and refuse in one line when the int8 model (or ensemble) agrees with its float form
    on fewer than MIN_AGREEMENT of the val images."""
    if check.images and check.agreement < MIN_AGREEMENT:
        for path in written:
            path.unlink(missing_ok=True)
        raise UserError(
            f"the int8 {check.of} agrees with the float one on only {check.agreement:.1%} of val images (at least "
            f"{MIN_AGREEMENT:.0%} wanted): try more calibration images (--int8-calibration {calibration * 4}) or "
            "export without --int8"
        )


def quantize_onnx(float_path: Path, target: Path, locators: list[str]) -> None:
    """FLOAT_PATH quantized by ONNX Runtime (static, QDQ, per-channel) into TARGET, calibrated on LOCATORS."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = calibration_batches(float_path, locators)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.pending = iter(batches)

        def get_next(self):
            batch = next(self.pending, None)
            return None if batch is None else {"images": batch}

    prepared = float_path.with_name("prepared.onnx")
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def calibration_batches(float_path: Path, locators: list[str]) -> list[np.ndarray]:
    """LOCATORS preprocessed as the graph at FLOAT_PATH predicts, in batches of 16."""
    from imagefit.prediction.batches import map_batches
    from imagefit.prediction.onnx import OnnxPredictor

    preprocess = OnnxPredictor.from_file(float_path).preprocess
    batches: list[np.ndarray] = []

    def keep(batch: np.ndarray) -> np.ndarray:
        batches.append(batch)
        return np.zeros((len(batch), 1), np.float32)

    map_batches(keep, preprocess, locators, batch_size=16)
    if not batches:
        raise UserError("no training image could be read to calibrate the int8 model; put the run's data back")
    return batches


def compare(float_path: Path, int8_path: Path, val: list[tuple[str, str]], calibration: int) -> Int8Check:
    """Top-1 agreement and accuracy of both graphs on VAL (path, label): each batch decoded once, run through both."""
    from imagefit.prediction.onnx import OnnxPredictor

    first, second = (OnnxPredictor.from_file(path) for path in (float_path, int8_path))
    paths, before, after = compare_probabilities(first, second, [p for p, _ in val])
    if not paths:
        return Int8Check(0, 1.0, float("nan"), float("nan"), calibration)
    float_labels, int8_labels = (first.task.decide(p, first.classes, first.thresholds) for p in (before, after))
    agreement = float(np.mean([a == b for a, b in zip(float_labels, int8_labels, strict=True)]))
    truth = dict(val)

    def accuracy(labels: list[str]) -> float:
        return float(np.mean([label == truth[p] for p, label in zip(paths, labels, strict=True)]))

    return Int8Check(len(paths), agreement, accuracy(float_labels), accuracy(int8_labels), calibration)


def compare_probabilities(float_graph, int8_graph, locators: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The images of LOCATORS that could be read, and both loaded graphs' (OnnxPredictor) probabilities for them,
    each image decoded once at the float graph's preprocessing."""
    from imagefit.prediction.batches import map_batches

    graphs = [float_graph, int8_graph]
    paths, both, _ = map_batches(
        lambda batch: np.concatenate([graph.probabilities(batch) for graph in graphs], axis=1),
        graphs[0].preprocess,
        locators,
    )
    count = len(graphs[0].classes)
    if not paths:
        return [], np.zeros((0, count)), np.zeros((0, count))
    return paths, both[:, :count], both[:, count:]
