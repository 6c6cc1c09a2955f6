"""OpenVINO: `export --format openvino`, and `--backend openvino` for predict and serve, against ONNX Runtime."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from conftest import COLOURS, colour_image
from typer.testing import CliRunner

import imagefit
from imagefit.cli import app
from imagefit.errors import UserError
from imagefit.prediction.loading import predict

pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install -e '.[openvino]'")


@pytest.fixture()
def run(tiny_run, tmp_path):
    copy = tmp_path / "run"  # exports go into the run folder: not into the shared one
    shutil.copytree(tiny_run, copy)
    return copy


def _val_paths(run_dir, count=6):
    return [s.path for s in imagefit.load_run(run_dir).split() if s.split == "val"][:count]


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_the_openvino_ir_predicts_what_onnx_runtime_predicts(run):
    result = CliRunner().invoke(app, ["export", str(run), "--format", "openvino"])
    assert result.exit_code == 0, result.output
    assert (run / "model.xml").is_file() and (run / "model.bin").is_file() and (run / "model.json").is_file()
    paths = _val_paths(run)
    from_ir = predict(run / "model.xml", paths)
    from_onnx = predict(run / "model.onnx", paths)
    assert from_ir.labels == from_onnx.labels
    assert np.abs(from_ir.probabilities - from_onnx.probabilities).max() < 1e-4
    again = CliRunner().invoke(app, ["export", str(run), "--format", "openvino"])
    assert again.exit_code == 2 and "exists" in again.output


def test_the_ir_exported_elsewhere_carries_its_facts(run, tmp_path):
    target, check = imagefit.export_openvino(run, out=tmp_path / "elsewhere" / "m.xml")
    assert check is None  # float: checked against ONNX Runtime, not on val
    assert target.with_suffix(".json").is_file()
    assert predict(target, _val_paths(run, 2)).labels == predict(run, _val_paths(run, 2), tta_n=None).labels


def test_predict_with_backend_openvino_writes_what_onnx_writes(run, tmp_path):
    images = [str(p) for p in _val_paths(run)]
    written = {}
    for backend in ("onnx", "openvino"):
        out = tmp_path / f"{backend}.csv"
        result = CliRunner().invoke(app, ["predict", str(run), *images, "--out", str(out), "--backend", backend])
        assert result.exit_code == 0, result.output
        written[backend] = _rows(out)
    assert written["openvino"] == written["onnx"] and len(written["onnx"]) == len(images) + 1
    assert (run / "model.onnx").is_file()  # exported on first use
    refused = CliRunner().invoke(app, ["predict", str(run), *images, "--backend", "tensorrt"])
    assert refused.exit_code == 2 and "--backend tensorrt is not one of" in refused.output


def test_serve_with_backend_openvino(run):
    from fastapi.testclient import TestClient

    from imagefit.serving import create_app

    buffer = io.BytesIO()
    colour_image(COLOURS["red"], seed=0).save(buffer, format="PNG")
    with TestClient(create_app(run, backend="openvino")) as client:
        assert client.get("/health").json()["backend"] == "openvino"
        answer = client.post("/predict", files={"files": ("r.png", buffer.getvalue(), "image/png")})
    assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == "red"


def test_a_wrong_name_is_one_line(run, tmp_path):
    with pytest.raises(UserError, match=r"must end in \.xml"):
        imagefit.export_openvino(run, out=tmp_path / "m.onnx")
    result = CliRunner().invoke(app, ["export", str(run), "--format", "tflite"])
    assert result.exit_code == 2 and "--format tflite is not supported" in result.output


def test_int8_by_nncf_is_checked_on_val_and_predicts_like_the_float_model(run):
    result = CliRunner().invoke(app, ["export", str(run), "--format", "openvino", "--int8", "--int8-calibration", "16"])
    assert result.exit_code == 0, result.output
    facts = json.loads((run / "model.openvino-int8.json").read_text())
    assert facts["int8"]["top1_agreement"] >= 0.99 and facts["int8"]["calibration_images"] == 16
    assert facts["int8"]["val_images"] == len([s for s in imagefit.load_run(run).split() if s.split == "val"])
    xml = (run / "model.openvino-int8.xml").read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml  # really quantized, not a float copy
    paths = _val_paths(run)
    assert predict(run / "model.openvino-int8.xml", paths).labels == predict(run / "model.onnx", paths).labels


def test_int8_under_the_agreement_bar_is_refused_and_removed(run, monkeypatch):
    from imagefit.export import int8

    monkeypatch.setattr(int8, "MIN_AGREEMENT", 1.01)  # no model can pass: the refusal path
    with pytest.raises(UserError, match="agrees with the float one on only"):
        imagefit.export_openvino(run, int8=True, calibration=8)
    names = ("model.openvino-int8.xml", "model.openvino-int8.bin", "model.openvino-int8.json")
    assert not any((run / name).exists() for name in names)


def test_both_int8_models_live_in_one_run_folder_each_with_its_own_check(run):
    from imagefit.export import int8

    onnx_path, onnx_check = int8.export_int8(run, calibration=12)
    facts_before = (run / "model.int8.json").read_bytes()
    xml, _ = imagefit.export_openvino(run, int8=True, calibration=16)
    assert (run / "model.int8.json").read_bytes() == facts_before, "the ONNX int8 model's facts were overwritten"
    assert json.loads((run / "model.openvino-int8.json").read_text())["int8"]["calibration_images"] == 16
    assert json.loads(facts_before)["int8"]["calibration_images"] == 12
    paths = _val_paths(run)
    assert predict(xml, paths).labels == predict(onnx_path, paths).labels == predict(run / "model.onnx", paths).labels
    for name in ("model.openvino-int8.xml", "model.openvino-int8.bin"):  # the IR gone, its facts left: refused
        (run / name).unlink()
    with pytest.raises(UserError, match="model.openvino-int8.json"):
        imagefit.export_openvino(run, int8=True, calibration=16)


def test_evaluate_runs_the_exported_model_in_either_runtime_beside_the_torch_figures(run):
    before = json.loads((run / "metrics.json").read_text())

    def evaluated(*options):
        result = CliRunner().invoke(app, ["evaluate", str(run), *options, "--split", "val"])
        assert result.exit_code == 0, result.output
        return json.loads((run / "metrics.json").read_text())

    openvino = evaluated("--backend", "openvino")  # the run's model.onnx, exported on first use
    assert openvino["val"] == before["val"], "the PyTorch model's figures are left as they were"
    openvino = openvino["exported"]["model.onnx"]["val"]
    onnx = evaluated("--model", "model.onnx")["exported"]["model.onnx"]["val"]  # auto: ONNX Runtime for .onnx
    assert (openvino["backend"], onnx["backend"]) == ("openvino", "onnx")
    assert onnx["accuracy"] == pytest.approx(before["val"]["accuracy"]) == openvino["accuracy"]
    assert (run / "predictions-val-model.csv").is_file()
    missing = CliRunner().invoke(app, ["evaluate", str(run), "--model", "model.int8.onnx"])
    assert missing.exit_code == 2 and "model.int8.onnx: no exported .onnx or .xml model there" in missing.output
