"""Real transfer learning on ../shared/data/hymenoptera with the offline ImageNet weights."""

import json

import pytest
from conftest import need_default_weights, shared_path

import imagefit


@pytest.fixture(scope="module")
def hymenoptera_run(tmp_path_factory):
    data = shared_path("hymenoptera")
    need_default_weights()
    out = tmp_path_factory.mktemp("real") / "hymenoptera"
    return imagefit.train(
        data, out=out, image_size=128, epochs=2, frozen_epochs=1, accelerator="cpu", devices="1", report=False
    )


def test_hymenoptera_learns_far_above_chance(hymenoptera_run):
    metrics = hymenoptera_run.metrics
    assert metrics["val"]["count"] == 153
    assert metrics["val"]["accuracy"] >= 0.85, "chance is 0.54; pretrained lite0 at 128 px gets about 0.9"
    assert hymenoptera_run.config["weights_source"] == "offline"


def test_hymenoptera_placeholder_gif_is_read_not_fatal(hymenoptera_run):
    paths = [s.path for s in hymenoptera_run.split()]
    assert any(p.endswith("imageNotFound.gif") for p in paths)
    env = json.loads((hymenoptera_run.path / "env.json").read_text())
    assert len(env["data_fingerprint"]) == 16


def test_onnx_and_pytorch_agree_on_real_photos(hymenoptera_run, tmp_path):
    from imagefit.prediction.loading import predict

    onnx_path = imagefit.export_onnx(hymenoptera_run.path, out=tmp_path / "hymenoptera.onnx")
    photos = [s.path for s in hymenoptera_run.split() if s.split == "val"][:24]
    eager = predict(hymenoptera_run.path, photos).probabilities
    exported = predict(onnx_path, photos).probabilities
    assert (eager.argmax(1) == exported.argmax(1)).all()
    assert abs(eager - exported).max() < 1e-4
