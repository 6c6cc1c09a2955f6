"""Single-label vs multi-label, decided once: the run's task object owns the difference.

`task_for(name)` gives the object for a task's name (config.json's `task`, a data source's guess);
`Task` (base.py) lists what it decides: label parsing, targets, the split, imbalance handling, the loss,
mixing, activation, decisions and thresholds, metrics, the CSV columns, the exported output and the
report's sections. No other module tests which task it has.
"""

from __future__ import annotations

from imagefit.tasks.base import Imbalance, LabelIssue, Task
from imagefit.tasks.labels import JOIN, joined, labels_of, sigmoid, softmax
from imagefit.tasks.multi import MultiLabel
from imagefit.tasks.single import SingleLabel

SINGLE, MULTI = SingleLabel.name, MultiLabel.name
TASKS = (SINGLE, MULTI)
_BY_NAME: dict[str, Task] = {SINGLE: SingleLabel(), MULTI: MultiLabel()}


def task_for(task: str | Task) -> Task:
    """The task object of a name ('single-label', 'multi-label'); a task object is returned as it is."""
    if isinstance(task, Task):
        return task
    try:
        return _BY_NAME[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}: one of {', '.join(TASKS)}") from None


__all__ = [
    "JOIN",
    "MULTI",
    "SINGLE",
    "TASKS",
    "Imbalance",
    "LabelIssue",
    "MultiLabel",
    "SingleLabel",
    "Task",
    "joined",
    "labels_of",
    "sigmoid",
    "softmax",
    "task_for",
]
