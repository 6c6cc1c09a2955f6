"""The sections of a single-label run's report.html, each a function of one `Page`."""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from imagefit import runs
from imagefit.data.decode import UNREADABLE, open_image
from imagefit.data.sources import locator_name
from imagefit.errors import UserError
from imagefit.evaluation.evaluator import read_predictions
from imagefit.report import figures
from imagefit.report.page import data_uri, img, section, table, thumbnail

WORST_ERRORS = 12
GRADCAM_SAMPLES = 4


@dataclass
class Page:
    """What a report's sections read: the run, the split shown, and that split's predictions CSV."""

    run: runs.Run
    split: str
    rows: list[dict]
    classes: list[str]
    probabilities: np.ndarray
    gradcam_samples: int = GRADCAM_SAMPLES

    @classmethod
    def of(cls, run: runs.Run, split: str, gradcam_samples: int = GRADCAM_SAMPLES) -> Page:
        rows, classes = read_predictions(run.files.predictions(split))
        probabilities = np.array([[float(r[c]) for c in classes] for r in rows])
        return cls(run, split, rows, classes, probabilities, gradcam_samples)

    @cached_property
    def truth(self) -> np.ndarray:
        """The true labels as the task's targets: class indices, or multi-hot rows."""
        return self.run.task.targets([r["true"] for r in self.rows], self.classes)

    @property
    def metrics(self) -> dict:
        return self.run.metrics.get(self.split, {})


def imbalance_fact(config: dict) -> str:
    """'adjust: logits + 0.5 x -log class prior (chosen on val)', or the handling's name."""
    shift = config.get("prior_adjustment")
    if not shift:
        return config.get("imbalance_handling", "")
    handling = config.get("imbalance_handling", "")
    return f"{handling}: logits shifted by {shift['tau']:g} x -log class prior (chosen on val)"


def summary(page: Page) -> str:
    run, split = page.run, page.split
    counts = {name: sum(s.split == name for s in run.split()) for name in ("train", "val", "test")}
    facts = [
        ["data", run.config.get("data", "")],
        ["model", f"{run.recipe.model.backbone} ({run.config.get('weights_source', '?')} weights)"],
        ["classes", f"{len(run.classes)}: {', '.join(run.classes[:20])}{' ...' if len(run.classes) > 20 else ''}"],
        ["images", ", ".join(f"{name} {n}" for name, n in counts.items() if n)],
        ["imbalance handling", imbalance_fact(run.config)],
        ["best epoch", run.metrics.get("best_epoch", "")],
    ]
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "top5_accuracy", "log_loss", "ece", "ece_cross_fitted")
    shown = {"val": "val", "val_estimate": "val (of the run refitted)", "test": "test"}
    figures_rows = [
        [label] + [f"{run.metrics[name][k]:.4f}" if k in run.metrics[name] else "" for k in keys]
        for name, label in shown.items()
        if run.metrics.get(name)
    ]
    said = (
        f"<p>Figures below are on the {split} split. The temperature was fitted on val, so val's ece is in sample; "
        "ece_cross_fitted fits it on one half of val and measures on the other.</p>"
    )
    if run.refit_note:
        said = f"<p><strong>{html.escape(run.refit_note)}.</strong></p>" + said
    return section("summary", "Run summary", table(None, facts) + table(["split", *keys], figures_rows) + said)


def curves(page: Page) -> str:
    run = page.run
    with run.files.history.open(newline="") as handle:
        history = list(csv.DictReader(handle))
    return section("curves", "Training curves", img(data_uri(figures.training_curves(history)), "training curves"))


def confusion(page: Page) -> str:
    predicted = page.probabilities.argmax(axis=1).tolist()
    picture = figures.confusion_matrices(page.truth.tolist(), predicted, page.classes)
    return section("confusion", f"Confusion matrix ({page.split})", img(data_uri(picture), "confusion matrix"))


def per_class_table(metrics: dict) -> str:
    per_class = sorted(metrics.get("per_class", {}).items(), key=lambda item: item[1]["f1"])
    rows = [
        [name, f"{v['f1']:.3f}", f"{v['precision']:.3f}", f"{v['recall']:.3f}", v["support"]] for name, v in per_class
    ]
    return section(
        "per-class", "Per class, weakest first", table(["class", "F1", "precision", "recall", "support"], rows)
    )


