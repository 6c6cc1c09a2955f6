"""The task objects: what differs between one label an image and several, decided in one place."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from imagefit.errors import UserError
from imagefit.tasks import MULTI, SINGLE, task_for

CLASSES = ["a", "b", "c"]


def test_each_task_turns_labels_into_the_targets_its_loss_takes():
    single, multi = task_for(SINGLE), task_for(MULTI)
    assert single.targets(["b", "a"], CLASSES).tolist() == [1, 0]
    assert multi.targets(["a|c", ""], CLASSES).tolist() == [[1, 0, 1], [0, 0, 0]]
    assert multi.classes_of(["a|c", "b", ""]) == CLASSES
    assert multi.known(["a|d", "c"], CLASSES).tolist() == [False, True]


def test_the_single_label_split_takes_a_share_of_every_class_and_keeps_one_for_training():
    labels = ["a"] * 10 + ["b"] * 3 + ["c"] * 1
    names = task_for(SINGLE).assign_splits(labels, {"val": 0.2, "test": 0.2}, seed=0)
    per = {c: [n for n, label in zip(names, labels, strict=True) if label == c] for c in "abc"}
    assert per["a"].count("val") == 2 and per["a"].count("test") == 2
    assert per["b"].count("val") == 1 and per["b"].count("train") >= 1
    assert per["c"] == ["train"]  # one image stays in training
    assert names == task_for(SINGLE).assign_splits(labels, {"val": 0.2, "test": 0.2}, seed=0)


def test_class_weights_reach_the_loss():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -1.0]])
    targets = torch.tensor([0, 1, 2])
    single = task_for(SINGLE)
    plain = single.loss(logits, targets)
    weighted = single.loss(logits, targets, torch.tensor([1.0, 1.0, 5.0]))
    assert weighted > plain  # the badly predicted class weighs more
    rows = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    multi = task_for(MULTI)
    assert multi.loss(logits[:2], rows, torch.tensor([1.0, 1.0, 4.0])) > multi.loss(logits[:2], rows)


def test_multi_label_mixing_mixes_the_label_rows_as_the_images():
    class FixedMix:
        def _mix_batch(self, images):
            return 0.75

    images, rows = torch.zeros(2, 3, 4, 4), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    _, mixed = task_for(MULTI).mix(FixedMix(), images, rows)
    assert mixed.tolist() == [[0.75, 0.25], [0.25, 0.75]]


def test_decisions_thresholds_and_csv_columns_follow_the_task():
    probabilities = np.array([[0.7, 0.6, 0.1]])
    assert task_for(SINGLE).decide(probabilities, CLASSES, None) == ["a"]
    thresholds = task_for(MULTI).thresholds({"b": 0.65}, CLASSES)
    assert thresholds.tolist() == pytest.approx([0.5, 0.65, 0.5])
    assert task_for(MULTI).decide(probabilities, CLASSES, thresholds) == ["a"]
    assert task_for(MULTI).csv_label("a|c") == "a c"
    assert task_for(SINGLE).csv_columns(CLASSES) == ["confidence", "top_k"]
    assert task_for(MULTI).csv_columns(CLASSES) == CLASSES
    assert task_for(SINGLE).csv_details(probabilities[0], CLASSES, 2) == ["0.700000", "a:0.7000;b:0.6000"]
    assert task_for(MULTI).csv_details(probabilities[0], CLASSES, 2) == ["0.700000", "0.600000", "0.100000"]


def test_a_feature_a_task_does_not_offer_is_refused_in_one_line():
    task_for(SINGLE).require("ensemble", "run")
    with pytest.raises(UserError, match="run: ensembles are of single-label runs"):
        task_for(MULTI).require("ensemble", "run")


def test_the_data_and_onnx_paths_use_the_tasks_without_importing_torch():
    code = (
        "import sys, numpy as np\n"
        "import imagefit.data.split, imagefit.data.checks, imagefit.prediction.onnx, imagefit.prediction.output\n"
        "from imagefit.tasks import task_for\n"
        "from imagefit.config import DataRecipe\n"
        "for name in ('single-label', 'multi-label'):\n"
        "    task = task_for(name)\n"
        "    task.assign_splits(['a', 'b', 'a|b', 'b', 'a', 'a'], {'val': 0.3, 'test': 0.0}, 0)\n"
        "    task.decide(task.activate(np.zeros((2, 2))), ['a', 'b'], task.thresholds({}, ['a', 'b']))\n"
        "    task.imbalance(['a', 'b', 'a'], ['a', 'b'], DataRecipe(imbalance_ratio=1.2))\n"
        "print('torch' in sys.modules)\n"
    )
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.strip() == "False"


def test_class_weights_follow_the_power_and_the_imbalance_setting():
    from imagefit.config import DataRecipe

    single, labels = task_for(SINGLE), ["a"] * 29 + ["b"]
    full = single.imbalance(labels, ["a", "b"], DataRecipe(imbalance="weights"))
    root = single.imbalance(labels, ["a", "b"], DataRecipe(imbalance="weights", class_weight_power=0.5))
    assert full.mode == root.mode == "weights" and full.ratio == 29
    auto = single.imbalance(labels, ["a", "b"], DataRecipe())
    assert auto.mode == "adjust" and auto.weights is None and "logits shifted" in auto.said
    assert root.weights == pytest.approx(np.sqrt(full.weights))
    assert full.weights[1] / full.weights[0] == pytest.approx(29)
    assert single.imbalance(labels, ["a", "b"], DataRecipe(imbalance="sampler")).weights is None
    assert single.imbalance(["a", "b"], ["a", "b"], DataRecipe()).mode == "none"
