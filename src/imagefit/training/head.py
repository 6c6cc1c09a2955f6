"""Phase 1 on features: train the head alone on backbone features of fixed views, seconds an epoch.

The head sees exactly what it would see through the frozen backbone (BatchNorm in eval mode):
`features(indices, views)` returns the backbone's output for those views, from the cache or
computed on the spot; both give the same head (tested). One epoch visits every view of every
training image once, in an order drawn from the recipe's seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from timm.optim import create_optimizer_v2
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from imagefit.config import Recipe
from imagefit.tasks import Task, task_for
from imagefit.training.schedule import PhaseSchedule, weight_decay_groups

FeatureFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class HeadData:
    """What the head trains on: a feature lookup, training targets, views per image, and val features."""

    features: FeatureFn
    targets: torch.Tensor
    views: int
    val_features: torch.Tensor | None = None
    val_targets: torch.Tensor | None = None


def train_head(
    head: nn.Module,
    data: HeadData,
    recipe: Recipe,
    *,
    class_weights: torch.Tensor | None = None,
    sample_weights: torch.Tensor | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    task: str | Task = "single-label",
) -> list[dict]:
    """Train `head` for recipe.schedule.frozen_epochs epochs; one history row per epoch.

    Same optimizer, label smoothing, class weights and phase-1 learning-rate curve as the
    Lightning phase; `sample_weights` (per training image) draws pairs like the weighted sampler.
    MixUp/CutMix are image operations and are not applied here.
    """
    schedule, optim = recipe.schedule, recipe.optim
    task = task_for(task)
    pairs = len(data.targets) * data.views
    batch_size = recipe.data.batch_size
    steps_per_epoch = math.ceil(pairs / batch_size)
    total = schedule.frozen_epochs * steps_per_epoch
    optimizer, scheduler = _optimizer(head, recipe, total)
    generator = torch.Generator().manual_seed(recipe.data.seed)
    torch.manual_seed(recipe.data.seed)  # dropout in the head
    rows = []
    for epoch in range(schedule.frozen_epochs):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        head.train()
        loss_sum = 0.0
        for chunk in _order(pairs, data.views, sample_weights, generator).split(batch_size):
            images, views = chunk // data.views, chunk % data.views
            logits = head(data.features(images, views))
            loss = task.loss(logits, data.targets[images], class_weights, optim.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(chunk)
        row = {"epoch": epoch + 1, "phase": 1, "lr": lr, "train_loss": loss_sum / pairs}
        row.update(validate(head, data, class_weights, task))
        row["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        if on_epoch is not None:
            on_epoch(row)
    return rows


def _optimizer(head: nn.Module, recipe: Recipe, total: int):
    """The recipe's optimizer over the head, and phase 1's learning-rate curve over TOTAL steps."""
    optim = recipe.optim
    optimizer = create_optimizer_v2(
        weight_decay_groups(head, optim.weight_decay), opt=optim.optimizer, lr=optim.lr, weight_decay=optim.weight_decay
    )
    curve = PhaseSchedule(frozen_steps=total, total_steps=total, warmup_steps=0, finetune_ratio=optim.finetune_lr_ratio)
    return optimizer, LambdaLR(optimizer, curve)


def _order(pairs: int, views: int, sample_weights: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    if sample_weights is None:
        return torch.randperm(pairs, generator=generator)
    weights = sample_weights.repeat_interleave(views).double()
    return torch.multinomial(weights, pairs, replacement=True, generator=generator)


def validate(head: nn.Module, data: HeadData, class_weights: torch.Tensor | None, task: Task) -> dict:
    """The head's val loss (class-weighted, as training's), accuracy and macro-F1 on the val features."""
    if data.val_features is None or len(data.val_features) == 0:
        return {"val_loss": float("nan"), "val_accuracy": float("nan"), "val_macro_f1": float("nan")}
    head.eval()
    with torch.no_grad():
        logits = head(data.val_features)
    accuracy, f1 = task.val_metrics(logits.shape[1])
    scores, truth = task.scored(logits, data.val_targets)
    return {
        "val_loss": float(task.loss(logits, data.val_targets, class_weights)),
        "val_accuracy": float(accuracy(scores, truth)),
        "val_macro_f1": float(f1(scores, truth)),
    }
