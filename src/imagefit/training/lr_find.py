"""`imagefit lr-find DATA`: Lightning's learning-rate range test on the whole network, as fastai's lr_find.

The learning rate grows exponentially over a few dozen steps while the loss is recorded; the
suggestion is the steepest fall of the (smoothed) loss. It is a fine-tuning rate: with the
recipe's head rate `lr`, `--finetune-lr-ratio` is the suggestion divided by `lr`.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from imagefit import runs
from imagefit.config import Recipe
from imagefit.files import write_bytes
from imagefit.training.module import ClassifierModule
from imagefit.training.plan import Plan, check_model, inherited_run_dir, resolve_image_size
from imagefit.training.setup import Setup

# --lr auto: optimizer steps of the range test (fastai and Lightning take 100; 50 halve its cost on a CPU).
LR_FIND_STEPS = 50


@dataclass
class LrFind:
    suggestion: float | None
    ratio: float | None  # suggestion / recipe lr: the --finetune-lr-ratio to pass
    plot: Path


def lr_find(
    data: str | Path, *, out: str | Path = "lr-find.png", steps: int = 100, console: Console | None = None, **overrides
) -> LrFind:
    """Run the range test on DATA's training split with the recipe (overridden by keyword); plot to OUT."""
    import lightning as L

    from imagefit.data import assign_splits, scan
    from imagefit.data.datamodule import ImageDataModule
    from imagefit.models import build_classifier

    console = console or Console(stderr=True, soft_wrap=True)
    recipe = Recipe().override(**overrides).override(frozen_epochs=0, epochs=1)
    check_model(recipe)
    inventory = scan(Path(data))
    recipe = resolve_image_size(recipe, console)
    samples = assign_splits(
        inventory.samples, val_split=recipe.data.val_split, test_split=0.0, seed=recipe.data.seed, task=inventory.task
    )
    L.seed_everything(recipe.data.seed, verbose=False)
    model, preprocess, _ = build_classifier(recipe.model, len(inventory.classes), classes=inventory.classes)
    datamodule = ImageDataModule(
        samples, inventory.classes, preprocess, data=recipe.data, augment=recipe.augment, task=inventory.task
    )
    module = ClassifierModule(model, recipe, len(inventory.classes), frozen_epochs=0, task=inventory.task)
    return range_test(module, datamodule, recipe, out=Path(out), steps=steps)


def range_test(module, datamodule, recipe: Recipe, *, out: Path, steps: int) -> LrFind:
    """The range test of MODULE (all of it training, BatchNorm as the recipe fine-tunes it) on DATAMODULE's
    training images; the loss plot goes to OUT. MODULE's weights are left as they were (Lightning restores them).
    """
    import lightning as L
    import matplotlib.pyplot as plt
    from lightning.pytorch.tuner import Tuner

    from imagefit.training.engine import trainer_precision

    _fine_tuning_on_its_own(module, train_bn=recipe.schedule.finetune_bn, keep_frozen=recipe.schedule.keep_frozen)
    # Whole batches, no micro-batches: with gradient accumulation Lightning's finder records only the last
    # micro-batch's loss, divided by the accumulation (a noisier curve on a quarter of the images).
    loader_recipe = datamodule.recipe
    datamodule.recipe = dataclasses.replace(loader_recipe, micro_batch=0)
    trainer = L.Trainer(
        accelerator=recipe.engine.accelerator,
        devices=1,
        precision=trainer_precision(recipe),
        max_epochs=10_000,  # the range test stops itself after `steps` steps, however many epochs that takes
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out.parent,
    )
    try:
        found = Tuner(trainer).lr_find(
            module, datamodule=datamodule, min_lr=1e-6, max_lr=1.0, num_training=steps, update_attr=False
        )
    finally:
        datamodule.recipe = loader_recipe
    figure = found.plot(suggest=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    write_bytes(out, buffer.getvalue())
    plt.close(figure)
    suggestion = found.suggestion()
    ratio = suggestion / recipe.optim.lr if suggestion else None
    return LrFind(suggestion, ratio, out)


def _fine_tuning_on_its_own(module, *, train_bn: bool, keep_frozen: float = 0.0) -> None:
    """MODULE trains as fine-tuning does without the Trainer's callbacks, which Lightning's finder drops (it runs
    with its own callback alone): the network trainable but the early layers of KEEP_FROZEN, BatchNorm
    statistics kept unless TRAIN_BN."""
    from imagefit.training.callbacks import keep_batchnorm_statistics
    from imagefit.training.schedule import train_as_fine_tuning

    train_as_fine_tuning(module.model, keep_frozen)
    module.phase = 2
    if train_bn:
        return
    start = module.on_train_batch_start

    def on_train_batch_start(batch, batch_idx):  # after Lightning's own train() calls, before every step
        keep_batchnorm_statistics(module.model.backbone)
        return start(batch, batch_idx)

    module.on_train_batch_start = on_train_batch_start


def wants_lr_find(plan: Plan, stage: str) -> bool:
    """--lr auto, fine-tuning still to come, no range test recorded yet, and not a DDP launcher's extra process."""
    recipe = plan.recipe
    if not recipe.optim.lr_find or recipe.schedule.epochs == recipe.schedule.frozen_epochs:
        return False
    recorded = runs.ConfigRecord(plan.files).has("lr_find")
    return stage in ("new", "head") and not recorded and inherited_run_dir() is None


def lr_find_stage(plan: Plan, setup: Setup, console: Console) -> Recipe:
    """The range test on a copy of the network with its trained head: the recipe at its suggestion, recorded."""
    recipe = plan.recipe
    probe = ClassifierModule(
        copy.deepcopy(setup.model), recipe, len(plan.classes), class_weights=setup.class_weights, frozen_epochs=0,
        task=plan.task,
    )  # fmt: skip
    started = time.perf_counter()
    found = range_test(probe, setup.datamodule, recipe, out=plan.files.lr_find, steps=LR_FIND_STEPS)
    facts = {"steps": LR_FIND_STEPS, "suggestion": found.suggestion, "seconds": round(time.perf_counter() - started)}
    if found.suggestion is None:
        console.print(
            f"lr auto: the range test gave no suggestion (the loss never fell steadily; {found.plot.name}): "
            f"fine-tuning at {recipe.optim.lr * recipe.optim.finetune_lr_ratio:.2e} as the recipe says",
            highlight=False,
        )
    else:
        recipe = recipe.override(finetune_lr_ratio=found.ratio)
        console.print(
            f"lr auto: the range test ({LR_FIND_STEPS} steps, {facts['seconds']} s) suggests fine-tuning at "
            f"{found.suggestion:.2e} (finetune-lr-ratio {found.ratio:.3g}; plot: {found.plot.name})",
            highlight=False,
        )
    runs.ConfigRecord(plan.files).set_lr_find(recipe.to_dict(), facts)
    return recipe