def image_card(path: str, caption: str) -> str:
    """A figure: the image's thumbnail, CAPTION and its name; '' when the image cannot be read."""
    try:
        picture = thumbnail(open_image(path))
    except UNREADABLE:
        return ""
    name = locator_name(path)
    return (
        f"<figure>{img(picture, name)}<figcaption>{html.escape(caption)}<br>"
        f"<small>{html.escape(name)}</small></figcaption></figure>"
    )


def worst_errors(rows: list[dict], split: str) -> str:
    wrong = sorted((r for r in rows if r["true"] != r["predicted"]), key=lambda r: -float(r["confidence"]))
    cards = [
        card
        for row in wrong[:WORST_ERRORS]
        if (card := image_card(row["path"], f"true {row['true']} / predicted {row['predicted']} "
                                            f"({float(row['confidence']):.2f})"))
    ]  # fmt: skip
    content = f'<div class="gallery">{"".join(cards)}</div>' if cards else f"<p>No mistakes on {split}.</p>"
    return section("errors", "Most confident mistakes", content)


def gradcam_section(page: Page) -> str:
    run, rows, samples = page.run, page.rows, page.gradcam_samples
    from imagefit.models.trained import load_trained
    from imagefit.prediction.gradcam import gradcam

    by_confidence = sorted(rows, key=lambda r: -float(r["confidence"]))
    right, seen = [], set()
    for row in by_confidence:  # the surest right answer of as many classes as fit
        if row["true"] == row["predicted"] and row["true"] not in seen and len(right) < samples:
            right.append(row)
            seen.add(row["true"])
    wrong = [r for r in by_confidence if r["true"] != r["predicted"]][:samples]
    chosen = right + wrong
    if not chosen:
        return section("gradcam", "Where the model looks (Grad-CAM)", "<p>No images to explain.</p>")
    pictures = []
    for row in list(chosen):
        try:
            pictures.append(open_image(row["path"]))
        except UNREADABLE:  # changed or gone since the evaluation
            chosen.remove(row)
    try:
        model = load_trained(run)
        overlays = gradcam(model, run.preprocess, pictures, run.classes, temperature=run.inference.temperature)
    except UserError as exc:  # a model without feature maps (the raw-pixel run) has nothing to show
        return section("gradcam", "Where the model looks (Grad-CAM)", f"<p>{html.escape(str(exc))}</p>")
    cards = []
    for row, (overlay, label_index, confidence) in zip(chosen, overlays, strict=True):
        verdict = "right" if row["true"] == row["predicted"] else "wrong"
        caption = f"{verdict}: true {row['true']}, predicted {run.classes[label_index]} ({confidence:.2f})"
        cards.append(
            f"<figure>{img(thumbnail(overlay, 200), caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return section("gradcam", "Where the model looks (Grad-CAM)", f'<div class="gallery">{"".join(cards)}</div>')


def calibration(page: Page) -> str:
    """Reliability before and after the temperature chosen on val, with both calibration errors."""
    run, split, y_true, probabilities = page.run, page.split, page.truth.tolist(), page.probabilities
    figures_of = run.metrics.get(split, {})
    temperature = run.inference.temperature
    # Undo the temperature: softmax(logits) is proportional to softmax(logits / T) ** T (exact for one view).
    before = np.clip(probabilities, 1e-12, 1.0) ** temperature
    before /= before.sum(axis=1, keepdims=True)
    text = (
        f"<p>Expected calibration error: {figures_of.get('ece_before_scaling', float('nan')):.4f} before, "
        f"{figures_of.get('ece', float('nan')):.4f} after temperature scaling (T = {temperature:.2f}, "
        f"fitted on val).</p>"
    )
    pictures = img(
        data_uri(figures.reliability_diagram(y_true, before, title="before temperature scaling")), "before"
    ) + img(data_uri(figures.reliability_diagram(y_true, probabilities, title="after")), "after")
    return section("calibration", f"Calibration ({split})", text + pictures)


def recipe(page: Page) -> str:
    run = page.run
    rows = [
        [f"{group}.{name}", value] for group, values in run.config["recipe"].items() for name, value in values.items()
    ]
    return section("recipe", "Recipe", table(["option", "value"], rows))


RENDERERS = {
    "summary": summary,
    "curves": curves,
    "confusion": confusion,
    "per-class": lambda page: per_class_table(page.metrics),
    "errors": lambda page: worst_errors(page.rows, page.split),
    "gradcam": gradcam_section,
    "calibration": calibration,
    "recipe": recipe,
}
