"""Turning a user's text into recipe values, and the checks of single values: names (with a suggestion
for a typo), types, durations, choices, devices."""

from __future__ import annotations

import types
import typing
from typing import Any

from imagefit.errors import UserError

# What Lightning's Trainer takes (its accelerator registry and precision strings); strategies are
# checked against Lightning's own registry when training starts (training/engine.py).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
PRECISIONS = (
    "auto",
    "32-true",
    "32",
    "16-mixed",
    "16",
    "bf16-mixed",
    "bf16",
    "16-true",
    "bf16-true",
    "64-true",
    "64",
    "transformer-engine",
    "transformer-engine-float16",
)


def check_devices(text: str) -> None:
    """devices: auto, a count (-1 for all), or a comma list of device indices."""
    text = str(text).strip()
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if text == "auto":
        return
    if "," in text:  # indices: 0,1 (or "0," for the first device alone)
        valid = bool(parts) and all(p.isdigit() for p in parts)
    else:
        valid = text.lstrip("-").isdigit() and (int(text) >= 1 or text == "-1")
    if not valid:
        raise UserError(f"devices={text!r} is not a device count or list: use auto, 1, 4, -1 (all) or 0,1")


UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '10m' or '1.5h'; 0 for '' (no limit). UserError for anything else."""
    text = str(text).strip().lower()
    if not text or text in ("0", "none"):
        return 0.0
    number, unit = (text[:-1], text[-1]) if text[-1] in UNITS else (text, "s")
    try:
        seconds = float(number) * UNITS[unit]
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise UserError(f"time_limit '{text}' is not a duration: write it like 90s, 10m or 1.5h")
    return seconds


def format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def field_type(group_cls: type, name: str) -> Any:
    return typing.get_type_hints(group_cls)[name]


def coerce(key: str, value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
        origin = typing.get_origin(kind)
    try:
        if origin is tuple:
            return to_int_tuple(value)
        if kind is bool:
            return to_bool(value)
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"option '{key}' expects {getattr(kind, '__name__', kind)}, got {value!r}") from exc


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def to_int_tuple(value: Any) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    text = str(value).strip().lower()
    if text in ("", "none", "0"):
        return ()
    return tuple(int(part) for part in text.split(","))


def choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name}={value!r} is not one of: {', '.join(choices)}")
