"""The sections of a multi-label run's report.html: figures, per-label table, precision-recall curves, label
co-occurrence and the images with the most wrong labels (missed and false)."""

from __future__ import annotations

import html

from imagefit.data.decode import UNREADABLE, open_image
from imagefit.data.sources import locator_name
from imagefit.report import figures
from imagefit.report.page import data_uri, img, section, table, thumbnail
from imagefit.report.sections import WORST_ERRORS, Page

SUMMARY_KEYS = ("mean_average_precision", "micro_average_precision", "subset_accuracy", "hamming_loss", "macro_f1")


def labels_summary(page: Page) -> str:
    figures_of = page.metrics
    summary = table(
        ["split", *SUMMARY_KEYS], [[page.split, *(f"{figures_of.get(k, float('nan')):.4f}" for k in SUMMARY_KEYS)]]
    )
    return section("summary", f"Multi-label run: {len(page.classes)} labels ({page.split})", summary)


def per_label(page: Page) -> str:
    ordered = sorted(page.metrics.get("per_class", {}).items(), key=lambda item: item[1]["f1"])
    rows = [
        [
            name,
            f"{v['average_precision']:.3f}",
            f"{v['precision']:.3f}",
            f"{v['recall']:.3f}",
            f"{v['f1']:.3f}",
            f"{v['threshold']:.2f}",
            v["support"],
        ]
        for name, v in ordered
    ]
    header = ["label", "AP", "precision", "recall", "F1", "threshold", "support"]
    return section("per-label", "Per label, weakest first", table(header, rows))


def precision_recall(page: Page) -> str:
    picture = figures.precision_recall(page.truth, page.probabilities, page.classes)
    return section("pr", "Precision-recall curves", img(data_uri(picture), "PR curves"))


def co_occurrence(page: Page) -> str:
    train = [page.run.task.parts(s.label) for s in page.run.split() if s.split == "train"]
    picture = figures.co_occurrence(train, page.classes)
    return section("co-occurrence", "Labels together (training images)", img(data_uri(picture), "co-occurrence"))


def label_errors(page: Page) -> str:
    """The images with the most labels missed or given falsely, at the run's thresholds."""
    wrong = []
    for row, hits, probs in zip(page.rows, page.truth, page.probabilities, strict=True):
        guess = probs >= page.run.thresholds
        missed = [c for c, h, g in zip(page.classes, hits, guess, strict=True) if h and not g]
        false = [c for c, h, g in zip(page.classes, hits, guess, strict=True) if g and not h]
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
    return section("errors", "Images with the most wrong labels", f'<div class="gallery">{"".join(cards)}</div>')


RENDERERS = {
    "labels-summary": labels_summary,
    "per-label": per_label,
    "pr": precision_recall,
    "co-occurrence": co_occurrence,
    "label-errors": label_errors,
}
