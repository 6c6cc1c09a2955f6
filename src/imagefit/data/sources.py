"""Find the labelled images in DATA: a folder of class folders, pre-split folders, a CSV or a zip.

Every image is named by a *locator*: an absolute file path, or `ARCHIVE.zip::member/path.jpg`
for a member of a zip read in place.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import zipfile
from dataclasses import dataclass, field
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


@dataclass
class Found:
    """What DATA holds: its samples, files outside any class folder, and notes on links that were not followed."""

    samples: list[Sample]
    loose: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def find_samples(data: Path) -> Found:
    """The samples in DATA, the files left out because they sit outside any class folder, and link notes."""
    data = Path(data).expanduser()
    if not data.exists():
        raise UserError(f"{data}: no such file or folder. Pass a folder of class folders, a CSV or a .zip")
    if data.is_dir():
        walk = walk_tree(data)
        samples, loose = _from_relative_paths(walk.files, root=f"{data.resolve()}{os.sep}")
        return Found(samples, loose, walk.notes())
    suffix = data.suffix.lower()
    if suffix == ".zip":
        return Found(*_from_zip(data.resolve()))
    if suffix in (".csv", ".tsv"):
        return Found(_from_csv(data.resolve()))
    raise UserError(
        f"{data}: not a folder, .csv or .zip. Pass a folder of class folders, a CSV of path,label or a .zip"
    )


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


def read_text(table: Path) -> str:
    """A text file as people save them: UTF-8 (with or without BOM), UTF-16 with a BOM, or Windows-1252.

    Excel saves "CSV" as Windows-1252 (or Latin-1) and "Unicode text" as UTF-16; bytes that are
    none of these raise UserError naming the line.
    """
    data = table.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        line = data[:first_bad].count(b"\n") + 1
        raise UserError(
            f"{table}:{line}: bytes that are not UTF-8, UTF-16 or Windows-1252 text. Save the file as UTF-8 CSV"
        ) from None


def _from_csv(table: Path) -> list[Sample]:
    dialect = "excel-tab" if table.suffix.lower() == ".tsv" else "excel"
    rows = list(csv.DictReader(io.StringIO(read_text(table), newline=""), dialect=dialect))
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
