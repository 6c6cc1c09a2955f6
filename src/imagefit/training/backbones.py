"""`imagefit train DATA --model a,b,c`: one run per backbone on the same split and recipe, then a comparison."""

from __future__ import annotations

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
    **options,
) -> list[runs.Run]:
    """Train every model in MODELS on DATA (runs_dir/<name>-<model>), all on the first run's split."""
    from imagefit.training.pipeline import train

    console = console or Console(stderr=True, soft_wrap=True)
    for model in models:  # every name before any training starts
        check_model_name(model)
    stem = name or runs.dataset_name(Path(data))
    finished: list[runs.Run] = []
    for index, model in enumerate(models):
        console.rule(f"{model} ({index + 1} of {len(models)})")
        source = data if not finished else runs.RunFiles(finished[0].path).split  # the same split for all
        run = train(source, runs_dir=runs_dir, name=f"{stem}-{model}", console=console, model=model, **options)
        if run is not None:
            finished.append(run)
    return finished
