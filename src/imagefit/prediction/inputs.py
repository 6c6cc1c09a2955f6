"""Gather the images to predict from files, folders (recursively), zips and single locators.

A locator names one image inside a zip or imagefit shards (`ARCHIVE.zip::member.jpg`, as split.csv records
the images of a zip read in place): given as it is, it is predicted as it is.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from imagefit.data.samples import remote_url
from imagefit.data.sources import ZIP_SEPARATOR, locator_name, walk_files, zip_files
from imagefit.errors import UserError


def is_locator(item: str | Path) -> bool:
    """Whether ITEM names one image inside a zip or shards (`ARCHIVE::member`) whose archive is there."""
    head, separator, member = str(item).partition(ZIP_SEPARATOR)
    return bool(separator and member) and (remote_url(head) is not None or Path(head).expanduser().exists())


def check_inputs(inputs: list[str | Path]) -> list[Path | str]:
    """INPUTS as paths (a locator kept as text), or a UserError when none is given or one does not exist
    (nothing is listed yet)."""
    if not inputs:
        raise UserError("no images given. Pass image files, folders or a .zip")
    paths = [str(item) if is_locator(item) else Path(item).expanduser() for item in inputs]
    missing = [path for path in paths if isinstance(path, Path) and not path.exists()]
    if missing:
        raise UserError(f"{missing[0]}: no such file or folder")
    return paths


def collect_inputs(inputs: list[str | Path]) -> list[str]:
    """Locators of every candidate file under INPUTS, in a stable order; hidden files are left out."""
    found: list[str] = []
    for path in check_inputs(inputs):
        if isinstance(path, str):
            found.append(path)
        elif path.is_dir():
            found += [str((path / relative).resolve()) for relative in walk_files(path)]
        elif path.suffix.lower() == ".zip":
            found += [f"{path.resolve()}{ZIP_SEPARATOR}{name}" for name in zip_files(path.resolve())]
        else:
            found.append(str(path.resolve()))
    if not found:
        raise UserError(f"no files in {', '.join(str(i) for i in inputs)}. Pass image files, folders or a .zip")
    return found


def image_id(locator: str) -> str:
    """The Id column of a submission: the file name without its extension."""
    return PurePosixPath(locator_name(locator)).stem
