"""Phase 1 of `imagefit train` on cached features: extract once, then train the head in seconds an epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console

from imagefit.config import Recipe
from imagefit.data.datamodule import default_workers, soft_rows
from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import Sample
from imagefit.models import ImageClassifier
from imagefit.tasks import task_for
from imagefit.tasks.imbalance import class_weights as balanced_weights
from imagefit.training.converged import HeadFit, fit_converged
from imagefit.training.features import ViewDataset, cache_name, extract_features
from imagefit.training.head import HeadData, train_head, validate


def head_on_features(recipe: Recipe) -> bool:
    """Whether phase 1 runs on cached features (outside Lightning) rather than through the frozen backbone."""
    return recipe.schedule.cached_head and recipe.schedule.frozen_epochs > 0


@dataclass(frozen=True)
class SplitFeatures:
    """The backbone's features of a split's images (views drawn from the recipe's seed), from the cache or
    computed on the spot, with the task's targets."""

    model: ImageClassifier
    samples: list[Sample]
    classes: list[str]
    hashes: dict[str, str]
    preprocess: Preprocess
    recipe: Recipe
    device: str
    task: str
    soft: dict | None = None  # soft labels of training images (pseudo-labels), by path

    def of(self, split: str, views: int) -> tuple[torch.Tensor, torch.Tensor]:
        """([images, views, D] features, targets) of SPLIT; with soft labels, train's targets are probability rows."""
        recipe, seed = self.recipe, self.recipe.data.seed
        chosen = [s for s in self.samples if s.split == split]
        targets = task_for(self.task).targets([s.label for s in chosen], self.classes)
        if self.soft and split == "train":
            targets = np.stack(soft_rows(chosen, list(targets), len(self.classes), self.soft))
        targets = torch.from_numpy(targets)
        if not chosen:
            return torch.empty(0), targets
        hashes = [self.hashes[s.path] for s in chosen]
        dataset = ViewDataset(chosen, hashes, self.preprocess, recipe.augment, views=views, seed=seed)
        table = extract_features(
            self.model.backbone,
            dataset,
            name=cache_name(self.model.backbone, self.preprocess, recipe.augment, views=views, seed=seed),
            batch_size=max(32, recipe.data.batch_size),
            workers=default_workers(recipe.data.num_workers),
            device=self.device,
            channels_last=recipe.engine.channels_last,
            label=f"{split} features, {views} view{'s' if views > 1 else ''}",
        )
        return table, targets


def balanced_sample_weights(targets: torch.Tensor, classes: int) -> torch.Tensor:
    """Each training image's weight for a class-balanced sampler (one label an image; soft labels: their top class)."""
    hard = targets.argmax(dim=1) if targets.dim() == 2 else targets
    return torch.from_numpy(balanced_weights(hard.tolist(), classes))[hard]


def cached_head_phase(
    model: ImageClassifier,
    samples: list[Sample],
    classes: list[str],
    hashes: dict[str, str],
    preprocess: Preprocess,
    recipe: Recipe,
    *,
    sampler: bool,
    class_weights: torch.Tensor | None,
    device: str,
    console: Console,
    on_stage: Callable[[str], None] = lambda stage: None,
    check_shift: bool = False,
    task: str = "single-label",
    soft: dict | None = None,
) -> tuple[list[dict], HeadFit | None]:
    """Train model.head on cached backbone features of train (all views) and val (plain view); history rows,
    and the converged fit against the trained head (recipe.schedule.solve_head; None when not fitted).

    With `check_shift` (the data brought its own val split), a domain classifier on the same features
    says in one line when val looks unlike train.
    """
    views = recipe.schedule.head_views
    features = SplitFeatures(model, samples, classes, hashes, preprocess, recipe, device, task, soft)
    on_stage("features")
    started = time.perf_counter()
    train_table, targets = features.of("train", views)
    val_table, val_targets = features.of("val", 1)
    extraction = time.perf_counter() - started
    if check_shift and len(val_table):
        _say_shift(train_table[:, 0].numpy(), val_table[:, 0].numpy(), console)
    on_stage("head")
    data = _head_data(train_table, targets, views, val_table, val_targets)
    sample_weights = balanced_sample_weights(targets, len(classes)) if sampler else None
    model.head.cpu()
    show = _epoch_printer(recipe, console)
    rows = train_head(
        model.head, data, recipe, class_weights=class_weights, sample_weights=sample_weights, on_epoch=show, task=task
    )
    fit = _solve(model.head, data, (train_table, targets), recipe, class_weights, task, rows, console)
    model.train()  # FreezeBackbone sets the modes of phase 2 at each epoch start
    if rows:  # history's seconds: the first head epoch carries the feature extraction
        rows[0]["seconds"] = round(rows[0]["seconds"] + extraction, 2)
    return rows, fit


def _head_data(train_table, targets, views: int, val_table, val_targets) -> HeadData:
    """The cached tables as the head's training data: a view lookup, targets and the plain val view."""
    return HeadData(
        features=lambda images, chosen_views: train_table[images, chosen_views],
        targets=targets,
        views=views,
        val_features=val_table[:, 0] if len(val_table) else None,
        val_targets=val_targets,
    )


def _solve(head, data: HeadData, train, recipe: Recipe, class_weights, task: str, rows, console) -> HeadFit | None:
    """The head solved to convergence on the same features, kept where its val loss is lower (said in one line;
    the phase's last row then holds the solved head's val figures: what fine-tuning starts from)."""
    if not (recipe.schedule.solve_head and rows) or data.val_features is None:
        return None

    def scored(candidate) -> tuple[float, float]:
        row = validate(candidate, data, class_weights, task_for(task))
        return row["val_loss"], row["val_accuracy"]

    val = (data.val_features, data.val_targets)
    fit = fit_converged(head, train, val, scored, class_weights=class_weights, seed=recipe.data.seed)
    if fit is not None:
        console.print(fit.line(), highlight=False)
        if fit.kept:
            rows[-1].update(validate(head, data, class_weights, task_for(task)))
    return fit


def _epoch_printer(recipe: Recipe, console: Console) -> Callable[[dict], None]:
    def show(row: dict) -> None:
        console.print(
            f"head epoch {row['epoch']}/{recipe.schedule.frozen_epochs} on cached features: "
            f"val accuracy {row['val_accuracy']:.4f}, macro-F1 {row['val_macro_f1']:.4f} ({row['seconds']:.1f} s)",
            highlight=False,
        )

    return show


def _say_shift(train, val, console: Console) -> None:
    from imagefit.evaluation.shift import WARN_AUC, domain_shift

    shift = domain_shift(train, val, compared="train vs val")
    if shift is not None and shift.auc >= WARN_AUC:
        console.print(
            f"[yellow]warning:[/] val looks unlike train (domain AUC {shift.auc:.2f}; 0.5 is alike): expect test "
            "figures to differ; see `imagefit audit DATA`",
            highlight=False,
        )
