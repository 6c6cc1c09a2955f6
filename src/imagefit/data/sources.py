"""Find the labelled images in DATA: a folder of class folders, pre-split folders, a CSV or a zip.

Every image is named by a *locator*: an absolute file path, or `ARCHIVE.zip::member/path.jpg`
for a member of a zip read in place.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from imagefit.data.samples import SPLIT_NAMES, ZIP_SEPARATOR, CsvColumns, Sample, remote_url
from imagefit.data.shards import is_shard_folder, shard_samples
from imagefit.data.tables import from_csv
from imagefit.errors import UserError

__all__ = [
    "SPLIT_NAMES",
    "ZIP_SEPARATOR",
    "CsvColumns",
    "Found",
    "Sample",
    "check_data_path",
    "find_samples",
    "locator_name",
]

# Files that are never images and never worth a warning.
IGNORED_NAMES = {"thumbs.db", "desktop.ini", "license", "license.txt", "readme", "readme.md", "readme.txt"}


@dataclass
class Found:
    """What DATA holds: its samples, files outside any class folder, warnings (links not followed) and facts
    (how a CSV was read)."""

    samples: list[Sample]
    loose: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)  # images straight in a test/ folder: to predict
    task: str = "single-label"  # or "multi-label" (imagefit.tasks)


def find_samples(data: Path, csv_columns: CsvColumns | None = None) -> Found:
    """The samples in DATA, the files left out because they sit outside any class folder, and link notes.

    `csv_columns` says how to read a CSV (which columns, where its images are) where guessing cannot.
    """
    data = check_data_path(data)
    if is_shard_folder(data):  # a folder of shards, or an object-store URL of them
        samples, task = shard_samples(data)
        return Found(samples, task=task)
    if data.is_dir():
        walk = walk_tree(data)
        samples, loose, unlabelled = _from_relative_paths(walk.files, root=f"{data.resolve()}{os.sep}")
        return Found(samples, loose, walk.notes(), unlabelled=unlabelled)
    suffix = data.suffix.lower()
    if suffix == ".zip":
        samples, loose, unlabelled = _from_zip(data.resolve())
        return Found(samples, loose, unlabelled=unlabelled)
    samples, facts, task = from_csv(data.resolve(), csv_columns or CsvColumns())  # .csv or .tsv
    return Found(samples, facts=facts, task=task)


def check_data_path(data: str | Path) -> Path:
    """DATA as a path, or a UserError when it is missing or neither a folder, a CSV nor a .zip (no torch needed)."""
    data = Path(data).expanduser()
    if remote_url(data):  # shards in an object store: read when the samples are
        return data
    if not data.exists():
        raise UserError(f"{data}: no such file or folder. Pass a folder of class folders, a CSV or a .zip")
    if not data.is_dir() and data.suffix.lower() not in (".zip", ".csv", ".tsv"):
        raise UserError(
            f"{data}: not a folder, .csv or .zip. Pass a folder of class folders, a CSV of path,label or a .zip"
        )
    return data


def locator_name(locator: str) -> str:
    """The file name part of a locator (for messages and prediction ids)."""
    return PurePosixPath(locator.split(ZIP_SEPARATOR)[-1].replace(os.sep, "/")).name


@dataclass
class Walk:
    """The files under a folder, and the links left out: folder links that loop, files reached twice."""

    files: list[str]
    loops: list[str] = field(default_factory=list)  # linked folders whose real folder was already walked
    twice: list[str] = field(default_factory=list)  # linked files whose real file is already listed

    def notes(self) -> list[str]:
        notes = []
        if self.loops:
            notes.append(
                f"{len(self.loops)} linked folders lead back into folders already read and were not followed "
                f"(first: {self.loops[0]})"
            )
        if self.twice:
            notes.append(f"{len(self.twice)} linked files are copies of files already read (first: {self.twice[0]})")
        return notes


def walk_tree(root: Path) -> Walk:
    """Every candidate file under ROOT once (hidden files and folders left out), as sorted relative POSIX paths.

    Linked folders are followed (people link datasets in), but a real folder is walked once: a link
    that leads back into a folder already walked (a loop, or a second way in) is left out and noted.
    A file reached twice through links keeps the place where it really lies (its real class folder).
    """
    root = Path(root)
    walk = Walk(files=[])
    seen_folders: set[str] = set()
    by_real: dict[str, str] = {}  # real file path -> the relative path listed for it
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        relative = Path(folder).relative_to(root)
        if real in seen_folders:
            dirs[:] = []
            walk.loops.append(relative.as_posix())
            continue
        seen_folders.add(real)
        kept = []
        for name in sorted(d for d in dirs if not d.startswith((".", "__"))):
            if os.path.realpath(os.path.join(folder, name)) in seen_folders:
                walk.loops.append((relative / name).as_posix())
            else:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            if _is_candidate(name):
                _list_once(walk, by_real, root, (relative / name).as_posix())
    walk.files = sorted(by_real.values())
    return walk


def _list_once(walk: Walk, by_real: dict[str, str], root: Path, relative: str) -> None:
    """List `relative` under its real file, preferring the path that is not a link."""
    full = root / relative
    real = os.path.realpath(full)
    listed = by_real.get(real)
    if listed is None:
        by_real[real] = relative
    elif os.path.islink(root / listed) and not os.path.islink(full):
        walk.twice.append(listed)
        by_real[real] = relative
    else:
        walk.twice.append(relative)


def walk_files(root: Path) -> list[str]:
    """Every candidate file under ROOT once, as sorted relative POSIX paths (see `walk_tree`)."""
    return walk_tree(root).files


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


def _from_zip(archive: Path) -> tuple[list[Sample], list[str], list[str]]:
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


def _from_relative_paths(paths: list[str], *, root: str) -> tuple[list[Sample], list[str], list[str]]:
    """(samples, loose files, unlabelled test images): files straight in a test/ folder are the latter."""
    prefix, relative = _strip_single_root(paths)
    tops = {p.split("/", 1)[0].lower() for p in relative if "/" in p}
    presplit = bool(tops & set(SPLIT_NAMES))
    samples, loose, unlabelled = [], [], []
    for rel in relative:
        parts = rel.split("/")
        locator = root + prefix + rel
        if presplit and len(parts) >= 3 and parts[0].lower() in SPLIT_NAMES:
            samples.append(Sample(locator, parts[1], SPLIT_NAMES[parts[0].lower()]))
        elif not presplit and len(parts) >= 2:
            samples.append(Sample(locator, parts[0]))
        elif presplit and len(parts) == 2 and SPLIT_NAMES.get(parts[0].lower()) == "test":
            unlabelled.append(locator)  # the competition layout: train/<class>/..., test/*.jpg
        else:
            loose.append(locator)
    return samples, loose, unlabelled
