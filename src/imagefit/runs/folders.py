"""New run folders: `runs/<data name>[-N]`, `--name`, or exactly `--out`."""

from __future__ import annotations

import re
from pathlib import Path

from imagefit.errors import UserError
from imagefit.files import output_folder


def dataset_name(data: Path) -> str:
    """A run-name stem from DATA: its folder or file name, made filesystem-safe."""
    stem = Path(data).expanduser().resolve().stem or "data"
    return re.sub(r"[^\w.-]+", "-", stem).strip("-") or "data"


def new_run_dir(*, data: Path, runs_dir: Path, name: str | None = None, out: Path | None = None) -> Path:
    """Create and return the folder of a new run: `out` exactly, else runs_dir/name, else runs_dir/<data>[-N]."""
    if out is not None:
        target = Path(out)
        if target.is_dir() and any(target.iterdir()):
            raise UserError(f"{target} exists and is not empty. Pick another --out, or --resume {target}")
        return output_folder(target)
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stem = name or dataset_name(data)
    for counter in range(1, 10_000):
        target = runs_dir / (stem if counter == 1 else f"{stem}-{counter}")
        try:
            target.mkdir()
            return target
        except FileExistsError:
            if name:
                raise UserError(f"{target} exists. Pick another --name, or --resume {target}") from None
    raise UserError(f"{runs_dir} holds too many runs named {stem}. Pass --name")
