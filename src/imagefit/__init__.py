"""imagefit: turn a folder of labelled images into the best classifier it can, by transfer learning.

    >>> import imagefit
    >>> sorted(imagefit.Recipe().to_dict())
    ['augment', 'data', 'engine', 'model', 'optim', 'predict', 'schedule']

The heavy parts (torch, Lightning) load on first use, so that ONNX prediction runs without torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from imagefit.config import Recipe  # noqa: E402
from imagefit.errors import UserError  # noqa: E402

_LAZY = {
    "train": ("imagefit.training.entry", "train"),
    "train_quality": ("imagefit.training.quality", "train_quality"),
    "Run": ("imagefit.runs", "Run"),
    "load_run": ("imagefit.runs", "load_run"),
    "predict": ("imagefit.prediction.loading", "predict"),
    "evaluate": ("imagefit.evaluation.evaluator", "evaluate"),
    "evaluate_exported": ("imagefit.evaluation.exported", "evaluate_exported"),
    "export_ensemble": ("imagefit.export.ensembles", "export_ensemble"),
    "export_onnx": ("imagefit.export.onnx", "export_onnx"),
    "export_openvino": ("imagefit.export.openvino", "export_openvino"),
    "explain": ("imagefit.prediction.gradcam", "explain"),
    "write_report": ("imagefit.report.writer", "write_report"),
    "suggest": ("imagefit.audit.suggest", "suggest"),
    "distill": ("imagefit.training.pipeline", "distill"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'imagefit' has no attribute {name!r}")


__all__ = ["Recipe", "UserError", "__version__", *_LAZY]
