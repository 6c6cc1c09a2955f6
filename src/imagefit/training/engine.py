"""The Lightning Trainer of a run: devices, precision, the recipe's callbacks, and what it recorded."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from imagefit import runs
from imagefit.config import Recipe
from imagefit.errors import UserError
from imagefit.training.callbacks import (
    EMAWeights,
    EpochBar,
    EpochLog,
    FreezeBackbone,
    History,
    PhaseTwoEarlyStopping,
    ReleaseMemory,
)
from imagefit.training.soup import EpochWeights

# Epochs are chosen, and phase 2 stopped, on validation loss (class-weighted cross-entropy): on
# clothing-small's 341 val images macro-F1 moves by a point from one image, and stopped at
# fine-tuning epoch 2 (issue 6's closing note).
SELECT_BY = "val_loss"


EMA_SPAN = 2  # EMA only where fine-tuning runs at least twice its horizon (measured at 7 epochs, horizon 2)


def on_gpu(recipe: Recipe) -> bool:
    """Whether this run trains on a CUDA GPU (asked for, or 'auto' with one present)."""
    accelerator = recipe.engine.accelerator
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def check_engine(recipe: Recipe) -> None:
    """UserError, before any work, for a strategy Lightning does not know or a logger whose package is missing."""
    from lightning.pytorch.strategies import StrategyRegistry

    if recipe.engine.logger in ("tensorboard", "mlflow"):
        _need(recipe.engine.logger, {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny"}[recipe.engine.logger])

    known = ["auto", *StrategyRegistry.available_strategies()]
    if recipe.engine.strategy not in known:
        raise UserError(f"strategy={recipe.engine.strategy!r} is not one of: {', '.join(known)}")


def trainer_precision(recipe: Recipe) -> str:
    if recipe.engine.precision != "auto":
        return recipe.engine.precision
    if not on_gpu(recipe):
        return "32-true"  # bf16 autocast on CPUs without native bf16 is many times slower
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _devices(text: str):
    if text == "auto":
        return "auto"
    return int(text) if text.lstrip("-").isdigit() else [int(d) for d in text.split(",") if d.strip()]


def build_trainer(
    recipe: Recipe,
    run_dir: Path,
    *,
    offset: int = 0,
    head_rows: list[dict] | None = None,
    extra: list | None = None,
    max_time: timedelta | None = None,
    echo: Callable[[str], None] | None = None,
) -> tuple[L.Trainer, ModelCheckpoint]:
    """The Lightning Trainer; with `offset` head epochs already done on features, it runs the rest.

    Progress is Rich's bar, or with `echo` (output that is not a terminal) one plain line an epoch.
    """
    schedule = recipe.schedule
    history = History(runs.RunFiles(run_dir).history, offset=offset)
    history.rows = list(head_rows or [])
    checkpoint = _checkpoint(run_dir)
    callbacks = [
        *_phase_callbacks(recipe, offset, history, echo),
        checkpoint,
        ReleaseMemory(),
        *(extra or []),
        *_averaging(recipe, run_dir, offset),
    ]
    trainer = L.Trainer(
        accumulate_grad_batches=recipe.data.batch_size // recipe.data.forward_batch,
        max_epochs=schedule.epochs - offset,
        max_time=max_time,
        accelerator=recipe.engine.accelerator,
        devices=_devices(recipe.engine.devices),
        strategy=recipe.engine.strategy,
        num_nodes=recipe.engine.num_nodes,
        precision=trainer_precision(recipe),
        callbacks=callbacks,
        logger=make_logger(recipe.engine.logger, run_dir),
        enable_progress_bar=echo is None,
        default_root_dir=run_dir,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        deterministic=False,
        reload_dataloaders_every_n_epochs=1 if schedule.progressive_size else 0,  # a new image size per epoch
    )
    return trainer, checkpoint


def _checkpoint(run_dir: Path) -> ModelCheckpoint:
    """checkpoints/best.ckpt (lowest val loss) and last.ckpt (to resume from), overwritten in place."""
    return ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=SELECT_BY,
        mode="min",
        save_last=True,
        save_top_k=1,
        enable_version_counter=False,
    )


def _phase_callbacks(recipe: Recipe, offset: int, history: History, echo) -> list:
    """The phase switch, early stopping in phase 2, the history and the progress display."""
    schedule = recipe.schedule
    frozen = schedule.frozen_epochs - offset
    return [
        FreezeBackbone(unfreeze_at_epoch=frozen, train_bn=schedule.finetune_bn, keep_frozen=schedule.keep_frozen),
        PhaseTwoEarlyStopping(start_epoch=frozen, monitor=SELECT_BY, mode="min", patience=schedule.patience),
        history,
        EpochLog(history, echo) if echo else EpochBar(offset=offset),
    ]


def _averaging(recipe: Recipe, run_dir: Path, offset: int) -> list:
    """EMA of the weights, or the fine-tuning epochs saved for a soup, or nothing."""
    schedule = recipe.schedule
    frozen = schedule.frozen_epochs - offset
    if ema_applies(recipe):
        return [EMAWeights(horizon_epochs=schedule.ema_epochs, start_epoch=frozen)]
    if soup_applies(recipe):
        return [EpochWeights(run_dir / "checkpoints", offset=offset, start_epoch=frozen)]
    return []


def ema_applies(recipe: Recipe) -> bool:
    """Whether the weights are averaged (EMA): asked for, and at least EMA_SPAN times its horizon of fine-tuning
    epochs, so the average is not mostly the warm-up (a run that `--time-limit` cut to 1-3 epochs trains plain)."""
    schedule = recipe.schedule
    return schedule.ema_epochs > 0 and schedule.epochs - schedule.frozen_epochs >= EMA_SPAN * schedule.ema_epochs


def soup_applies(recipe: Recipe) -> bool:
    """Whether fine-tuning epochs are saved for a soup: asked for, kept by val loss, and no EMA already averaging."""
    schedule = recipe.schedule
    return schedule.soup and schedule.keep == "best" and not ema_applies(recipe)


def make_logger(kind: str, run_dir: Path):
    """Lightning's logger of that kind writing beside the run folder's own history.csv, or False for none."""
    from lightning.pytorch import loggers

    if kind == "none":
        return False
    if kind == "csv":
        return loggers.CSVLogger(save_dir=run_dir, name=runs.RunFiles(run_dir).logs.name, version="")
    if kind == "tensorboard":
        _need("tensorboard", "tensorboard")
        return loggers.TensorBoardLogger(save_dir=run_dir, name=runs.RunFiles(run_dir).logs.name, version="")
    _need("mlflow", "mlflow-skinny")
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    return loggers.MLFlowLogger(experiment_name="imagefit", run_name=run_dir.name, tracking_uri=tracking)


def _need(module: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"--logger {module} needs the {package} package: pip install {package}")


def history_of(trainer: L.Trainer) -> History:
    return next(c for c in trainer.callbacks if isinstance(c, History))


def best_epoch(trainer: L.Trainer) -> int | None:
    """The kept epoch: the lowest val loss among the head's last epoch and the fine-tuning epochs (or the last).

    The run keeps the head-only model exactly when this is the head's last epoch (`history.offset`).
    """
    history = history_of(trainer)
    last_kept = trainer.lightning_module is not None and trainer.lightning_module.recipe.schedule.keep == "last"
    if not trainer.max_epochs or last_kept:  # head only, or --keep last: the last epoch is kept
        return history.rows[-1]["epoch"] if history.rows else None
    rows = [r for r in history.rows if r["epoch"] >= history.offset]  # the head's last epoch, then phase 2
    if not rows:
        return None
    # A tie goes to fine-tuning; among fine-tuning epochs, the first best (as ModelCheckpoint keeps it).
    return min(rows, key=lambda row: (row["val_loss"], row["epoch"] <= history.offset))["epoch"]
