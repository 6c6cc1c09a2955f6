"""The LightningModule: loss, metrics and optimizer of the recipe; the engineering lives in the Trainer."""

from __future__ import annotations

import dataclasses
import time

import lightning as L
import torch
from timm.data import Mixup
from timm.optim import create_optimizer_v2
from torch.optim.lr_scheduler import LambdaLR

from imagefit.config import Recipe
from imagefit.models import ImageClassifier
from imagefit.tasks import Task, task_for
from imagefit.training.schedule import PhaseSchedule, weight_decay_groups


class ClassifierModule(L.LightningModule):
    """Train an ImageClassifier with label smoothing, class weights, optional MixUp/CutMix and the phase schedule."""

    def __init__(
        self,
        model: ImageClassifier,
        recipe: Recipe,
        num_classes: int,
        class_weights: torch.Tensor | None = None,
        frozen_epochs: int | None = None,
        task: str | Task = "single-label",
    ):
        super().__init__()
        self.task = task_for(task)  # multi-label: class_weights are per-label positive weights
        # Frozen epochs this Trainer runs: 0 when the head was trained on cached features beforehand.
        self.frozen_epochs = recipe.schedule.frozen_epochs if frozen_epochs is None else frozen_epochs
        self.model = model
        self.recipe = recipe
        self.num_classes = num_classes
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(num_classes))
        self.use_class_weights = class_weights is not None
        self.mixup = _make_mixup(recipe, num_classes)
        self.val_accuracy, self.val_f1 = self.task.val_metrics(num_classes)
        self.phase = 1
        # Phase 1 runs the backbone without gradients instead of freezing it: set under DDP by FreezeBackbone.
        self.hold_backbone = False
        self._epoch_loss = torch.zeros(2)
        self._epoch_started = 0.0
        self._images_seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.recipe.engine.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.hold_backbone and self.phase == 1:  # frozen without turning requires_grad off (FreezeBackbone)
            with torch.no_grad():
                features = self.model.backbone(images)
            return self.model.head(features)
        return self.model(images)

    def on_fit_start(self) -> None:
        if self.recipe.engine.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def plain_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss without label smoothing (what validation and the soup score)."""
        return self._loss(logits, targets, 0.0)

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
        weight = self.class_weights if self.use_class_weights else None
        return self.task.loss(logits, targets, weight, smoothing)

    def on_train_epoch_start(self) -> None:
        self._epoch_loss = torch.zeros(2)
        self._epoch_started = time.perf_counter()
        self._images_seen = 0

    def training_step(self, batch, batch_idx):
        images, targets = batch
        smoothing = self.recipe.optim.label_smoothing
        soft = targets.dim() == 2 and not self.task.mixes_label_rows  # one label's soft pseudo-label rows: not mixed
        if self.mixup is not None and len(images) % 2 == 0 and not soft:
            images, targets = self.task.mix(self.mixup, images, targets)
            smoothing = 0.0
        loss = self._loss(self(images), targets, smoothing)
        self._epoch_loss += torch.tensor([loss.item() * len(images), len(images)])
        self._images_seen += len(images) * self.trainer.world_size
        speed = self._images_seen / max(1e-6, time.perf_counter() - self._epoch_started)
        self.log_dict({"phase": float(self.phase), "img_s": speed}, prog_bar=True, on_step=True, on_epoch=False)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    @property
    def epoch_train_loss(self) -> float:
        """Mean training loss of the current epoch so far (this process's batches)."""
        return float(self._epoch_loss[0] / self._epoch_loss[1]) if self._epoch_loss[1] else float("nan")

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        logits = self(images)
        loss = self._loss(logits, targets, 0.0)
        scores, truth = self.task.scored(logits, targets)
        self.val_accuracy.update(scores, truth)
        self.val_f1.update(scores, truth)
        self.log("val_loss", loss, prog_bar=False, on_epoch=True, sync_dist=True, batch_size=len(images))
        self.log("val_acc", self.val_accuracy, prog_bar=True, on_epoch=True)
        self.log("val_f1", self.val_f1, prog_bar=True, on_epoch=True)

    def configure_optimizers(self):
        optim = self.recipe.optim
        groups = weight_decay_groups(self.model, optim.weight_decay, lr=optim.lr, layer_decay=optim.layer_decay)
        optimizer = create_optimizer_v2(groups, opt=optim.optimizer, lr=optim.lr, weight_decay=optim.weight_decay)
        schedule = self.recipe.schedule
        self._steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // max(1, self.trainer.max_epochs))
        self.curve = PhaseSchedule(
            frozen_steps=self.frozen_epochs * self._steps_per_epoch,
            total_steps=self.trainer.max_epochs * self._steps_per_epoch,
            warmup_steps=int(schedule.warmup_epochs * self._steps_per_epoch),
            finetune_ratio=optim.finetune_lr_ratio,
        )
        scheduler = LambdaLR(optimizer, lambda step: self.curve(step))  # `retarget` may move the curve's end
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def retarget(self, epochs: float) -> None:
        """Make the learning-rate curve end after `epochs` epochs (a time limit re-planned the run; a fraction where
        the last epoch is partial)."""
        self.curve = dataclasses.replace(self.curve, total_steps=round(epochs * self._steps_per_epoch))


def _make_mixup(recipe: Recipe, num_classes: int) -> Mixup | None:
    augment = recipe.augment
    if augment.mixup <= 0 and augment.cutmix <= 0:
        return None
    return Mixup(
        mixup_alpha=augment.mixup,
        cutmix_alpha=augment.cutmix,
        label_smoothing=recipe.optim.label_smoothing,
        num_classes=num_classes,
    )
