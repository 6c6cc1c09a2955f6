"""Find the labelled images in DATA: a folder of class folders, pre-split folders, a CSV or a zip.

Every image is named by a *locator*: an absolute file path, or `ARCHIVE.zip::member/path.jpg`
for a member of a zip read in place.
"""

from __future__ import annotations

import csv
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imagefit.errors import UserError

ZIP_SEPARATOR = "::"
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# Files that are never images and never worth a warning.
IGNORED_NAMES = {"thumbs.db", "desktop.ini", "license", "license.txt", "readme", "readme.md", "readme.txt"}


@dataclass(frozen=True)
class Sample:
    """One labelled image: where it is, its class, and its split ('train', 'val', 'test' or '' if unsplit)."""

    path: str
    label: str
    split: str = ""


def find_samples(data: Path) -> tuple[list[Sample], list[str]]:
    """The samples in DATA, and the files that were left out because they sit outside any class folder."""
    data = Path(data).expanduser()
    if not data.exists():
        raise UserError(f"{data}: no such file or folder. Pass a folder of class folders, a CSV or a .zip")
    if data.is_dir():
        return _from_relative_paths(walk_files(data), root=f"{data.resolve()}{os.sep}")
    suffix = data.suffix.lower()
    if suffix == ".zip":
        return _from_zip(data.resolve())
    if suffix in (".csv", ".tsv"):
        return _from_csv(data.resolve()), []
    raise UserError(
        f"{data}: not a folder, .csv or .zip. Pass a folder of class folders, a CSV of path,label or a .zip"
    )


def locator_name(locator: str) -> str:
    """The file name part of a locator (for messages and prediction ids)."""
    return PurePosixPath(locator.split(ZIP_SEPARATOR)[-1].replace(os.sep, "/")).name


def walk_files(root: Path) -> list[str]:
    """Every candidate file under ROOT (hidden files and folders left out), as sorted relative POSIX paths."""
    paths = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        relative = Path(folder).relative_to(root)
        paths += [(relative / name).as_posix() for name in sorted(files) if _is_candidate(name)]
    return paths


def zip_files(archive: Path) -> list[str]:
    """Every candidate file member of a zip (folders, hidden files and macOS metadata left out), sorted."""
    try:
        with zipfile.ZipFile(archive) as handle:
            names = [n for n in handle.namelist() if not n.endswith("/") and "__MACOSX/" not in n]
    except zipfile.BadZipFile as exc:
        raise UserError(f"{archive}: not a readable zip ({exc}). Re-create the archive or pass the folder") from exc
    return sorted(n for n in names if _is_candidate(PurePosixPath(n).name))


def _is_candidate(name: str) -> bool:
    return not name.startswith((".", "_")) and name.lower() not in IGNORED_NAMES


def _from_zip(archive: Path) -> tuple[list[Sample], list[str]]:
    return _from_relative_paths(zip_files(archive), root=f"{archive}{ZIP_SEPARATOR}")


def _strip_single_root(paths: list[str]) -> tuple[str, list[str]]:
    """Drop leading folders shared by every path (a zip of `cifar10/train/...` holds one such folder)."""
    prefix = ""
    while paths:
        heads = {p.split("/", 1)[0] for p in paths}
        if len(heads) != 1 or any("/" not in p for p in paths):
            break
        head = heads.pop()
        if head.lower() in SPLIT_NAMES:
            break
        # Stop at a class folder: its children are files, not folders.
        if all(p.count("/") == 1 for p in paths):
            break
        prefix += head + "/"
        paths = [p.split("/", 1)[1] for p in paths]
    return prefix, paths


def _from_relative_paths(paths: list[str], *, root: str) -> tuple[list[Sample], list[str]]:
    prefix, relative = _strip_single_root(paths)
    tops = {p.split("/", 1)[0].lower() for p in relative if "/" in p}
    presplit = bool(tops & set(SPLIT_NAMES))
    samples, loose = [], []
    for rel in relative:
        parts = rel.split("/")
        locator = root + prefix + rel
        if presplit and len(parts) >= 3 and parts[0].lower() in SPLIT_NAMES:
            samples.append(Sample(locator, parts[1], SPLIT_NAMES[parts[0].lower()]))
        elif not presplit and len(parts) >= 2:
            samples.append(Sample(locator, parts[0]))
        else:
            loose.append(locator)
    return samples, loose


def _from_csv(table: Path) -> list[Sample]:
    with table.open(newline="", encoding="utf-8-sig") as handle:
        dialect = "excel-tab" if table.suffix.lower() == ".tsv" else "excel"
        rows = list(csv.DictReader(handle, dialect=dialect))
    if not rows:
        raise UserError(f"{table}: no rows. Write a header line 'path,label' and one row per image")
    columns = {c.strip().lower(): c for c in rows[0]}
    if "path" not in columns or "label" not in columns:
        raise UserError(f"{table}: needs columns 'path' and 'label' (found {', '.join(rows[0])}). Rename the header")
    samples = []
    for line, row in enumerate(rows, start=2):
        path, label = (row[columns["path"]] or "").strip(), (row[columns["label"]] or "").strip()
        if not path or not label:
            raise UserError(f"{table}:{line}: empty path or label. Fill it in or delete the row")
        split = (row.get(columns.get("split", ""), "") or "").strip().lower()
        if split and split not in SPLIT_NAMES:
            raise UserError(f"{table}:{line}: split '{split}' is not one of train, val, test")
        samples.append(Sample(_resolve_csv_path(table.parent, path), label, SPLIT_NAMES.get(split, "")))
    return samples


def _resolve_csv_path(folder: Path, path: str) -> str:
    if ZIP_SEPARATOR in path:
        archive, member = path.split(ZIP_SEPARATOR, 1)
        return f"{(folder / archive).resolve()}{ZIP_SEPARATOR}{member}"
    return str((folder / path).resolve())
