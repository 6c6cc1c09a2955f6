"""report.html: one self-contained page (figures embedded) that explains a run to a person."""

from __future__ import annotations

import csv
import html
from pathlib import Path

import numpy as np

from imagefit import runs
from imagefit.data.decode import UNREADABLE, open_image
from imagefit.data.sources import locator_name
from imagefit.evaluation.evaluator import evaluate, read_predictions
from imagefit.files import write_text
from imagefit.report import figures
from imagefit.report.page import PAGE, data_uri, img, section, table, thumbnail

WORST_ERRORS = 12
GRADCAM_SAMPLES = 4
SECTIONS = ("summary", "curves", "confusion", "per-class", "errors", "gradcam", "calibration", "recipe")


def write_report(run_path: str | Path, *, gradcam_samples: int = GRADCAM_SAMPLES) -> Path:
    """Write RUN/report.html (evaluating the run first when its predictions are missing); returns its path."""
    from imagefit.prediction.ensembles import is_ensemble

    if is_ensemble(run_path):
        return _write_ensemble_report(Path(run_path))
    run = runs.load_run(Path(run_path))
    if run.task == "multi-label":
        return _write_multilabel_report(run)
    split = "test" if any(s.split == "test" for s in run.split()) else "val"
    predictions_path = run.path / f"predictions-{split}.csv"
    if not predictions_path.exists():
        evaluate(run.path, split=split)
        run = runs.load_run(run.path)
    rows, classes = read_predictions(predictions_path)
    y_true = [classes.index(r["true"]) for r in rows]
    probabilities = np.array([[float(r[c]) for c in classes] for r in rows])
    y_pred = probabilities.argmax(axis=1).tolist()
    body = "\n".join(
        [
            _summary(run, split),
            _curves(run),
            section(
                "confusion",
                f"Confusion matrix ({split})",
                img(data_uri(figures.confusion_matrices(y_true, y_pred, classes)), "confusion matrix"),
            ),
            _per_class(run.metrics.get(split, {})),
            _worst_errors(rows, split),
            _gradcam(run, rows, gradcam_samples),
            _calibration(run, split, y_true, probabilities),
            _recipe(run),
        ]
    )
    page = PAGE.format(title=html.escape(f"imagefit report: {run.path.name}"), body=body)
    target = run.files.report
    write_text(target, page)
    return target


def _write_ensemble_report(path: Path) -> Path:
    """report.html of an ensemble folder: its members and weights, the gain over the best member, the errors."""
    from imagefit.prediction.ensembles import load_ensemble

    ensemble = load_ensemble(path)
    split = "test" if any(s.split == "test" for s in ensemble.split()) else "val"
    predictions_path = runs.RunFiles(path).predictions(split)
    if not predictions_path.exists():
        evaluate(path, split=split)
    metrics = ensemble.metrics
    rows, classes = read_predictions(predictions_path)
    y_true = [classes.index(r["true"]) for r in rows]
    probabilities = np.array([[float(r[c]) for c in classes] for r in rows])
    members = [
        [
            Path(m["run"]).name,
            m["model"],
            f"{m['weight']:.3f}",
            *(f"{m[s]['accuracy']:.4f}" if s in m else "" for s in ("val", "test")),
        ]
        for m in metrics.get("members", [])
    ]
    figures_rows = [
        [
            name,
            f"{metrics[name]['accuracy']:.4f}",
            f"{metrics[name]['macro_f1']:.4f}",
            f"{metrics[name].get('gain_over_best_member', float('nan')):+.4f}",
        ]
        for name in ("val", "test")
        if name in metrics
    ]
    body = "\n".join(
        [
            section(
                "summary",
                f"Ensemble of {len(ensemble.members)} runs ({ensemble.method} weights, fitted on val)",
                table(["member", "model", "weight", "val accuracy", "test accuracy"], members)
                + table(["split", "accuracy", "macro-F1", "gain over the best member"], figures_rows),
            ),
            section(
                "confusion",
                f"Confusion matrix ({split})",
                img(
                    data_uri(figures.confusion_matrices(y_true, probabilities.argmax(1).tolist(), classes)), "confusion"
                ),
            ),
            _per_class(metrics.get(split, {})),
            _worst_errors(rows, split),
        ]
    )
    target = runs.RunFiles(path).report
    write_text(target, PAGE.format(title=html.escape(f"imagefit report: ensemble {path.name}"), body=body))
    return target


