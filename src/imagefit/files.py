"""Files written atomically: a temporary file beside the target, then a rename, so no reader sees half a file."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically: a temporary file beside it, then a rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (a crash never leaves half a file)."""
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def write_rows(path: Path, columns: list[str], rows: list[dict] | list[list]) -> None:
    """Write a CSV atomically, from dicts (by `columns`) or from lists."""
    buffer = io.StringIO(newline="")
    if rows and isinstance(rows[0], dict):
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    else:
        plain = csv.writer(buffer)
        plain.writerow(columns)
        plain.writerows(rows)
    write_text(path, buffer.getvalue())


def save_tensors(path: Path, tensors: dict) -> None:
    """Save a dict of tensors as safetensors, atomically."""
    from safetensors.torch import save_file

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(temporary))
    temporary.replace(path)
