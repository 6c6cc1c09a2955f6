"""Recipe behaviour that cuts across training, as Lightning callbacks that survive a resume."""

from __future__ import annotations

import ctypes
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning, EarlyStopping, RichProgressBar, WeightAveraging
from lightning.pytorch.strategies import DDPStrategy
from torch.nn.modules.batchnorm import _BatchNorm

from imagefit.files import write_rows
from imagefit.runs import HISTORY_COLUMNS
from imagefit.training.schedule import freeze_early_layers, train_as_fine_tuning


class FreezeBackbone(BaseFinetuning):
    """Phase 1: backbone frozen with BatchNorm in eval mode; from `unfreeze_at_epoch` on, all of it trains.

    Train/eval modes are set every epoch: Lightning keeps whatever mode a submodule was left in.
    In phase 2 the backbone's BatchNorm layers keep their pretrained running statistics unless
    `train_bn` (their scale and shift still train). With `keep_frozen`, the backbone's first layers
    holding that share of its parameters stay frozen in phase 2 (`schedule.early_layers`).
    """

    def __init__(self, unfreeze_at_epoch: int, *, train_bn: bool = False, keep_frozen: float = 0.0):
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.train_bn = train_bn
        self.keep_frozen = keep_frozen

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning issue #20340: DDP leaves the parameters frozen when it wraps the model out of its
        # gradient all-reduce for good, so after the unfreeze each process would train its own backbone.
        # Under DDP the backbone stays trainable at the wrap, phase 1 runs it without gradients
        # (ClassifierModule.hold_backbone), and DDP is told to expect parameters without them.
        pl_module.hold_backbone = self.unfreeze_at_epoch > 0 and isinstance(trainer.strategy, DDPStrategy)
        if pl_module.hold_backbone:
            trainer.strategy._ddp_kwargs["find_unused_parameters"] = True  # what `ddp_find_unused_parameters_true` sets
        super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        if self.unfreeze_at_epoch > 0 and not pl_module.hold_backbone:
            self.freeze(pl_module.model.backbone, train_bn=False)
        # Before the strategy wraps the model: DDP lists the parameters that train once, when it wraps it.
        freeze_early_layers(pl_module.model.backbone, self.keep_frozen)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer) -> None:
        if epoch >= self.unfreeze_at_epoch and pl_module.phase == 1:
            # All parameters are in the optimizer from the start: unfreezing is enough, no new group.
            train_as_fine_tuning(pl_module.model, self.keep_frozen)
        pl_module.phase = 1 if epoch < self.unfreeze_at_epoch else 2

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        pl_module.model.train()
        if pl_module.phase == 1:
            pl_module.model.backbone.eval()  # frozen: BatchNorm keeps its statistics
        elif not self.train_bn:
            keep_batchnorm_statistics(pl_module.model.backbone)


def keep_batchnorm_statistics(module: torch.nn.Module) -> None:
    """Every BatchNorm layer of MODULE in eval mode: it normalises with its running statistics, and keeps them."""
    for layer in module.modules():
        if isinstance(layer, _BatchNorm):
            layer.eval()


