"""A classical floor: when the raw-pixel logistic regression beat the network on val, it is kept as a run too.

The baseline (training.baseline) is measured before fine-tuning and costs seconds. Most data is far better served
by the network, and then nothing happens. When the regression scored a higher val accuracy than the kept network
(small, centred, low-resolution images can do that), it is fitted again (the same seeded training images, so the
same model) and written as an ordinary run folder at RUN/pixels: the regression as a timm model
(imagefit.models.pixels), the run's split and classes, prediction at the training preprocessing with one view and a
temperature fitted on val, and its own evaluation. predict, evaluate, export and serve read it like any run;
the summary names it. The network's run stays as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from rich.console import Console

from imagefit import runs
from imagefit.config import ModelRecipe
from imagefit.data.preprocess import Preprocess
from imagefit.evaluation.calibration import fit_temperature
from imagefit.evaluation.evaluator import evaluate
from imagefit.files import cpu_tensors, save_tensors
from imagefit.models.factory import build_classifier
from imagefit.models.pixels import NAME, fill_pixel_model
from imagefit.training.baseline import PixelFit, fit_pixels, pixel_rows

LEFT_OUT = ("inference_candidates", "prior_adjustment", "unknown", "soup", "probe", "head_fit", "lr_find", "thresholds")


def pixels_won(config: dict, metrics: dict) -> bool:
    """Whether the raw-pixel baseline's val accuracy (config.json's `measured`) beat the kept network's (metrics.json);
    never for a refit, whose val images were trained on."""
    pixels = (config.get("measured") or {}).get("pixels") or {}
    val = metrics.get("val") or {}
    return not config.get("refit_of") and "accuracy" in val and pixels.get("accuracy", 0.0) > val["accuracy"]


def keep_pixel_run(run: runs.Run, console: Console) -> Path | None:
    """RUN/pixels, written when the raw-pixel baseline beat the network on val (said in one line); else None."""
    if not pixels_won(run.config, run.metrics):
        return None
    samples = run.split()
    preprocess = run.train_preprocess
    fitted = fit_pixels([s for s in samples if s.split == "train"], preprocess, seed=run.recipe.data.seed)
    if fitted is None:
        return None
    weight, bias = linear_layer(fitted, run.classes)
    rows, labels = pixel_rows([s for s in samples if s.split == "val"], preprocess)
    logits = fitted.scaler.transform(rows) @ weight.T + bias
    temperature = fit_temperature(logits[:, None, :], np.array([run.classes.index(label) for label in labels]))
    target = _write_folder(run, fitted, weight, bias, temperature)
    network = run.metrics["val"]["accuracy"]
    pixels = runs.load_run(target).metrics["val"]["accuracy"]
    console.print(
        f"a logistic regression on raw pixels scored {pixels:.4f} on val, the network {network:.4f}: kept as a run "
        f"of its own at {target} (`imagefit predict {target} IMAGES`)",
        highlight=False,
        soft_wrap=True,
    )
    return target


def linear_layer(fitted: PixelFit, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The regression's weights [C, F] and biases [C] in the run's class order (a class it never saw: never chosen).

    scikit-learn keeps one row for two classes (the second class's logit against 0 for the first)."""
    regression = fitted.regression
    coef, intercept = regression.coef_, regression.intercept_
    if len(regression.classes_) == 2:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weight = np.zeros((len(classes), coef.shape[1]))
    bias = np.full(len(classes), -30.0)
    for row, name in enumerate(regression.classes_):
        weight[classes.index(name)], bias[classes.index(name)] = coef[row], intercept[row]
    return weight, bias


def pixel_model(fitted: PixelFit, weight: np.ndarray, bias: np.ndarray, preprocess: Preprocess, recipe: ModelRecipe):
    """The fitted regression as a model of RECIPE (imagefit_raw_pixels, no hidden head layer, no dropout): an
    ImageClassifier around RawPixels, which undoes PREPROCESS's normalisation."""
    model, _, _ = build_classifier(recipe, len(bias), pretrained=False)
    return fill_pixel_model(
        model,
        mean=preprocess.mean,
        std=preprocess.std,
        centre=fitted.scaler.mean_,
        scale=fitted.scaler.scale_,
        weight=weight,
        bias=bias,
    )


def _write_folder(run: runs.Run, fitted: PixelFit, weight: np.ndarray, bias: np.ndarray, temperature: float) -> Path:
    """RUN/pixels (written beside, evaluated, then renamed into place): config, labels, split, weights, metrics."""
    target = run.files.raw_pixels
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    recipe = run.config["recipe"]
    model_recipe = {**recipe["model"], "model": NAME, "pretrained": False, "init": "imagenet", "init_weights": ""}
    config = {key: value for key, value in run.config.items() if key not in LEFT_OUT}
    config |= {
        "recipe": {**recipe, "model": {**model_recipe, "head": [], "dropout": 0.0}},
        "weights_source": "fitted: a logistic regression on raw grey pixels",
        "raw_pixels_of": str(run.path),
        "inference": runs.Inference(run.train_preprocess, 1, temperature).to_dict(),
    }
    files = runs.RunFiles(partial)
    runs.write_json(files.config, config)
    runs.write_json(files.labels, run.classes)
    shutil.copyfile(run.files.split, files.split)
    runs.write_rows(files.history, runs.HISTORY_COLUMNS, [])  # fitted, not trained: no epochs
    model = pixel_model(fitted, weight, bias, run.train_preprocess, runs.Run(partial, config, run.classes).recipe.model)
    save_tensors(files.model, cpu_tensors(model.state_dict()))
    evaluate(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
