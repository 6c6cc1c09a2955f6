"""The first config.json of a run: what it is made of (data, resolved recipe, preprocessing, weights, task)."""

from __future__ import annotations

from imagefit import __version__, runs
from imagefit.training.plan import Plan
from imagefit.training.setup import Setup


def run_config(plan: Plan, setup: Setup) -> dict:
    """The fields of config.json as the run starts; later stages add theirs through `runs.ConfigRecord`."""
    return {
        "format_version": runs.FORMAT_VERSION,
        "imagefit_version": __version__,
        "data": plan.data,
        "recipe": plan.recipe.to_dict(),
        "preprocess": setup.preprocess.to_dict(),
        "weights_source": setup.weights_source,
        "imbalance_handling": setup.imbalance,
        "task": plan.task,
        **plan.carried,
    }
