"""The greedy soup of fine-tuning epochs: which epochs join, and that the run keeps what was scored."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TINY, make_class_folders

import imagefit
from imagefit.training.soup import average, greedy_soup


def _state(value: float, steps: int = 7) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor([value]), "bn.num_batches_tracked": torch.tensor(steps)}


def test_an_epoch_joins_only_when_the_average_lowers_the_score():
    states = {3: _state(1.0, 3), 4: _state(3.0, 4), 5: _state(100.0, 5), 6: _state(2.5, 6)}
    scored = []

    def score(weights):
        scored.append(float(weights["w"]))
        return (float(weights["w"]) - 2.0) ** 2

    # recorded val losses put 4 first, then 5, then 6: the candidates are tried in that order
    soup = greedy_soup(3, {3: 0.1, 4: 0.2, 5: 0.3, 6: 0.4}, states.__getitem__, score)
    assert soup.tried == [4, 5, 6]
    assert soup.epochs == [3, 4]  # 1 and 3 average to 2 (score 0); 100 and 2.5 would raise it
    assert soup.single_val_loss == 1.0 and soup.val_loss == 0.0
    assert float(soup.weights["w"]) == 2.0
    assert int(soup.weights["bn.num_batches_tracked"]) == 3, "integer buffers come from the kept epoch"
    assert scored[:2] == [1.0, 2.0]


def test_no_candidate_is_tried_without_time_for_one_more_pass():
    states = {1: _state(1.0), 2: _state(3.0)}
    soup = greedy_soup(1, {1: 0.1, 2: 0.2}, states.__getitem__, lambda w: float(w["w"]), time_left=lambda: 0.0)
    assert soup.tried == [] and soup.epochs == [1]


def test_average_is_uniform_and_keeps_dtypes():
    mixed = average([{"a": torch.tensor([1.0, 2.0])}, {"a": torch.tensor([3.0, 6.0])}])
    torch.testing.assert_close(mixed["a"], torch.tensor([2.0, 4.0]))


@pytest.mark.parametrize("soup", [True, False])
def test_the_run_keeps_the_soup_it_scored_and_drops_the_epoch_files(tmp_path, soup):
    from imagefit.evaluation.evaluator import read_predictions

    data = make_class_folders(tmp_path / "d", per_class=12)
    run = imagefit.train(
        data,
        out=tmp_path / "run",
        epochs=4,
        frozen_epochs=0,  # no head-only epoch to keep: the soup starts from a fine-tuning epoch
        soup=soup,
        ema_epochs=0,  # 4 fine-tuning epochs would average by EMA instead
        tune_inference=False,  # predictions-val.csv then holds plain softmax outputs: the soup's val loss
        unknown_index=False,
        report=False,
        **TINY,
    )
    config = json.loads((run.path / "config.json").read_text())
    assert not list((run.path / "checkpoints").glob("epoch-*")), "the candidates are removed once the model is kept"
    if not soup:
        assert "soup" not in config
        return
    facts = config["soup"]
    assert facts["epochs"][0] == run.metrics["best_epoch"] and set(facts["epochs"]) <= {1, 2, 3, 4}
    assert facts["val_loss"] <= facts["single_val_loss"]
    rows, classes = read_predictions(run.path / "predictions-val.csv")
    losses = [-math.log(max(1e-12, float(row[row["true"]]))) for row in rows]
    assert len(rows) == 4 and set(classes) == {"red", "blue"}
    assert sum(losses) / len(losses) == pytest.approx(facts["val_loss"], abs=1e-4), "the kept model is the scored one"