def _write_multilabel_report(run: runs.Run) -> Path:
    """report.html of a multi-label run: figures, per-label table, precision-recall curves, label co-occurrence,
    the images with the most wrong labels (missed and false), training curves and the recipe."""
    from imagefit.tasks import labels_of, targets

    split = "test" if any(s.split == "test" for s in run.split()) else "val"
    predictions_path = runs.RunFiles(run.path).predictions(split)
    if not predictions_path.exists():
        evaluate(run.path, split=split)
        run = runs.load_run(run.path)
    rows, classes = read_predictions(predictions_path)
    truth = targets([r["true"] for r in rows], classes, "multi-label")
    probabilities = np.array([[float(r[c]) for c in classes] for r in rows])
    metrics = run.metrics.get(split, {})
    keys = ("mean_average_precision", "micro_average_precision", "subset_accuracy", "hamming_loss", "macro_f1")
    summary = table(["split", *keys], [[split, *(f"{metrics.get(k, float('nan')):.4f}" for k in keys)]])
    per_label = sorted(metrics.get("per_class", {}).items(), key=lambda item: item[1]["f1"])
    label_rows = [
        [
            n,
            f"{v['average_precision']:.3f}",
            f"{v['precision']:.3f}",
            f"{v['recall']:.3f}",
            f"{v['f1']:.3f}",
            f"{v['threshold']:.2f}",
            v["support"],
        ]
        for n, v in per_label
    ]
    train = [labels_of(s.label) for s in run.split() if s.split == "train"]
    thresholds = run.thresholds
    wrong = []
    for row, hits, probs in zip(rows, truth, probabilities, strict=True):
        guess = probs >= thresholds
        missed = [c for c, h, g in zip(classes, hits, guess, strict=True) if h and not g]
        false = [c for c, h, g in zip(classes, hits, guess, strict=True) if g and not h]
        if missed or false:
            wrong.append((len(missed) + len(false), row["path"], missed, false))
    cards = []
    for _, path, missed, false in sorted(wrong, reverse=True)[:WORST_ERRORS]:
        try:
            picture = thumbnail(open_image(path))
        except UNREADABLE:
            continue
        caption = f"missed: {', '.join(missed) or '-'}; false: {', '.join(false) or '-'}"
        cards.append(
            f"<figure>{img(picture, locator_name(path))}<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    body = "\n".join(
        [
            section("summary", f"Multi-label run: {len(classes)} labels ({split})", summary),
            _curves(run),
            section(
                "per-label",
                "Per label, weakest first",
                table(["label", "AP", "precision", "recall", "F1", "threshold", "support"], label_rows),
            ),
            section(
                "pr",
                "Precision-recall curves",
                img(data_uri(figures.precision_recall(truth, probabilities, classes)), "PR curves"),
            ),
            section(
                "co-occurrence",
                "Labels together (training images)",
                img(data_uri(figures.co_occurrence(train, classes)), "co-occurrence"),
            ),
            section("errors", "Images with the most wrong labels", f'<div class="gallery">{"".join(cards)}</div>'),
            _recipe(run),
        ]
    )
    target = run.files.report
    write_text(target, PAGE.format(title=html.escape(f"imagefit report: {run.path.name}"), body=body))
    return target


