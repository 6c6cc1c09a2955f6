"""Files written atomically: a temporary file beside the target, then a rename, so no reader sees half a file."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from imagefit.errors import UserError


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically: a temporary file beside it, then a rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write a binary file (a PNG plot) atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
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


def cpu_tensors(state: dict, prefix: str = "") -> dict:
    """The tensors of a state dict whose names start with PREFIX, without it, detached on the CPU (a
    Lightning checkpoint's model tensors carry the 'model.' prefix)."""
    return {k.removeprefix(prefix): v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(prefix)}


def save_tensors(path: Path, tensors: dict) -> None:
    """Save a dict of tensors as safetensors, atomically."""
    from safetensors.torch import save_file

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(temporary))
    temporary.replace(path)


def output_folder(path: Path, *, option: str = "--out") -> Path:
    """Make (if needed) and return the folder a command writes into; UserError when PATH is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file, and {option} names a folder to write into. Pick another {option}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def refuse_overwrite(path: Path, *, overwrite: bool, option: str = "--out", inputs: tuple[Path, ...] = ()) -> None:
    """UserError if PATH exists (unless `overwrite`) or is one of the command's inputs (always)."""
    path = Path(path)
    if any(path.resolve() == Path(source).resolve() for source in inputs):
        raise UserError(f"{path} is an input of this command; write the output elsewhere with {option}")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists. Pass --overwrite or another {option}")


def free_path(folder: Path, stem: str, suffix: str) -> Path:
    """FOLDER/STEM+SUFFIX, the stem made safe for any file system and numbered (-2, -3 ...) to overwrite nothing."""
    safe = re.sub(r"[^\w.-]+", "-", stem).strip("-.") or "file"
    candidate = Path(folder) / f"{safe}{suffix}"
    counter = 2
    while candidate.exists():
        candidate = Path(folder) / f"{safe}-{counter}{suffix}"
        counter += 1
    return candidate
