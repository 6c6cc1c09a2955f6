"""The GPU path (issue 31): a run trained on a CUDA GPU in mixed precision, read back and predicted anywhere.

Skipped on machines without a CUDA GPU (CI has none); benchmarks/gpu_check.sh runs them where one is lent,
with the rest of the suite under IMAGEFIT_TEST_ACCELERATOR=gpu.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import GPU_SKIP, TINY, make_class_folders

import imagefit

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason=f"{GPU_SKIP}: the GPU path runs where one is lent (benchmarks/gpu_check.sh)"
)


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    data = make_class_folders(tmp_path_factory.mktemp("data") / "colours", per_class=16)
    out = tmp_path_factory.mktemp("runs") / "gpu"
    imagefit.train(data, out=out, epochs=3, frozen_epochs=1, **{**TINY, "accelerator": "auto", "num_workers": 2})
    return out


def test_auto_trains_on_the_gpu_in_mixed_precision(gpu_run):
    env = json.loads((gpu_run / "env.json").read_text())
    assert env["accelerator"] == "cuda" and env["device"] == torch.cuda.get_device_name(0)
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert env["precision"] == expected
    metrics = json.loads((gpu_run / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] >= 0.9, "red vs blue is trivially learnable"


def test_a_gpu_run_predicts_its_validation_accuracy_back(gpu_run):
    run = imagefit.load_run(gpu_run)
    val = [s for s in run.split() if s.split == "val"]
    predicted = imagefit.predict(run.path, [s.path for s in val]).labels
    accuracy = sum(p == s.label for p, s in zip(predicted, val, strict=True)) / len(val)
    assert accuracy == pytest.approx(run.metrics["val"]["accuracy"])


def test_weights_of_a_gpu_run_are_plain_float32_tensors_on_no_device(gpu_run):
    from safetensors.torch import load_file

    weights = load_file(gpu_run / "model.safetensors")
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}
    assert {t.device.type for t in weights.values()} == {"cpu"}
