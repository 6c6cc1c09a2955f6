"""Stage `plan`: check and split DATA, make the run folder and write what the run is made of; or read it back.

A new run's plan is made before anything heavy runs: a wrong model name or an unreachable hub is
said within seconds, before the data is read; a wrong path is said before the model is resolved.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from imagefit import runs
from imagefit.config import AUTO_MICRO_BATCH, Recipe, fit_epochs
from imagefit.data import Sample, assign_splits, read_split, scan, write_split
from imagefit.data.checks import duplicate_findings
from imagefit.data.datamodule import default_workers
from imagefit.data.samples import remote_url
from imagefit.data.sources import ZIP_SEPARATOR, CsvColumns
from imagefit.errors import UserError
from imagefit.models.clip import check_clip_model, clip_tower, split_spec
from imagefit.models.factory import check_model_name, native_image_size
from imagefit.models.hub import check_weights_reachable
from imagefit.models.zeroshot import check_clip_reachable
from imagefit.tasks import task_for
from imagefit.training.budget import MAX_PLANNED_EPOCHS
from imagefit.training.engine import check_engine, on_gpu
from imagefit.training.environment import environment
from imagefit.training.nodes import join_first_process, launched_rank
from imagefit.training.pseudo import read_soft_labels

# A DDP launcher re-runs the command in each new process (LOCAL_RANK 1, 2 ...); they find the run
# folder of the first here. Honoured only in such a launched process, never in a user's shell.
RUN_DIR_ENV = "IMAGEFIT_RUN_DIR"
# The key of `carried` naming a pseudo-labels.csv (with soft labels) that a student's run folder keeps.
PSEUDO_LABELS = "pseudo_labels"
# Called with the name of each stage as it starts: "scan", "features", "head", "fine-tune", "epoch N"
# (N counts all epochs, head ones included), "evaluate", "report".
StageFn = Callable[[str], None]


def option_key(overrides: dict, name: str) -> str | None:
    """The key of OVERRIDES that sets the recipe option NAME, however it is spelt (`time-limit`, `time_limit`,
    `schedule.time_limit`); None when none does."""
    return next((k for k in overrides if k.replace("-", "_").split(".")[-1] == name), None)


def no_stage(stage: str) -> None:
    del stage


def inherited_run_dir() -> str | None:
    """The run folder handed to a process that a DDP launcher started, else None."""
    return os.environ.get(RUN_DIR_ENV) if os.environ.get("LOCAL_RANK", "0") != "0" else None


@dataclass(frozen=True)
class Plan:
    """What one training needs: where it writes, the recipe, the data and its fixed split."""

    run_dir: Path
    recipe: Recipe
    data: str
    samples: list[Sample]
    classes: list[str]
    hashes: dict[str, str] | None = None  # file content hashes, for the feature cache (new runs)
    started: float = field(default_factory=time.perf_counter)  # when train() was called, for --time-limit
    epochs_given: bool = False  # --epochs was passed: with --time-limit it caps the planned epochs
    own_val: bool = False  # the data brought its val split (not carved at random): worth a shift check
    task: str = "single-label"  # or "multi-label" (imagefit.tasks)
    given: frozenset = frozenset()  # recipe fields the user set: adaptation leaves them as set
    median_side: int = 0  # median shorter side of the images, in pixels (0: not known)
    carried: dict = field(default_factory=dict)  # config.json fields from another run (a refit's source)
    soft: dict = field(default_factory=dict)  # soft labels of pseudo-labelled training images, by path

    @property
    def files(self) -> runs.RunFiles:
        return runs.RunFiles(self.run_dir)

    def epoch_cap(self) -> int:
        """The most epochs (head ones included) a time limit may plan: --epochs when given."""
        schedule = self.recipe.schedule
        return schedule.epochs if self.epochs_given else schedule.frozen_epochs + MAX_PLANNED_EPOCHS


@dataclass(frozen=True)
class NewRun:
    """Where a new run's data is and where its folder goes, as `train` was called."""

    data: str | Path | None
    out: str | Path | None = None
    name: str | None = None
    runs_dir: str | Path = "runs"
    csv_columns: CsvColumns | None = None
    checks: bool = True  # the duplicate and leakage warnings (a refit validates on training images)
    carried: dict = field(default_factory=dict)


