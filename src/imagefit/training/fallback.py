"""A classical floor: when the SVM on raw pixels beat the network on val, it is kept as a run too.

The baseline (training.baseline) is measured before fine-tuning and costs seconds. Most data is far better served
by the network, and then nothing happens. When the SVM scored a higher val accuracy than the kept network
(small, centred, low-resolution images can do that), it is fitted again (the same seeded training images, so the
same model) and written as an ordinary run folder at RUN/pixels: the SVM as a timm model
(imagefit.models.pixels), the run's split and classes, prediction at the training preprocessing with one view and a
temperature fitted on cross-fitted training scores (val holds too few of its mistakes), and its own evaluation.
predict, evaluate, export and serve read it like any run; the summary names it. The network's run stays as it was.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

from imagefit import runs
from imagefit.config import ModelRecipe
from imagefit.data.preprocess import Preprocess
from imagefit.evaluation.calibration import fit_temperature
from imagefit.evaluation.evaluator import evaluate
from imagefit.files import cpu_tensors, save_tensors
from imagefit.models.factory import build_classifier
from imagefit.models.pixels import NAME, fill_pixel_model, svm_buffers
from imagefit.training.baseline import fit_svm, training_rows

FOLDS = 5  # folds of the training images the temperature is fitted on
LEFT_OUT = ("inference_candidates", "prior_adjustment", "unknown", "soup", "probe", "head_fit", "lr_find", "thresholds")


def pixels_won(config: dict, metrics: dict) -> bool:
    """Whether the raw-pixel SVM's val accuracy (config.json's `measured`) beat the kept network's (metrics.json);
    never for a refit, whose val images were trained on."""
    pixels = (config.get("measured") or {}).get("pixels") or {}
    val = metrics.get("val") or {}
    return not config.get("refit_of") and "accuracy" in val and pixels.get("accuracy", 0.0) > val["accuracy"]


def keep_pixel_run(run: runs.Run, console: Console) -> Path | None:
    """RUN/pixels, written when the raw-pixel SVM beat the network on val (said in one line); else None."""
    if not pixels_won(run.config, run.metrics):
        return None
    train = [s for s in run.split() if s.split == "train"]
    rows, labels = training_rows(train, run.train_preprocess, seed=run.recipe.data.seed)
    fitted = fit_svm(rows, labels)
    if fitted is None:
        return None
    config = _pixel_config(run)
    recipe = runs.Run(run.path, config, run.classes).recipe.model
    model = pixel_model(fitted, run.classes, run.train_preprocess, recipe)
    temperature = cross_fitted_temperature(rows, labels, run.classes, run.train_preprocess, recipe)
    target = _write_folder(run, config, model, temperature)
    network = run.metrics["val"]["accuracy"]
    pixels = runs.load_run(target).metrics["val"]["accuracy"]
    console.print(
        f"an SVM on raw pixels scored {pixels:.4f} on val, the network {network:.4f}: kept as a run "
        f"of its own at {target} (`imagefit predict {target} IMAGES`)",
        highlight=False,
        soft_wrap=True,
    )
    return target


def scores(model: torch.nn.Module, rows: np.ndarray) -> np.ndarray:
    """The pixel MODEL's logits [N, C] for thumbnails ROWS."""
    with torch.no_grad():
        return model.head(model.backbone.decide(torch.as_tensor(rows, dtype=torch.float32))).numpy()


def cross_fitted_temperature(rows, labels: list[str], classes: list[str], preprocess: Preprocess, recipe) -> float:
    """The temperature of the SVM's scores, fitted on each training image's scores from an SVM that did not see it
    (up to FOLDS stratified folds). Val is no place for it: where the SVM wins it makes one or two mistakes there,
    too few to fit a temperature, and the votes' scores at T = 1 say 0.6 where the SVM is right 99 times in 100."""
    counts = np.unique(labels, return_counts=True)[1]
    folds = int(max(2, min(FOLDS, counts.min())))
    logits, targets = np.zeros((len(labels), len(classes))), np.array([classes.index(label) for label in labels])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a class under FOLDS images: scikit-learn warns, and copes
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(rows, labels))
    for fitted_on, scored in splits:
        fold = fit_svm(rows[fitted_on], [labels[i] for i in fitted_on])
        if fold is not None:
            logits[scored] = scores(pixel_model(fold, classes, preprocess, recipe), rows[scored])
    return fit_temperature(logits[:, None, :], targets)


def pixel_model(fitted: SVC, classes: list[str], preprocess: Preprocess, recipe: ModelRecipe):
    """The fitted SVM as a model of RECIPE (imagefit_pixel_svm, no hidden head layer, no dropout): an
    ImageClassifier around RawPixels, which undoes PREPROCESS's normalisation."""
    model, _, _ = build_classifier(recipe, len(classes), pretrained=False)
    buffers, unseen = svm_buffers(fitted, classes)
    return fill_pixel_model(model, mean=preprocess.mean, std=preprocess.std, buffers=buffers, unseen=unseen)


def _pixel_config(run: runs.Run) -> dict:
    """RUN's config.json for its pixel run, less the temperature: the SVM as the model, nothing trained on it."""
    recipe = run.config["recipe"]
    model_recipe = {**recipe["model"], "model": NAME, "pretrained": False, "init": "imagenet", "init_weights": ""}
    config = {key: value for key, value in run.config.items() if key not in LEFT_OUT}
    return config | {
        "recipe": {**recipe, "model": {**model_recipe, "head": [], "dropout": 0.0}},
        "weights_source": "fitted: an SVM on raw grey pixels",
        "raw_pixels_of": str(run.path),
    }


def _write_folder(run: runs.Run, config: dict, model: torch.nn.Module, temperature: float) -> Path:
    """RUN/pixels (written beside, evaluated, then renamed into place): config, labels, split, weights, metrics."""
    target = run.files.raw_pixels
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    config = config | {"inference": runs.Inference(run.train_preprocess, 1, temperature).to_dict()}
    files = runs.RunFiles(partial)
    runs.write_json(files.config, config)
    runs.write_json(files.labels, run.classes)
    shutil.copyfile(run.files.split, files.split)
    runs.write_rows(files.history, runs.HISTORY_COLUMNS, [])  # fitted, not trained: no epochs
    save_tensors(files.model, cpu_tensors(model.state_dict()))
    evaluate(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
