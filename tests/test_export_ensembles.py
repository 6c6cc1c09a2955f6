"""An ensemble folder exported as OpenVINO IR and as int8 (issue 30): one graph a member, the whole checked on val."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import imagefit
from imagefit.cli import app
from imagefit.errors import UserError
from imagefit.evaluation.ensembles import make_ensemble
from imagefit.export import int8 as int8_export
from imagefit.prediction.ensembles import load_ensemble
from imagefit.prediction.loading import predict

pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install -e '.[openvino]'")


@pytest.fixture(scope="module")
def ensemble(two_runs, tmp_path_factory):
    return make_ensemble(list(two_runs), out=tmp_path_factory.mktemp("ens-export") / "ens", method="mean").path


def _val(ensemble_path):
    return [s.path for s in load_ensemble(ensemble_path).split() if s.split == "val"]


def test_the_int8_ensemble_is_checked_whole_and_predicts_like_the_float_ensemble(ensemble):
    result = CliRunner().invoke(
        app, ["export", str(ensemble), "--format", "openvino", "--int8", "--int8-calibration", "16"]
    )
    assert result.exit_code == 0, result.output
    assert "float ensemble" in result.output
    facts_path = ensemble / "openvino-int8" / "ensemble.json"
    facts = json.loads(facts_path.read_text())
    val = _val(ensemble)
    assert facts["int8"]["val_images"] == len(val) and facts["int8"]["top1_agreement"] >= 0.99
    assert len(facts["int8"]["members_top1_agreement"]) == 2 and facts["int8"]["calibration_images"] == 16
    for member in facts["members"]:
        xml = (facts_path.parent / member["file"]).read_text()
        assert member["file"].endswith(".int8.xml") and ("FakeQuantize" in xml or "FakeConvert" in xml)
    assert predict(facts_path, val).labels == predict(ensemble, val).labels


def test_the_float_ir_of_an_ensemble_gives_the_ensembles_probabilities(ensemble, tmp_path):
    facts_path, check = imagefit.export_ensemble(ensemble, fmt="openvino", out=tmp_path / "ir")
    assert check is None and json.loads(facts_path.read_text())["kind"] == "onnx-ensemble"
    val = _val(ensemble)
    ir, eager = predict(facts_path, val), predict(ensemble, val)
    assert ir.paths == eager.paths and np.allclose(ir.probabilities, eager.probabilities, atol=1e-4)


def test_an_int8_ensemble_under_the_bar_is_refused_and_every_file_removed(ensemble, tmp_path, monkeypatch):
    monkeypatch.setattr(int8_export, "MIN_AGREEMENT", 1.01)  # no ensemble can pass: the refusal path
    out = tmp_path / "int8"
    with pytest.raises(UserError, match="int8 ensemble agrees with the float one on only"):
        imagefit.export_ensemble(ensemble, fmt="onnx", int8=True, out=out, calibration=8)
    assert out.is_dir() and not any(out.iterdir())


def test_a_member_of_an_ensemble_still_exports_alone_and_the_ensemble_is_named_where_it_cannot(ensemble):
    from imagefit.export.int8 import export_int8

    with pytest.raises(UserError, match=f"imagefit export {ensemble} --int8"):
        export_int8(ensemble)


def test_evaluate_reads_an_exported_ensemble_and_keeps_its_figures_beside_the_ensembles(ensemble):
    from imagefit.evaluation.evaluator import evaluate

    facts_path, _ = imagefit.export_ensemble(ensemble, fmt="openvino")  # ENS/openvino/ensemble.json
    result = CliRunner().invoke(app, ["evaluate", str(ensemble), "--model", str(facts_path), "--split", "val"])
    assert result.exit_code == 0, result.output
    exported = json.loads((ensemble / "metrics.json").read_text())["exported"]["openvino/ensemble.json"]["val"]
    (eager,) = evaluate(ensemble, split="val")
    assert exported["count"] == eager.metrics["count"] == len(_val(ensemble))
    assert exported["accuracy"] == eager.metrics["accuracy"] and exported["backend"] == "openvino"
    assert (ensemble / "predictions-val-openvino.csv").exists()
    wrong = CliRunner().invoke(app, ["evaluate", str(ensemble), "--model", str(ensemble / "split.csv")])
    assert wrong.exit_code != 0 and "ensemble.json" in wrong.output and "Traceback" not in wrong.output


def test_the_ensemble_folders_own_json_is_read_as_the_folder_and_any_other_json_is_one_line(ensemble, tmp_path):
    val = _val(ensemble)[:4]
    own = ensemble / "ensemble.json"
    assert predict(own, val).labels == predict(ensemble, val).labels
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(app, ["predict", str(own), *map(str, val), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists()
    for wrong, says in [
        (ensemble / "metrics.json", "not an ensemble's JSON"),  # it has members too, naming runs
        (ensemble / "labels.json", "not an ensemble's JSON"),
        (ensemble / "missing.json", "no such ensemble.json"),
    ]:
        result = CliRunner().invoke(app, ["predict", str(wrong), str(val[0]), "--out", str(tmp_path / "q.csv")])
        assert result.exit_code != 0 and says in result.output and "Traceback" not in result.output, result.output
    result = CliRunner().invoke(app, ["evaluate", str(ensemble), "--model", str(own)])
    assert result.exit_code != 0 and "that is the ensemble itself" in result.output, result.output


@pytest.mark.parametrize("backend", ["auto", "openvino", "torch"])
def test_serve_answers_for_an_ensemble_as_predict_does(ensemble, backend):
    from fastapi.testclient import TestClient

    from imagefit.serving import create_app

    val = _val(ensemble)[:4]
    offline = predict(ensemble, val)
    from imagefit.export.onnx import exported_graph

    # openvino: ENS/onnx/ensemble.json; torch: the folder named by its own ensemble.json; auto: the folder
    model = {"openvino": exported_graph(ensemble), "torch": ensemble / "ensemble.json"}.get(backend, ensemble)
    with TestClient(create_app(model, backend=backend, max_wait_ms=50)) as client:
        files = [("files", (Path(path).name, Path(path).read_bytes(), "image/png")) for path in val]
        answer = client.post("/predict", files=files)
        metadata = client.get("/metadata").json()
        explain = client.post("/explain", files=files[:1])
    assert answer.status_code == 200, answer.text
    assert answer.json()["backend"] == {"auto": "onnxruntime", "openvino": "openvino", "torch": "pytorch"}[backend]
    assert metadata["model"] == "ensemble of 2" and len(metadata["members"]) == 2
    assert metadata["validation"]["count"] == len(_val(ensemble))
    assert explain.status_code == 400 and "ensemble" in explain.json()["error"]
    for served, row in zip(answer.json()["predictions"], offline.probabilities, strict=True):
        probabilities = {t["label"]: t["probability"] for t in served["top"]}
        for label, probability in zip(offline.classes, row, strict=True):
            assert probabilities[label] == pytest.approx(float(probability), abs=1e-4)


def test_a_served_ensemble_runs_each_member_once_in_one_thread_before_any_request(ensemble, monkeypatch):
    import threading

    from imagefit.export.onnx import exported_graph
    from imagefit.prediction.onnx import OnnxPredictor
    from imagefit.serving.backend import load_backend

    calls, run = [], OnnxPredictor.probabilities

    def recorded(self, batch):
        calls.append((id(self), threading.get_ident(), batch.shape))
        return run(self, batch)

    monkeypatch.setattr(OnnxPredictor, "probabilities", recorded)
    loaded = load_backend(exported_graph(ensemble), backend="openvino")  # members' first calls: pybind11's set-up
    assert loaded.name == "openvino" and len(loaded.parts) == 2
    assert sorted(c[0] for c in calls) == sorted(id(p) for p, _ in loaded.parts), "each member warmed once"
    assert {c[1] for c in calls} == {threading.get_ident()} and all(c[2][0] == 1 for c in calls)
