"""An ensemble folder exported as OpenVINO IR and as int8 (issue 30): one graph a member, the whole checked on val."""

from __future__ import annotations

import json

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
