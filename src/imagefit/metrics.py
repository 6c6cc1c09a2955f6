"""Classification metrics from labels and predictions (scikit-learn), shaped for metrics.json."""

from __future__ import annotations

from sklearn.metrics import accuracy_score, classification_report, f1_score


def classification_metrics(y_true: list[int], y_pred: list[int], classes: list[str]) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support."""
    labels = list(range(len(classes)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    per_class = {
        name: {
            "precision": report[name]["precision"],
            "recall": report[name]["recall"],
            "f1": report[name]["f1-score"],
            "support": int(report[name]["support"]),
        }
        for name in classes
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "count": len(y_true),
        "per_class": per_class,
    }
