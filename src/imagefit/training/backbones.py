"""`imagefit train DATA --model a,b,c`: one run per backbone on the same split and recipe, then a comparison."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from imagefit import runs
from imagefit.errors import TrainingInterrupted
from imagefit.models.factory import check_model_name
from imagefit.training import chain


def train_backbones(
    data: str | Path,
    models: list[str],
    *,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    console: Console | None = None,
    budget: float = 0.0,
    resume: bool = False,
    **options,
) -> list[runs.Run]:
    """Train every model in MODELS on DATA (runs_dir/<name>-<model>), all on the first run's split.

    BUDGET (seconds, 0 for none) is the members' time together: each member's `--time-limit` is what is left of
    it shared by the members still to train, so time a member did not spend goes to the next (member_limit). With
    RESUME a member's folder that exists is taken as it is, or resumed where it was interrupted; the time left is
    counted from the resume.
    """
    from imagefit.training.pipeline import train

    console = console or Console(stderr=True, soft_wrap=True)
    for model in models:  # every name before any training starts
        check_model_name(model)
    stem = name or runs.dataset_name(Path(data))
    finished: list[runs.Run] = []
    started = time.monotonic()
    options["unlabelled"] = "none"  # students follow one run (entry refuses --unlabelled here): no member makes any
    for index, model in enumerate(models):
        console.rule(f"{model} ({index + 1} of {len(models)})")
        if budget and index:
            limit = member_limit(budget, time.monotonic() - started, len(models) - index)
            console.print(f"time left for the members: {limit * (len(models) - index) / 60:.1f} min, "
                          f"{limit / 60:.1f} min for this one", highlight=False)  # fmt: skip
            options["time_limit"] = f"{limit:.0f}s"
        folder = Path(runs_dir) / f"{stem}-{model}"
        if resume and runs.RunFiles(folder).config.exists():  # trained or started before the interruption
            run = chain.carry_on(folder, train=train, console=console, report=options.get("report", True))
        else:
            source = data if not finished else runs.RunFiles(finished[0].path).split  # the same split for all
            run = _member(train, source, folder, finished, console=console, model=model, **options)
        if run is not None:
            finished.append(run)
    return finished


def _member(train, source, folder: Path, finished: list[runs.Run], **options) -> runs.Run | None:
    """One member trained new into FOLDER (TRAIN is pipeline.train). Interrupted before it kept anything, after
    members FINISHED, a `--quality best` member names the first member, whose `--resume` carries the command on."""
    try:
        return train(source, runs_dir=folder.parent, name=folder.name, **options)
    except TrainingInterrupted:
        if not finished or runs.RunFiles(folder).config.exists() or chain.ENSEMBLE not in options.get("carried", {}):
            raise  # its line names the member to resume
        raise TrainingInterrupted(
            f"interrupted before {folder.name} started; continue with `imagefit train --resume {finished[0].path}`"
        ) from None


MEMBER_FLOOR = 60.0  # seconds: a member behind its share still gets this much to train and evaluate


def member_limit(budget: float, elapsed: float, members_left: int) -> float:
    """A member's time limit in seconds: what is left of BUDGET after ELAPSED, shared by MEMBERS_LEFT (this one
    included), never under MEMBER_FLOOR."""
    return max((budget - elapsed) / members_left, MEMBER_FLOOR)
