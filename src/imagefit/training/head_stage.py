"""Stage `head`: phase 1 on cached features of the frozen backbone (or its rows, when a resumed run has it),
then what the data measures on val, the far-data rate probe, the time plan's revision and --lr auto's range
test. Each returns the recipe it settles on."""

from __future__ import annotations

from rich.console import Console
from safetensors.torch import load_file

from imagefit import runs
from imagefit.config import Recipe
from imagefit.data.inventory import content_hashes
from imagefit.files import cpu_tensors, save_tensors
from imagefit.tasks import task_for
from imagefit.training.baseline import Measured, majority_rate, pixel_baseline
from imagefit.training.budget import TimePlan, last_epoch, replan_epochs
from imagefit.training.distance import FAR_SHIFT
from imagefit.training.engine import on_gpu
from imagefit.training.frozen import cached_head_phase
from imagefit.training.lr_find import lr_find_stage, wants_lr_find
from imagefit.training.plan import Plan, StageFn, with_recipe
from imagefit.training.probe import probe_batches, probe_rates
from imagefit.training.setup import Setup


def head_stage(
    plan: Plan, setup: Setup, *, stage: str, offset: int, console: Console, notify: StageFn
) -> tuple[Plan, list[dict]]:
    """Phase 1 when it is still to run (else its rows), what the data measures on val, the far-data rate probe,
    the time plan's revision, --lr auto's test.

    Returns the plan with the recipe fine-tuning will use, and the head phase's history rows.
    """
    files = plan.files
    head_rows: list[dict] = []
    if offset and stage == "new":
        head_rows = head_phase(plan, setup, console, notify)
        measure(plan, setup, head_rows, console)
        if wants_probe(plan, setup):
            plan = with_recipe(plan, probe_stage(plan, setup, console, notify))
        if setup.budget is not None:
            plan = with_recipe(plan, replan(plan, setup.budget, console))
    elif offset and stage == "head":  # phase 1 is done: its model and history rows are in the run folder
        setup.model.load_state_dict(load_file(str(files.head_only)))
        head_rows = runs.read_history(files.history)[:offset]
    if wants_lr_find(plan, stage):
        plan = with_recipe(plan, lr_find_stage(plan, setup, console))
    return plan, head_rows


def head_phase(plan: Plan, setup: Setup, console: Console, notify: StageFn) -> list[dict]:
    """Phase 1 on cached features; the head-only model and its history rows are kept in the run folder."""
    files = plan.files
    model = setup.model
    rows, fit = cached_head_phase(
        model,
        plan.samples,
        plan.classes,
        plan.hashes or content_hashes([s.path for s in plan.samples]),  # a resumed run re-hashes its files
        setup.preprocess,
        plan.recipe,
        sampler=setup.imbalance == "sampler",
        class_weights=setup.class_weights,
        device="cuda" if on_gpu(plan.recipe) else "cpu",
        console=console,
        on_stage=notify,
        check_shift=plan.own_val,
        task=plan.task,
        soft=plan.soft,
    )
    save_tensors(files.head_only, cpu_tensors(model.state_dict()))
    runs.write_rows(files.history, runs.HISTORY_COLUMNS, rows)
    if fit is not None:
        runs.ConfigRecord(files).set_head_fit(fit.to_dict())
    return rows


def measure(plan: Plan, setup: Setup, head_rows: list[dict], console: Console) -> Measured | None:
    """The majority rate, the raw-pixel baseline and the head on val: said in one line, kept in config.json."""
    if not task_for(plan.task).offers("baseline"):
        return None
    train = [s for s in plan.samples if s.split == "train"]
    val = [s for s in plan.samples if s.split == "val"]
    measured = Measured(
        majority=majority_rate([s.label for s in val]),
        pixels=pixel_baseline(train, val, setup.preprocess, seed=plan.recipe.data.seed),
        head=head_rows[-1]["val_accuracy"] if head_rows else None,
        shift=setup.shift,
    )
    console.print(measured.line(), highlight=False)
    runs.ConfigRecord(plan.files).set_measured(measured.to_dict())
    return measured


def wants_probe(plan: Plan, setup: Setup) -> bool:
    """--probe on far data (adapt's shift), the rate not set by the user (nor --lr auto), fine-tuning to come."""
    recipe = plan.recipe
    far = setup.shift is not None and setup.shift > FAR_SHIFT
    fine_tunes = recipe.schedule.epochs > recipe.schedule.frozen_epochs
    chosen = "finetune_lr_ratio" in plan.given or recipe.optim.lr_find
    return far and recipe.schedule.adapt and recipe.schedule.probe and fine_tunes and not chosen


def probe_stage(plan: Plan, setup: Setup, console: Console, notify: StageFn) -> Recipe:
    """The fine-tuning rate the probe chooses (said, and kept in config.json with the probe's figures)."""
    notify("probe")
    task = task_for(plan.task)
    train = [s for s in plan.samples if s.split == "train"]
    batches, held = probe_batches(train, setup.preprocess, plan.recipe, task, plan.classes, seed=plan.recipe.data.seed)
    weights = setup.class_weights

    def loss(logits, targets, smoothing):
        return task.loss(logits, targets, weights, smoothing)

    result = probe_rates(setup.model, plan.recipe, batches, held, loss)
    console.print(result.line(), highlight=False)
    recipe = plan.recipe.override(finetune_lr_ratio=result.chosen)
    runs.ConfigRecord(plan.files).set_probe(recipe.to_dict(), result.to_dict())
    return recipe


def replan(plan: Plan, budget: TimePlan, console: Console) -> Recipe:
    """Fine-tuning epochs re-fitted to the time left once the feature pass has run; saved in config.json."""
    frozen = plan.recipe.schedule.frozen_epochs
    fit = replan_epochs(budget, started=plan.started, wanted=plan.epoch_cap() - frozen)
    epochs = frozen + last_epoch(fit)  # a partial last epoch is cut short by the time budget's callback
    if epochs == plan.recipe.schedule.epochs:
        return plan.recipe
    shown = f"{fit:.0f}" if fit == int(fit) else f"{fit:.1f}"
    console.print(f"plan: {shown} fine-tuning epochs fit in the time left", highlight=False)
    recipe = plan.recipe.override(epochs=epochs)
    runs.ConfigRecord(plan.files).set_recipe(recipe.to_dict())
    return recipe
