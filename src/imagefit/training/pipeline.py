"""`imagefit.train`: the training pipeline, a run of named stages over one run folder.

    plan -> setup -> head (+ time re-plan, --lr auto) -> fine-tune -> finish  [-> refit]

Each stage takes and returns values (`Plan`, `Setup`, the kept weights); the run folder records what
each finished, so a resumed run (after Ctrl-C, kill -9 or a reboot) starts at the first stage it lacks.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console

from imagefit import runs
from imagefit.config import Recipe, parse_duration
from imagefit.data import write_split
from imagefit.data.sources import CsvColumns
from imagefit.errors import TrainingInterrupted
from imagefit.training import chain
from imagefit.training.chain import asked
from imagefit.training.distill import distill as distill_run
from imagefit.training.finetune import fine_tune_stage
from imagefit.training.finish import finish, nothing_left
from imagefit.training.frozen import head_on_features
from imagefit.training.head_stage import head_stage
from imagefit.training.plan import NewRun, Plan, StageFn, new_plan, no_stage, option_key, resume_plan, with_recipe
from imagefit.training.refit import plan_refit
from imagefit.training.run_config import run_config
from imagefit.training.setup import build_setup
from imagefit.training.students import student_rounds, unlabelled_inputs

# With --refit and --time-limit, the run gets this share of the limit and its refit the rest: the refit
# trains about as long as the run's fine-tuning (1.18x the images, the kept epochs) on cached features.
REFIT_FIRST_SHARE = 0.5
STUDENTS_AHEAD = "its students from the round they were in"


def train(
    data: str | Path | None = None,
    *,
    out: str | Path | None = None,
    name: str | None = None,
    runs_dir: str | Path = "runs",
    resume: str | Path | None = None,
    console: Console | None = None,
    report: bool = True,
    callbacks: list | None = None,
    on_stage: StageFn | None = None,
    csv_columns: CsvColumns | None = None,
    checks: bool = True,
    carried: dict | None = None,
    unlabelled: str | Path | None = None,
    **overrides,
) -> runs.Run | None:
    """Train a classifier on DATA with the default recipe (overridden by keyword) and return the finished run.

    DATA is a folder of class folders, a folder with train/val/test folders, a CSV of path,label
    or a .zip of either. `resume` continues an interrupted run folder instead, from whatever it
    holds; `report` writes report.html (evaluation, figures, Grad-CAM) at the end. Returns None in the extra
    processes of a DDP run. `callbacks`: extra Lightning callbacks for fine-tuning; `on_stage(name)` at each stage;
    `csv_columns` names a CSV's path and label columns and image folder where they cannot be guessed;
    `checks` False skips the duplicate and leakage warnings (a refit validates on training images);
    `carried` holds config.json fields a refit takes from its source run (`refit_of`, prediction settings).
    With the recipe's `refit`, the run is followed by its refit (RUN-refit); `unlabelled` images (default: the
    competition layout's test/; 'none': none) then train students (training.students); the last made is returned.
    A Ctrl-C at any moment raises TrainingInterrupted, naming the command that resumes the run.
    """
    started = time.perf_counter()
    console = console or Console(stderr=True, soft_wrap=True)
    notify = on_stage or no_stage
    made: list[Path] = []  # the run folder this call made, once it exists
    try:
        if resume is not None:
            made.append(Path(resume))
            plan = resume_plan(Path(resume), overrides)
            return resume_run(plan, console, report=report, callbacks=callbacks, notify=notify, unlabelled=unlabelled)
        overrides, total = share_time_with_refit(overrides, console, students=asked(unlabelled))
        carried = {**chain.request(unlabelled, total), **(carried or {})}  # what follows the run, for a resume
        request = NewRun(data, out, name, runs_dir, csv_columns, checks, carried)
        plan = new_plan(request, overrides, console=console, notify=notify, started=started, made=made)
        run = run_stages(plan, console, report=report, callbacks=callbacks, notify=notify)
        if run is None:
            return run
        limit = total or parse_duration(plan.recipe.schedule.time_limit)  # total: set for a new run
        return follow_up(run, plan, unlabelled, console, report=report, limit=limit, started=started)
    except KeyboardInterrupt:
        raise TrainingInterrupted(interrupted(made[0] if made else None, new=resume is None)) from None


def follow_up(run, plan: Plan, unlabelled, console: Console, *, report: bool, limit: float, started: float):
    """After a new run: its refit (the recipe's `refit`), then students on the UNLABELLED images; the last made."""

    def left() -> float:
        return max(limit - (time.perf_counter() - started), -1.0) if limit else 0.0

    if plan.recipe.schedule.refit:  # a refit's own recipe never asks for one
        run = refit(run.path, console=console, time_limit=max(left(), 1.0) if limit else 0.0, report=report)
    if plan.recipe.model.init_weights:  # a student makes no students of its own
        return run
    return _students(run, unlabelled, console, report=report, time_limit=left(), cost=time.perf_counter() - started)


def _students(run, unlabelled, console: Console, *, report: bool, time_limit: float, cost: float, resume=False):
    """The students of RUN on the UNLABELLED images (training.students), or RUN when there are none to label."""
    inputs = unlabelled_inputs(run, unlabelled, console)
    if not inputs:
        return run
    return student_rounds(
        run, inputs, train=train, console=console, report=report, time_limit=time_limit, run_seconds=cost,
        resume=resume,
    )  # fmt: skip


def resume_run(plan: Plan, console: Console, *, report: bool, callbacks, notify: StageFn, unlabelled=None):
    """An interrupted run finished; then what its command asked after its first run and has not done
    (training.chain): the refit, made or resumed, and the students from the round they were in (UNLABELLED 'none':
    no students). A run with nothing of it left has nothing to resume (finish says so)."""
    started = time.perf_counter()
    owed = chain.owed(plan.run_dir, students=unlabelled is None or asked(unlabelled))
    if owed is None or not nothing_left(plan.files, report=report):
        run = run_stages(plan, console, report=report, callbacks=callbacks, notify=notify)
        if run is None or owed is None:
            return run

    def left() -> float:
        return max(owed.time_limit - (time.perf_counter() - started), 1.0) if owed.time_limit else 0.0

    follows = owed.follows
    if owed.refit is not None and runs.RunFiles(follows).stage() != "finished":
        if runs.RunFiles(follows).config.exists():
            chain.carry_on(follows, train=train, console=console, report=report, said="refit: ")
        else:
            refit(owed.source, console=console, time_limit=left(), report=report)
    run = runs.load_run(follows)
    if not owed.students:
        return run
    console.print(f"unlabelled: the students of {run.path.name} continue", highlight=False)
    return _students(run, owed.images, console, report=report, time_limit=left(), cost=owed.run_seconds, resume=True)


def run_stages(plan: Plan, console: Console, *, report: bool, callbacks: list | None, notify: StageFn):
    """Run the stages the run folder still lacks: setup, head, fine-tune, then finish."""
    files = plan.files
    stage = files.stage()
    if stage in ("trained", "finished"):  # a resumed run stopped after training
        return finish(plan, console, report=report, notify=notify, finished=stage == "finished")
    planned = files.config.exists()  # the recipe is fixed: a resumed run, or a DDP child process
    setup = build_setup(plan, stage, planned=planned, console=console, report=report)
    plan = with_recipe(plan, setup.recipe)
    if not planned:
        runs.ConfigRecord(files).create(run_config(plan, setup))
    offset = plan.recipe.schedule.frozen_epochs if head_on_features(plan.recipe) else 0
    plan, head_rows = head_stage(plan, setup, stage=stage, offset=offset, console=console, notify=notify)
    weights = fine_tune_stage(
        plan,
        setup,
        stage=stage,
        offset=offset,
        head_rows=head_rows,
        callbacks=callbacks,
        console=console,
        notify=notify,
    )
    if weights is None:  # an extra process of a DDP run: the first one finishes
        return None
    setup.model.load_state_dict(weights)
    return finish(plan, console, report=report, notify=notify, model=setup.model.cpu())


def share_time_with_refit(overrides: dict, console: Console, *, students: bool = False) -> tuple[dict, float]:
    """Overrides whose time limit is the run's share when a refit or students follow it; and the whole limit in
    seconds (0 when nothing follows)."""
    key, refit_key = option_key(overrides, "time_limit"), option_key(overrides, "refit")
    asked = Recipe().override(**{k: overrides[k] for k in (key, refit_key) if k is not None})
    if not (asked.schedule.refit or students) or not asked.schedule.time_limit:
        return overrides, 0.0
    total = parse_duration(asked.schedule.time_limit)
    share = total * REFIT_FIRST_SHARE
    after = "its refit" if asked.schedule.refit else "its students (--unlabelled)"
    if asked.schedule.refit and students:
        after = "its refit and students (--unlabelled)"
    console.print(f"time limit: {share:.0f}s for the run, the rest for {after}", highlight=False)
    return {**overrides, key: f"{share:.0f}s"}, total


def refit(
    run_path: str | Path,
    *,
    out: str | Path | None = None,
    console: Console | None = None,
    time_limit: float = 0.0,
    report: bool = False,
) -> runs.Run:
    """A new run folder (default RUN-refit) trained on RUN's train and val images; returns it.

    `time_limit` (seconds, 0: none) bounds the refit as --time-limit does, the kept epochs its cap.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    planned = plan_refit(run_path, out=out, time_limit=time_limit)
    console.print(planned.describe(), highlight=False)
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "refit.csv"
        write_split(manifest, planned.samples)
        return train(
            manifest,
            out=planned.target,
            console=console,
            report=report,
            checks=False,
            carried=planned.carried,
            **planned.overrides,
        )


def interrupted(run_dir: Path | None, *, new: bool) -> str:
    """The one line for a Ctrl-C: what the run folder keeps and how to continue, or that nothing was kept."""
    files = runs.RunFiles(run_dir) if run_dir is not None else None
    if files is None or not files.config.exists():
        if files is not None and new:  # only the split and labels were written: no half-made folder is left
            for path in (files.split, files.labels, files.env, files.unlabelled):
                path.unlink(missing_ok=True)
            if files.root.exists() and not any(files.root.iterdir()):
                files.root.rmdir()
        return "interrupted before training started; nothing was kept"
    kept = {
        "new": "its split and recipe",
        "head": "its trained head",
        "fine-tune": "its last finished epoch",
        "trained": "its trained model",
        "finished": "its trained model",
    }[files.stage()]
    owed = chain.owed(run_dir)
    refit_ahead = owed is not None and owed.refit is not None and owed.refit != Path(run_dir)
    students = owed is not None and owed.students
    follows = [said for said, due in (("its refit", refit_ahead), (STUDENTS_AHEAD, students)) if due]
    then = f" (then {' and '.join(follows)})" if follows else ""
    return f"interrupted: {run_dir} keeps {kept}; continue with `imagefit train --resume {run_dir}`{then}"


def distill(
    teacher: str | Path,
    *,
    model: str,
    unlabelled: str | Path | None = None,
    out: str | Path | None = None,
    console: Console | None = None,
    report: bool = True,
    **overrides,
) -> runs.Run:
    """A run of MODEL trained on TEACHER's (a run's or an ensemble's) soft labels (training.distill); returns it."""
    console = console or Console(stderr=True, soft_wrap=True)
    return distill_run(
        teacher, model=model, unlabelled=unlabelled, out=out, train=train, console=console, report=report, **overrides
    )
