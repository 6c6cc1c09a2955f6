"""`imagefit train DATA --model a,b,c`: one run per backbone on the same split and recipe, then a comparison."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from imagefit import runs
from imagefit.models.factory import check_model_name


def train_backbones(
    data: str | Path,
    models: list[str],
    *,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    console: Console | None = None,
    budget: float = 0.0,
    **options,
) -> list[runs.Run]:
    """Train every model in MODELS on DATA (runs_dir/<name>-<model>), all on the first run's split.

    BUDGET (seconds, 0 for none) is the members' time together: each member's `--time-limit` is what is left of
    it shared by the members still to train, so time a member did not spend goes to the next (member_limit).
    """
    from imagefit.training.pipeline import train

    console = console or Console(stderr=True, soft_wrap=True)
    for model in models:  # every name before any training starts
        check_model_name(model)
    stem = name or runs.dataset_name(Path(data))
    finished: list[runs.Run] = []
    started = time.monotonic()
    for index, model in enumerate(models):
        console.rule(f"{model} ({index + 1} of {len(models)})")
        if budget and index:
            limit = member_limit(budget, time.monotonic() - started, len(models) - index)
            console.print(f"time left for the members: {limit * (len(models) - index) / 60:.1f} min, "
                          f"{limit / 60:.1f} min for this one", highlight=False)  # fmt: skip
            options["time_limit"] = f"{limit:.0f}s"
        source = data if not finished else runs.RunFiles(finished[0].path).split  # the same split for all
        run = train(source, runs_dir=runs_dir, name=f"{stem}-{model}", console=console, model=model, **options)
        if run is not None:
            finished.append(run)
    return finished


MEMBER_FLOOR = 60.0  # seconds: a member behind its share still gets this much to train and evaluate


def member_limit(budget: float, elapsed: float, members_left: int) -> float:
    """A member's time limit in seconds: what is left of BUDGET after ELAPSED, shared by MEMBERS_LEFT (this one
    included), never under MEMBER_FLOOR."""
    return max((budget - elapsed) / members_left, MEMBER_FLOOR)