class EMAWeights(WeightAveraging):
    """An exponential moving average of the weights over fine-tuning (Lightning's WeightAveraging).

    Validation, checkpoints and the kept model use the averaged weights. The decay targets a
    horizon of `horizon_epochs` epochs of steps, so short runs average over their own length (timm's
    0.9998 would leave a 500-step run mostly at its first weights), and warms up as (1 + n) / (10 + n)
    as timm's ModelEmaV3 does. Averaging starts with the fine-tuning epoch `start_epoch`.
    """

    def __init__(self, *, horizon_epochs: float, start_epoch: int = 0):
        super().__init__(avg_fn=self._average, use_buffers=True)
        self.horizon_epochs = horizon_epochs
        self.start_epoch = start_epoch
        self.decay = 0.0  # set when training starts, from the number of steps an epoch
        self._epoch = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        steps = max(1.0, self.horizon_epochs * trainer.num_training_batches)
        self.decay = 1.0 - 1.0 / steps

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch = trainer.current_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and self._epoch >= self.start_epoch

    def _average(self, averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        decay = min(self.decay, (1.0 + float(count)) / (10.0 + float(count)))
        return averaged * decay + current * (1.0 - decay)


class EpochBar(RichProgressBar):
    """Rich's progress bar, counting epochs as history.csv does (head epochs included), with short metrics."""

    def __init__(self, *, offset: int = 0):
        super().__init__(leave=True)
        self.offset = offset

    def _get_train_description(self, current_epoch: int) -> str:
        total = self.trainer.max_epochs + self.offset
        return f"epoch {current_epoch + 1 + self.offset}/{total}"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        shown = {}
        for key, label, digits in (("train_loss", "loss", 3), ("img_s", "img/s", 0), ("val_acc", "val acc", 4)):
            if key in metrics:
                shown[label] = f"{float(metrics[key]):.{digits}f}"
        return shown


class EpochLog(L.Callback):
    """One plain line per epoch, for logs and terminals that cannot redraw a bar (CI, nohup, notebooks)."""

    def __init__(self, history: History, echo: Callable[[str], None]):
        self.history = history
        self.echo = echo

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.history.rows:
            return
        row = self.history.rows[-1]
        total = trainer.max_epochs + self.history.offset
        what = "fine-tuning" if row["phase"] == 2 else "head, frozen backbone"
        self.echo(
            f"epoch {row['epoch']}/{total} ({what}): train loss {row['train_loss']:.4f}, val loss "
            f"{row['val_loss']:.4f}, val accuracy {row['val_accuracy']:.4f}, macro-F1 {row['val_macro_f1']:.4f} "
            f"({row['seconds']:.0f} s)"
        )


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc keeps it otherwise, and the RSS stays at its peak)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


class ReleaseMemory(L.Callback):
    """Trim the heap after each epoch's validation: the next phase starts from what is in use, not from a peak."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gc.collect()
        release_memory()


class StageHook(L.Callback):
    """Tell `on_stage` when each fine-tuning epoch starts, as "epoch N" (N counts the head epochs too)."""

    def __init__(self, on_stage: Callable[[str], None], *, offset: int = 0):
        self.on_stage = on_stage
        self.offset = offset

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_stage(f"epoch {trainer.current_epoch + 1 + self.offset}")


class PhaseTwoEarlyStopping(EarlyStopping):
    """Early stopping that only starts counting once the whole network trains."""

    def __init__(self, *, start_epoch: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        if trainer.current_epoch >= self.start_epoch:
            super()._run_early_stopping_check(trainer)


class History(L.Callback):
    """One row per epoch (phase, lr, losses, val accuracy and macro-F1, seconds), checkpointed and written to CSV."""

    def __init__(self, path: Path, *, offset: int = 0):
        self.path = Path(path)
        self.offset = offset  # epochs done before Lightning's first (the head on cached features)
        self.rows: list[dict[str, Any]] = []
        self._started = time.perf_counter()
        self._lr = float("nan")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        # the epoch's starting learning rate (the head's, the highest, with layer-wise decay)
        self._lr = max(group["lr"] for group in trainer.optimizers[0].param_groups)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs before ModelCheckpoint's hook (Lightning orders checkpoint callbacks last), so the
        # checkpoint of an epoch holds that epoch's row.
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row = {
            "epoch": trainer.current_epoch + 1 + self.offset,
            "phase": pl_module.phase,
            "lr": self._lr,
            "train_loss": pl_module.epoch_train_loss,
            "val_loss": float(metrics.get("val_loss", float("nan"))),
            "val_accuracy": float(metrics.get("val_acc", float("nan"))),
            "val_macro_f1": float(metrics.get("val_f1", float("nan"))),
            "seconds": round(time.perf_counter() - self._started, 2),
        }
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        if trainer.is_global_zero:
            self.write()

    def write(self) -> None:
        write_rows(self.path, HISTORY_COLUMNS, self.rows)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
