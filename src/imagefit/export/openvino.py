"""Export a run's model as OpenVINO IR (`.xml` + `.bin`), from its ONNX graph, checked against ONNX Runtime;
with `int8`, quantized by NNCF and checked against the float graph on val as `export --int8` is.

The IR holds the same graph as model.onnx (the temperature and the mirrored view inside), with float32
weights (`compress_to_fp16=False`: OpenVINO's default halves the file by storing float16 weights, which
changes the outputs); the facts JSON and the unknown index sit beside it, named after it, so
`imagefit predict RUN/model.xml` and `imagefit serve RUN/model.xml` read it as they read the ONNX file.

int8 (RUN/model.openvino-int8.xml): NNCF's post-training quantization (OpenVINO's own quantizer; preset
performance: symmetric int8 weights and activations) calibrated on the run's training images, with its full
bias correction (the fast one is the default there): on a lite1 clothing-small run top-1 agreed with the
float graph on 99.1 % of val images against 98.2 % with the fast correction and 88.6 % with ONNX Runtime's
static quantizer (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagefit.errors import UserError
from imagefit.export.int8 import (
    CALIBRATION,
    Int8Check,
    calibration_batches,
    calibration_images,
    compare,
    copy_facts,
    load_member_run,
    settle,
)
from imagefit.export.onnx import exported_graph
from imagefit.files import refuse_overwrite

INT8_NAME = "model.openvino-int8.xml"  # beside model.int8.onnx (ONNX Runtime's int8), each with its own facts JSON


def export_openvino(
    run_path: str | Path,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    int8: bool = False,
    calibration: int = CALIBRATION,
) -> tuple[Path, Int8Check | None]:
    """Write RUN/model.xml and model.bin (int8: model.openvino-int8.xml, a name of its own so that its facts JSON
    and check never overwrite the ONNX int8 model's model.int8.json; or OUT) from RUN/model.onnx (exported first
    when absent); the .xml path, and the int8 check it passed (None for float)."""
    run = load_member_run(run_path, "--format openvino")
    target = Path(out) if out else run.files.onnx.with_name(INT8_NAME if int8 else "model.xml")
    if target.suffix.lower() != ".xml":
        raise UserError(f"{target}: an OpenVINO model's name must end in .xml (its weights go beside it, .bin)")
    chosen, val = calibration_images(run, calibration) if int8 else ([], [])
    written = [target, target.with_suffix(".bin")]
    for path in [*written, target.with_suffix(".json")] if int8 else written:  # float shares model.onnx's facts
        refuse_overwrite(path, overwrite=overwrite)
    graph = exported_graph(run.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_ir(graph, target, chosen)
    if int8:
        facts = copy_facts(graph, target)
        return target, settle(
            compare(graph, target, val, len(chosen)), facts, [*written, target.with_suffix(".json")], calibration
        )
    copy_facts(graph, target)
    check_against_onnx(graph, target)
    return target, None


def write_ir(graph: Path, target: Path, chosen: list[str]) -> None:
    """GRAPH (ONNX) as OpenVINO IR at TARGET (.xml, weights beside it in .bin), float32; quantized to int8 by NNCF
    on the CHOSEN images (preprocessed as GRAPH predicts) when there are any."""
    try:
        import openvino as ov
    except ImportError:
        raise UserError("--format openvino needs the openvino package: pip install 'imagefit[openvino]'") from None
    model = ov.convert_model(str(graph))
    if chosen:
        model = _quantized(model, calibration_batches(graph, chosen))
    ov.save_model(model, str(target), compress_to_fp16=False)


def _quantized(model, batches: list[np.ndarray]):
    """MODEL quantized to int8 by NNCF on BATCHES (every one), with full bias correction."""
    try:
        import nncf
    except ImportError:
        raise UserError("--int8 with --format openvino needs NNCF: pip install 'imagefit[openvino]'") from None
    dataset = nncf.Dataset(batches, lambda batch: {"images": batch})
    return nncf.quantize(model, dataset, subset_size=len(batches), fast_bias_correction=False)


def check_against_onnx(graph: Path, target: Path) -> None:
    """Both runtimes on one random batch: the same outputs within 1e-3, or the export is an error."""
    import onnxruntime as ort

    from imagefit.prediction.openvino import OpenVinoSession

    reference = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    size = reference.get_inputs()[0].shape[-1]
    batch = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    names = [output.name for output in reference.get_outputs()]
    expected = reference.run(names, {"images": batch})
    got = OpenVinoSession(target).run(names, {"images": batch})
    for name, mine, wanted in zip(names, got, expected, strict=True):
        if not np.allclose(mine, wanted, atol=1e-3, rtol=1e-3):
            raise RuntimeError(f"OpenVINO export {target} disagrees with ONNX Runtime on {name}")