def _summary(run: runs.Run, split: str) -> str:
    counts = {name: sum(s.split == name for s in run.split()) for name in ("train", "val", "test")}
    facts = [
        ["data", run.config.get("data", "")],
        ["model", f"{run.recipe.model.backbone} ({run.config.get('weights_source', '?')} weights)"],
        ["classes", f"{len(run.classes)}: {', '.join(run.classes[:20])}{' ...' if len(run.classes) > 20 else ''}"],
        ["images", ", ".join(f"{name} {n}" for name, n in counts.items() if n)],
        ["imbalance handling", run.config.get("imbalance_handling", "")],
        ["best epoch", run.metrics.get("best_epoch", "")],
    ]
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "top5_accuracy", "log_loss", "ece")
    shown = {"val": "val", "val_estimate": "val (of the run refitted)", "test": "test"}
    figures_rows = [
        [label] + [f"{run.metrics[name][k]:.4f}" if k in run.metrics[name] else "" for k in keys]
        for name, label in shown.items()
        if run.metrics.get(name)
    ]
    said = f"<p>Figures below are on the {split} split.</p>"
    if run.refit_note:
        said = f"<p><strong>{html.escape(run.refit_note)}.</strong></p>" + said
    return section("summary", "Run summary", table(None, facts) + table(["split", *keys], figures_rows) + said)


def _curves(run: runs.Run) -> str:
    with run.files.history.open(newline="") as handle:
        history = list(csv.DictReader(handle))
    return section("curves", "Training curves", img(data_uri(figures.training_curves(history)), "training curves"))


def _per_class(metrics: dict) -> str:
    per_class = sorted(metrics.get("per_class", {}).items(), key=lambda item: item[1]["f1"])
    rows = [
        [name, f"{v['f1']:.3f}", f"{v['precision']:.3f}", f"{v['recall']:.3f}", v["support"]] for name, v in per_class
    ]
    return section(
        "per-class", "Per class, weakest first", table(["class", "F1", "precision", "recall", "support"], rows)
    )


def _worst_errors(rows: list[dict], split: str) -> str:
    wrong = sorted((r for r in rows if r["true"] != r["predicted"]), key=lambda r: -float(r["confidence"]))
    cards = []
    for row in wrong[:WORST_ERRORS]:
        try:
            picture = thumbnail(open_image(row["path"]))
        except UNREADABLE:
            continue
        caption = f"true {row['true']} / predicted {row['predicted']} ({float(row['confidence']):.2f})"
        cards.append(
            f"<figure>{img(picture, locator_name(row['path']))}<figcaption>{html.escape(caption)}<br>"
            f"<small>{html.escape(locator_name(row['path']))}</small></figcaption></figure>"
        )
    content = f'<div class="gallery">{"".join(cards)}</div>' if cards else f"<p>No mistakes on {split}.</p>"
    return section("errors", "Most confident mistakes", content)


def _gradcam(run: runs.Run, rows: list[dict], samples: int) -> str:
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
    overlays = gradcam(load_trained(run), run.preprocess, pictures, run.classes)
    cards = []
    for row, (overlay, label_index, confidence) in zip(chosen, overlays, strict=True):
        verdict = "right" if row["true"] == row["predicted"] else "wrong"
        caption = f"{verdict}: true {row['true']}, predicted {run.classes[label_index]} ({confidence:.2f})"
        cards.append(
            f"<figure>{img(thumbnail(overlay, 200), caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return section("gradcam", "Where the model looks (Grad-CAM)", f'<div class="gallery">{"".join(cards)}</div>')


def _calibration(run: runs.Run, split: str, y_true: list[int], probabilities: np.ndarray) -> str:
    """Reliability before and after the temperature chosen on val, with both calibration errors."""
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


def _recipe(run: runs.Run) -> str:
    rows = [
        [f"{group}.{name}", value] for group, values in run.config["recipe"].items() for name, value in values.items()
    ]
    return section("recipe", "Recipe", table(["option", "value"], rows))