def new_plan(
    request: NewRun, overrides: dict, *, console: Console, notify: StageFn, started: float, made: list
) -> Plan:
    """Check and split DATA, make the run folder and write what the run is made of (its folder joins MADE)."""
    notify("scan")
    if request.data is None:
        raise UserError("no DATA given. Pass a folder of class folders, a CSV or a .zip")
    data = Path(request.data)
    overrides, note = fit_epochs(overrides)
    recipe = Recipe().override(**overrides)
    check_model(recipe)  # before any folder is made, and before the data is read
    check_engine(recipe)
    workers = max(2, default_workers(recipe.data.num_workers))
    inventory = scan(data, workers=workers, csv_columns=request.csv_columns)
    # After the data check: a wrong path says one line only.
    recipe = resolve_micro_batch(resolve_image_size(recipe, console))
    _say(inventory, note, recipe, console)
    samples = assign_splits(
        inventory.samples,
        val_split=recipe.data.val_split,
        test_split=recipe.data.test_split,
        seed=recipe.data.seed,
        task=inventory.task,
    )
    if request.checks:
        _warn_fast_findings(inventory, samples, request.data, console)
    run_dir, inherited = _run_folder(request)
    if inherited and runs.RunFiles(run_dir).config.exists():  # a DDP child runs the recipe its first process planned
        recipe = Recipe.from_dict(runs.ConfigRecord(runs.RunFiles(run_dir)).values()["recipe"]).override(time_limit="")
    sides = sorted(min(f.width, f.height) for f in inventory.facts.values() if f.width)
    plan = Plan(
        run_dir,
        recipe,
        remote_url(data) or str(data.expanduser().resolve()),
        samples,
        inventory.classes,
        inventory.hashes,
        started,
        epochs_given=any(key.replace("-", "_") in ("epochs", "schedule.epochs") for key in overrides),
        own_val=any(s.split == "val" for s in inventory.samples),
        task=inventory.task,
        given=frozenset(key.replace("-", "_").split(".")[-1] for key in overrides),
        median_side=sides[len(sides) // 2] if sides else 0,
        carried={k: v for k, v in request.carried.items() if k != PSEUDO_LABELS},
    )
    if not inherited:
        made.append(run_dir)
        _write_data_files(plan, inventory, request.carried.get(PSEUDO_LABELS))
    return with_soft_labels(plan)


def with_soft_labels(plan: Plan) -> Plan:
    """The plan with the soft labels its folder's pseudo-labels.csv records (a student of --unlabelled)."""
    files = plan.files
    if not files.pseudo_labels.exists():
        return plan
    return replace(plan, soft=read_soft_labels(files.pseudo_labels, plan.classes))


def _run_folder(request: NewRun) -> tuple[Path, bool]:
    """The new run's folder (made now), or the first process's in a DDP child; and whether it was inherited."""
    inherited = inherited_run_dir()
    if inherited:
        return Path(inherited), True
    if launched_rank() > 0:  # a later process of a multi-node (torchrun, srun) launch: the first one's folder
        return join_first_process(request.out), True
    out = Path(request.out) if request.out else None
    folder = runs.new_run_dir(data=Path(request.data), runs_dir=Path(request.runs_dir), name=request.name, out=out)
    return folder, False


def _write_data_files(plan: Plan, inventory, pseudo_labels: str | None) -> None:
    """split.csv, the unlabelled images, labels.json, env.json and a student's pseudo-labels.csv of a new run."""
    files = plan.files
    write_split(files.split, plan.samples)
    if pseudo_labels:
        shutil.copyfile(pseudo_labels, files.pseudo_labels)
    if inventory.unlabelled:
        runs.write_rows(files.unlabelled, ["path"], [[path] for path in inventory.unlabelled])
    runs.write_json(files.labels, plan.classes)
    runs.write_json(files.env, environment(data_fingerprint=inventory.fingerprint()))


def check_model(recipe: Recipe) -> None:
    """UserError for an unknown model name, or pretrained weights that cannot be had (within seconds, offline)."""
    if recipe.model.init == "clip":
        check_clip_model(recipe.model.clip_model)
        name, weights = split_spec(recipe.model.clip_model)
        if recipe.model.pretrained and weights and not Path(weights).exists():
            check_clip_reachable(name, weights)
        return
    check_model_name(recipe.model.model)
    if recipe.model.pretrained:
        check_weights_reachable(recipe.model.model)


def _say(inventory, note: str, recipe: Recipe, console: Console) -> None:
    """How the data was read, what was changed in the recipe, and the data's warnings; one line each."""
    if recipe.data.imbalance in ("sampler", "adjust"):
        task_for(inventory.task).require(recipe.data.imbalance)
    for line in [*inventory.notes, note]:
        if line:
            console.print(line, highlight=False)
    for warning in inventory.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _warn_fast_findings(inventory, samples: list[Sample], data, console: Console) -> None:
    """One warning line per cheap audit finding (exact duplicates, leakage, conflicting labels)."""
    counts = Counter(f.kind for f in duplicate_findings(samples, inventory.hashes))
    for kind, what in (
        ("leakage", "identical images in train and val/test"),
        ("conflicting_label", "identical images under two classes"),
        ("duplicate", "groups of byte-identical images"),
    ):
        if counts[kind]:
            console.print(f"[yellow]warning:[/] {counts[kind]} {what}; see `imagefit audit {data}`", highlight=False)


def _still_there(source: str) -> bool:
    """Whether an image's file, zip or shard folder is still there (an object-store URL is read when trained on)."""
    return remote_url(source) is not None or Path(source).exists()


def resume_plan(run_dir: Path, overrides: dict) -> Plan:
    """The plan of an interrupted run, read back from its folder (its recipe, split and classes)."""
    if launched_rank() > 0:  # the first process resumes the head before the others join
        join_first_process(run_dir)
    files = runs.RunFiles(runs.check_run_folder(run_dir, resumable=True))
    if overrides:
        raise UserError(f"--resume continues {run_dir} with its saved recipe; drop the options {', '.join(overrides)}")
    config = runs.ConfigRecord(files).values()
    lacking = [p.name for p in (files.split, files.labels) if not p.exists()] + [
        f"{files.config.name}'s {key}" for key in ("recipe", "data") if key not in config
    ]
    if lacking:
        raise UserError(
            f"{run_dir} cannot be resumed: it lacks {', '.join(lacking)}. Start again with `imagefit train DATA`"
        )
    samples = read_split(files.split)
    missing = [s.path for s in samples if not _still_there(s.path.split(ZIP_SEPARATOR)[0])]
    if missing:
        raise UserError(
            f"{len(missing)} images of {files.split} are gone (first: {missing[0]}). "
            f"Put the data back at {config['data']} to resume"
        )
    recipe = Recipe.from_dict(config["recipe"])
    classes = runs.read_json(files.labels)
    plan = Plan(run_dir, recipe, config["data"], samples, classes, task=config.get("task", "single-label"))
    return with_soft_labels(plan)


def with_recipe(plan: Plan, recipe: Recipe) -> Plan:
    """The same plan with another recipe (the plan itself is never changed)."""
    return replace(plan, recipe=recipe)


def resolve_image_size(recipe: Recipe, console: Console) -> Recipe:
    """Fix image_size 0 to a number: the model's own, capped by cpu_max_image_size when training on CPU."""
    if recipe.model.image_size:
        return recipe
    if recipe.model.init == "clip":  # one input size: the tower's own
        size = clip_tower(recipe.model.clip_model, pretrained=False)[0].pretrained_cfg["input_size"][-1]
        return recipe.override(image_size=size)
    native = native_image_size(recipe.model.model)
    cap = recipe.model.cpu_max_image_size
    if on_gpu(recipe) or not cap or native <= cap:
        return recipe.override(image_size=native)
    console.print(f"CPU: training at {cap} px (the model's own size is {native}; --image-size {native} for it)")
    return recipe.override(image_size=cap)


def resolve_micro_batch(recipe: Recipe) -> Recipe:
    """Fix micro_batch -1 to a number: AUTO_MICRO_BATCH on a CPU while BatchNorm statistics are frozen, else 0.

    With frozen statistics the accumulated micro batches take the same steps as whole batches; on a CPU
    they run faster (smaller working set) and need a fraction of the activation memory.
    """
    if recipe.data.micro_batch != -1:
        return recipe
    batch = recipe.data.batch_size
    fits = batch > AUTO_MICRO_BATCH and batch % AUTO_MICRO_BATCH == 0
    chosen = AUTO_MICRO_BATCH if fits and not on_gpu(recipe) and not recipe.schedule.finetune_bn else 0
    return recipe.override(micro_batch=chosen)
