"""Stage `fine-tune`: the whole network under Lightning (phase 2), from the last checkpoint when resuming; then
the kept epoch's weights (or the head-only model's), averaged with other epochs when the soup helps, saved."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from rich.console import Console
from safetensors.torch import load_file

from imagefit import runs
from imagefit.files import cpu_tensors, save_tensors
from imagefit.training.callbacks import StageHook
from imagefit.training.deadline import TimeBudget
from imagefit.training.engine import best_epoch, build_trainer, history_of, soup_applies
from imagefit.training.environment import training_facts
from imagefit.training.module import ClassifierModule
from imagefit.training.nodes import lost_peer
from imagefit.training.plan import RUN_DIR_ENV, Plan, StageFn
from imagefit.training.schedule import progressive_sizes
from imagefit.training.setup import Setup
from imagefit.training.soup import epoch_file, greedy_soup, load_epoch, val_loss_fn


def fine_tune_stage(
    plan: Plan,
    setup: Setup,
    *,
    stage: str,
    offset: int,
    head_rows: list[dict],
    callbacks: list | None,
    console: Console,
    notify: StageFn,
) -> dict[str, torch.Tensor] | None:
    """Fine-tune and save the kept weights; returns them, or None in the extra processes of a DDP run."""
    files = plan.files
    module = ClassifierModule(
        setup.model,
        plan.recipe,
        len(plan.classes),
        class_weights=setup.class_weights,
        frozen_epochs=plan.recipe.schedule.frozen_epochs - offset,
        task=plan.task,
    )
    extra = [StageHook(notify, offset=offset), *(callbacks or [])]
    trainer, checkpoint = _trainer(plan, setup, offset=offset, head_rows=head_rows, extra=extra, console=console)
    if trainer.max_epochs == 0:  # the head alone was asked for, and it is trained
        history_of(trainer).write()
        weights = cpu_tensors(setup.model.state_dict())
        save_trained(plan, trainer, weights)
        return weights
    notify("fine-tune")
    run_fit(trainer, module, setup.datamodule, files, resume=stage == "fine-tune")
    if not trainer.is_global_zero:
        return None
    weights = kept_weights(files, checkpoint, trainer)
    if soup_applies(module.recipe):
        weights = soup(plan, setup, module, trainer, weights, console)
    save_trained(plan, trainer, weights)
    for path in files.checkpoints.glob("epoch-*.safetensors"):  # the soup's candidates, no longer needed
        path.unlink()
    return weights


def _trainer(plan: Plan, setup: Setup, *, offset: int, head_rows: list[dict], extra: list, console: Console):
    """Lightning's Trainer for phase 2 (with the time budget's callback), and its checkpoint callback."""
    recipe = plan.recipe
    left = None
    if setup.budget is not None:
        budget = setup.budget
        keeper = TimeBudget(
            plan.started + budget.limit,
            finish=budget.finish_seconds,
            val=budget.val_seconds,
            cap=plan.epoch_cap() - offset,
            say=lambda line: console.print(line, highlight=False),
            offset=offset,
            epoch=budget.epoch_seconds,
        )
        left = timedelta(seconds=max(1.0, keeper.deadline - time.perf_counter()))
        extra.append(keeper)
    echo = None if console.is_terminal else lambda line: console.print(line, highlight=False, soft_wrap=True)
    trainer, checkpoint = build_trainer(
        recipe, plan.run_dir, offset=offset, head_rows=head_rows, extra=extra, max_time=left, echo=echo
    )
    if recipe.schedule.progressive_size:
        first = recipe.schedule.frozen_epochs - offset
        setup.datamodule.size_at = progressive_sizes(
            setup.preprocess.size, recipe.schedule.progressive_size, first=first, end=recipe.schedule.epochs - offset
        )
    return trainer, checkpoint


def run_fit(trainer: L.Trainer, module, datamodule, files: runs.RunFiles, *, resume: bool) -> None:
    """Lightning's fit, from the last checkpoint when resuming; a Ctrl-C in it comes out as KeyboardInterrupt."""
    os.environ[RUN_DIR_ENV] = str(files.root.resolve())
    try:
        resume_from = files.last_checkpoint if resume else None
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into a graceful stop and exit(1)
            raise KeyboardInterrupt from None
        raise
    except RuntimeError as exc:  # torch.distributed's errors included
        said = lost_peer(exc, files.root)
        if said is None:
            raise
        raise said from None
    finally:
        os.environ.pop(RUN_DIR_ENV, None)


def kept_weights(files: runs.RunFiles, checkpoint: ModelCheckpoint, trainer: L.Trainer) -> dict[str, torch.Tensor]:
    """The best checkpoint's weights, or the head-only model when its val loss beat every fine-tuning epoch's."""
    best = checkpoint.best_model_path or str(files.last_checkpoint)
    if trainer.lightning_module.recipe.schedule.keep == "last":
        best = str(files.last_checkpoint)
    history = history_of(trainer)
    if not Path(best).exists() and files.head_only.exists():  # stopped (time limit) before a fine-tuning epoch ended
        return load_file(str(files.head_only))
    if history.offset and files.head_only.exists() and best_epoch(trainer) == history.offset:
        return load_file(str(files.head_only))
    return cpu_tensors(torch.load(best, map_location="cpu", weights_only=True)["state_dict"], "model.")


def soup(plan: Plan, setup: Setup, module, trainer: L.Trainer, weights: dict, console: Console) -> dict:
    """The greedy soup of the fine-tuning epochs when it lowers val loss (else WEIGHTS); said and saved."""
    files = plan.files
    kept = best_epoch(trainer)
    losses = {
        row["epoch"]: row["val_loss"]
        for row in history_of(trainer).rows
        if row["phase"] == 2 and epoch_file(files.checkpoints, row["epoch"]).exists()
    }
    if kept not in losses or len(losses) < 2:  # the head alone was kept, or one fine-tuning epoch ran
        return weights
    deadline = plan.started + setup.budget.deadline if setup.budget is not None else None
    score = val_loss_fn(module.model, setup.datamodule.val_dataloader(), module.plain_loss, str(module.device))
    time_left = (lambda: deadline - time.perf_counter()) if deadline else None
    found = greedy_soup(kept, losses, load_epoch(files.checkpoints), score, time_left=time_left)
    facts = {"epochs": found.epochs, "tried": found.tried, "val_loss": found.val_loss}
    facts["single_val_loss"] = found.single_val_loss
    runs.ConfigRecord(files).set_soup(facts)
    if len(found.epochs) == 1:
        console.print(f"soup: no other epoch lowered val loss; epoch {kept} alone is kept", highlight=False)
        return weights
    console.print(
        f"soup: epochs {'+'.join(map(str, found.epochs))} averaged, val loss {found.single_val_loss:.4f} -> "
        f"{found.val_loss:.4f} (chosen on val)",
        highlight=False,
    )
    return found.weights


def save_trained(plan: Plan, trainer: L.Trainer, weights: dict[str, torch.Tensor]) -> None:
    """The kept weights to model.safetensors, the kept epoch to metrics.json, how it trained to env.json."""
    files = plan.files
    save_tensors(files.model, weights)
    runs.write_json(files.metrics, {"best_epoch": best_epoch(trainer)})
    runs.write_json(files.env, {**runs.read_json(files.env), **training_facts(trainer)})
