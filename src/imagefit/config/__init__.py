"""The recipe: every default of a training run, one documented field each, saved with every run.

`Recipe` groups the fields by concern (data, model, augment, optim, schedule, engine, predict; `groups.py`).
Field names are unique across groups, so a user overrides any of them by its bare name (`epochs=8`,
`--epochs 8`) or by its dotted path (`schedule.epochs=8`); `values.py` turns the text into values.
"""

from __future__ import annotations

from imagefit.config.groups import (
    AUTO_MICRO_BATCH,
    AugmentRecipe,
    DataRecipe,
    EngineRecipe,
    ModelRecipe,
    OptimRecipe,
    PredictRecipe,
    ScheduleRecipe,
)
from imagefit.config.recipe import WRITTEN_BEFORE, Recipe, field_help, fit_epochs
from imagefit.config.values import ACCELERATORS, PRECISIONS, parse_duration

__all__ = [
    "ACCELERATORS",
    "AUTO_MICRO_BATCH",
    "PRECISIONS",
    "WRITTEN_BEFORE",
    "AugmentRecipe",
    "DataRecipe",
    "EngineRecipe",
    "ModelRecipe",
    "OptimRecipe",
    "PredictRecipe",
    "Recipe",
    "ScheduleRecipe",
    "field_help",
    "fit_epochs",
    "parse_duration",
]
