"""imagefit export --int8: a graph whose weights really are int8, checked against the float graph, or refused."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from imagefit import runs
from imagefit.errors import UserError
from imagefit.export import int8 as int8_export
from imagefit.export.onnx import export_onnx
from imagefit.prediction.batches import predict_with
from imagefit.prediction.onnx import OnnxPredictor


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def test_the_int8_graph_holds_int8_weights_and_agrees_with_the_float_one(run):
    target, check = int8_export.export_int8(run, calibration=16)
    graph = onnx.load(str(target))
    kinds = {node.op_type for node in graph.graph.node}
    int8_weights = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds and len(int8_weights) >= 5
    facts = json.loads(target.with_suffix(".json").read_text())
    assert facts["int8"]["top1_agreement"] >= int8_export.MIN_AGREEMENT and facts["int8"]["calibration_images"] == 16
    assert check.images == sum(s.split == "val" for s in runs.load_run(run).split())
    assert target.with_name(facts["unknown"]["index"]).exists(), "the unknown index travels with the int8 graph"
    paths = [s.path for s in runs.load_run(run).split()]
    quantized = predict_with(OnnxPredictor.from_file(target), paths)
    exported = predict_with(OnnxPredictor.from_file(export_onnx(run, out=run / "float.onnx")), paths)
    assert quantized.unknown is not None, "predict reads the int8 file like any exported one"
    assert np.mean([a == b for a, b in zip(quantized.labels, exported.labels, strict=True)]) >= 0.9
    assert np.abs(quantized.probabilities - exported.probabilities).max() < 0.2


def test_an_int8_graph_that_disagrees_is_removed_and_refused_in_one_line(run, monkeypatch):
    monkeypatch.setattr(int8_export, "MIN_AGREEMENT", 1.01)  # no graph can agree on more than all images
    with pytest.raises(UserError, match="--int8-calibration 64"):
        int8_export.export_int8(run, calibration=16)
    assert not (run / "model.int8.onnx").exists()


def test_no_calibration_images_is_one_line(run):
    with pytest.raises(UserError, match="at least 1"):
        int8_export.export_int8(run, calibration=0)
