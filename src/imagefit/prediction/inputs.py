"""Gather the images to predict from files, folders (recursively) and zips."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path, PurePosixPath

from imagefit.data.sources import ZIP_SEPARATOR, locator_name
from imagefit.errors import UserError


def collect_inputs(inputs: list[str | Path]) -> list[str]:
    """Locators of every candidate file under INPUTS, in a stable order; hidden files are left out."""
    if not inputs:
        raise UserError("no images given. Pass image files, folders or a .zip")
    found: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
        if path.is_dir():
            found += _walk(path)
        elif path.suffix.lower() == ".zip":
            found += _zip_members(path.resolve())
        else:
            found.append(str(path.resolve()))
    if not found:
        raise UserError(f"no files in {', '.join(str(i) for i in inputs)}. Pass image files, folders or a .zip")
    return found


def _walk(root: Path) -> list[str]:
    paths = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths += [str((Path(folder) / name).resolve()) for name in sorted(files) if not name.startswith(".")]
    return paths


def _zip_members(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as handle:
        names = [n for n in handle.namelist() if not n.endswith("/") and "__MACOSX/" not in n]
    return [f"{archive}{ZIP_SEPARATOR}{n}" for n in sorted(names) if not PurePosixPath(n).name.startswith(".")]


def image_id(locator: str) -> str:
    """The Id column of a submission: the file name without its extension."""
    return PurePosixPath(locator_name(locator)).stem
