"""Runs side by side: backbone, sizes, parameters, epochs, time, speed and figures, as one sortable table."""

from __future__ import annotations

import datetime
import html
from pathlib import Path

from imagefit import runs
from imagefit.errors import UserError
from imagefit.files import write_rows, write_text
from imagefit.report.page import PAGE, table

COLUMNS = [
    "run",
    "model",
    "train_size",
    "eval_size",
    "parameters",
    "epochs",
    "minutes",
    "train_images_per_s",
    "val_accuracy",
    "val_macro_f1",
    "test_accuracy",
    "test_macro_f1",
    "ece",
]
SORTABLE = [c for c in COLUMNS if c.endswith(("accuracy", "macro_f1"))] + ["ece", "minutes", "parameters"]


def run_facts(path: str | Path) -> dict:
    """One row of the comparison for a finished run folder."""
    run = runs.load_run(Path(path))
    files = runs.RunFiles(run.path)
    history = runs.read_history(files.history)
    metrics = run.metrics
    env = runs.read_json(files.env) if files.env.exists() else {}
    train_images = sum(s.split == "train" for s in run.split())
    seconds = sum(row["seconds"] for row in history)
    headline = metrics.get("test") or metrics.get("val") or {}
    return {
        "run": str(run.path),
        "model": run.recipe.model.backbone,
        "train_size": run.train_preprocess.size,
        "eval_size": run.preprocess.size,
        "parameters": _parameters(files.model),
        "epochs": len(history),
        "minutes": round(_minutes(env), 1) if _minutes(env) is not None else "",
        "train_images_per_s": round(train_images * len(history) / seconds, 1) if seconds else "",
        "val_accuracy": _figure(metrics, "val", "accuracy"),
        "val_macro_f1": _figure(metrics, "val", "macro_f1"),
        "test_accuracy": _figure(metrics, "test", "accuracy"),
        "test_macro_f1": _figure(metrics, "test", "macro_f1"),
        "ece": round(headline["ece"], 4) if "ece" in headline else "",
    }


def compare(paths: list[str | Path], *, sort: str = "", out: str | Path | None = None) -> list[dict]:
    """The rows of RUNS, best first by `sort` (default: test accuracy when every run has a test split, else
    val accuracy); with `out`, also written as OUT (CSV) and OUT with .html (a page)."""
    if not paths:
        raise UserError("no runs given. Pass run folders: imagefit compare runs/a runs/b")
    rows = [run_facts(p) for p in paths]
    key = sort or ("test_accuracy" if all(r["test_accuracy"] != "" for r in rows) else "val_accuracy")
    if key not in SORTABLE:
        raise UserError(f"--sort {key} is not one of: {', '.join(SORTABLE)}")
    smaller_is_better = key in ("ece", "minutes", "parameters")
    rows.sort(key=lambda r: (r[key] == "", r[key] if smaller_is_better else -(r[key] or 0)))
    if out is not None:
        out = Path(out)
        write_rows(out, COLUMNS, rows)
        page = PAGE.format(
            title=html.escape(f"imagefit compare: {len(rows)} runs, by {key}"),
            body=table(COLUMNS, [[row[c] for c in COLUMNS] for row in rows]),
        )
        write_text(out.with_suffix(".html"), page)
    return rows


def _figure(metrics: dict, split: str, name: str):
    return round(metrics[split][name], 4) if split in metrics and name in metrics[split] else ""


def _parameters(model: Path) -> int:
    from safetensors import safe_open

    total = 0
    with safe_open(str(model), framework="numpy") as weights:
        for key in weights.keys():
            count = 1
            for side in weights.get_slice(key).get_shape():
                count *= side
            total += count if "running_" not in key and "num_batches" not in key else 0
    return total


def _minutes(env: dict) -> float | None:
    try:
        started = datetime.datetime.fromisoformat(env["started"])
        finished = datetime.datetime.fromisoformat(env["finished"])
    except (KeyError, ValueError):
        return None
    return (finished - started).total_seconds() / 60
