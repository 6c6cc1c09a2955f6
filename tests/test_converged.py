"""The head solved to convergence on cached features (LP-FT's linear probe): kept only where val loss is lower."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imagefit.models.factory import build_head
from imagefit.training.converged import fit_converged, solved_weights


def _blobs(classes: int, per_class: int, width: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, 2 views, width] around one centre a class, and their class indices."""
    centres = np.random.default_rng(0).normal(0, 3, size=(classes, width))  # the same for every seed
    rng = np.random.default_rng(seed + 1)
    labels = np.repeat(np.arange(classes), per_class)
    features = centres[labels][:, None, :] + rng.normal(0, 1, size=(len(labels), 2, width))
    return torch.tensor(features, dtype=torch.float32), torch.tensor(labels)


def _loss_of(val: tuple[torch.Tensor, torch.Tensor]):
    def scored(head: nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            logits = head(val[0])
        return float(F.cross_entropy(logits, val[1])), float((logits.argmax(1) == val[1]).float().mean())

    return scored


def test_a_poor_trained_head_is_replaced_by_the_solved_one():
    train, val = _blobs(4, 30), _blobs(4, 10, seed=1)
    val = (val[0][:, 0], val[1])
    head = build_head(16, 4, hidden=(), dropout=0.2)
    with torch.no_grad():  # a head that answers class 3 for everything
        head[-1].weight.zero_()
        head[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
    fit = fit_converged(head, train, val, _loss_of(val), class_weights=None, seed=0)
    assert fit is not None and fit.kept
    assert fit.loss < fit.trained_loss and fit.accuracy > 0.9 > fit.trained_accuracy
    assert _loss_of(val)(head)[0] == fit.loss  # the head now holds the solved weights


def test_a_better_trained_head_stays_as_it_was():
    train, val = _blobs(3, 30), _blobs(3, 10, seed=1)
    val = (val[0][:, 0], val[1])
    head = build_head(16, 3, hidden=(), dropout=0.0)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    always_better = iter([(0.0, 1.0)] + [(1.0, 0.5)] * 10)  # the trained head is scored first
    fit = fit_converged(head, train, val, lambda h: next(always_better), class_weights=None, seed=0)
    assert fit is not None and not fit.kept
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())


def test_hidden_layers_soft_targets_or_one_class_are_left_alone():
    train, val = _blobs(3, 10), _blobs(3, 4, seed=1)
    val = (val[0][:, 0], val[1])
    deep = build_head(16, 3, hidden=(8,), dropout=0.0)
    assert fit_converged(deep, train, val, _loss_of(val), class_weights=None, seed=0) is None
    flat = build_head(16, 3, hidden=(), dropout=0.0)
    soft = (train[0], F.one_hot(train[1], 3).float())
    assert fit_converged(flat, soft, val, _loss_of(val), class_weights=None, seed=0) is None
    single = (train[0][:10], torch.zeros(10, dtype=torch.long))
    assert fit_converged(flat, single, val, _loss_of(val), class_weights=None, seed=0) is None


def test_two_classes_and_a_class_missing_from_training_map_onto_every_logit():
    features, labels = _blobs(3, 20)
    present = labels != 1  # class 1 has no training image
    rows = features[present][:, 0].numpy()
    weights, bias = solved_weights(rows, labels[present].numpy(), 3, None, 1.0)
    assert weights.shape == (3, 16) and bias[1] < -1e3  # never predicted
    logits = torch.from_numpy(rows @ weights.T + bias)
    assert (logits.argmax(1) == labels[present]).float().mean() > 0.9


def test_class_weights_reach_the_solver():
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 1, size=(200, 4))  # no signal: the solver follows the weights
    labels = (np.arange(200) < 180).astype(int)  # 20 of class 0, 180 of class 1
    plain = solved_weights(rows, labels, 2, None, 1.0)
    weighted = solved_weights(rows, labels, 2, np.array([9.0, 1.0]), 1.0)
    assert (rows @ plain[0].T + plain[1]).argmax(1).mean() > 0.9  # the majority
    assert (rows @ weighted[0].T + weighted[1]).argmax(1).mean() < 0.7  # weighted towards class 0


def test_a_run_with_solve_head_records_the_head_it_kept(tmp_path):
    import json

    from conftest import TINY, make_class_folders

    import imagefit

    data = make_class_folders(tmp_path / "colours", per_class=12)
    run = tmp_path / "run"
    imagefit.train(data, out=run, epochs=2, frozen_epochs=1, solve_head=True, **TINY)
    fit = json.loads((run / "config.json").read_text())["head_fit"]
    history = (run / "history.csv").read_text().splitlines()
    head_last = [line for line in history[1:] if line.split(",")[1] == "1"][-1].split(",")
    kept_loss = fit["val_loss"] if fit["kept"] else fit["trained_val_loss"]
    assert fit["kept"] == (fit["val_loss"] < fit["trained_val_loss"])
    assert float(head_last[4]) == pytest.approx(kept_loss, abs=1e-3)  # the phase's last row: the head kept
