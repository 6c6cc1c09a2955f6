"""CSV manifests as people have them: which column names the images, which the labels, where the files are.

A competition CSV (`image,sender_id,label`, ids without extension, images in a sibling `images/`
or `train/` folder) reads like `path,label`. The path column is the one whose values name
existing files (relative to the CSV's folder or to a sibling image folder, with or without an
image extension); the label column is `label`, `class`, `category`, `species` or `target`, or
the one column left. What was chosen is said in one line; `CsvColumns` settles what cannot be told.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from pathlib import Path

from imagefit.data.samples import SPLIT_NAMES, ZIP_SEPARATOR, CsvColumns, Sample
from imagefit.errors import UserError
from imagefit.tasks import MULTI, SINGLE, joined

PATH_NAMES = ("path", "filepath", "file", "filename", "file_name", "image", "image_id", "image_name", "img", "id")
LABEL_NAMES = ("label", "class", "category", "species", "target", "breed", "labels", "y")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
SIBLING_FOLDERS = ("images", "image", "train", "img", "imgs", "photos", "pictures", "data")
SAMPLED_ROWS = 50  # values of each column tried against the files when looking for the path column


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


class Finder:
    """Finds the file a CSV value names: relative to a base folder, with or without an image extension."""

    def __init__(self, table: Path, image_dir: Path | None):
        folder = table.parent
        if image_dir is not None:
            bases = [folder / image_dir]
            if not bases[0].is_dir():
                raise UserError(f"--image-dir {image_dir}: no such folder next to {table}")
        else:
            names = [*SIBLING_FOLDERS, table.stem]
            bases = [folder, *(folder / name for name in dict.fromkeys(names) if (folder / name).is_dir())]
        self.bases = bases
        self._stems: dict[Path, dict[str, str]] = {}

    def find(self, value: str) -> tuple[str, Path, bool] | None:
        """(locator, base folder, extension added) for the file VALUE names, or None."""
        if ZIP_SEPARATOR in value:
            archive, member = value.split(ZIP_SEPARATOR, 1)
            base = self.bases[0]
            return f"{(base / archive).resolve()}{ZIP_SEPARATOR}{member}", base, False
        for base in self.bases:
            candidate = base / value
            if candidate.is_file():
                return str(candidate.resolve()), base, False
            if not Path(value).suffix or Path(value).suffix.lower() not in IMAGE_SUFFIXES:
                named = self._by_stem(base / Path(value).parent).get(Path(value).name)
                if named:
                    return str((base / Path(value).parent / named).resolve()), base, True
        return None

    def _by_stem(self, folder: Path) -> dict[str, str]:
        """File name by stem (images only) in FOLDER, listed once."""
        if folder not in self._stems:
            stems: dict[str, str] = {}
            if folder.is_dir():
                for name in sorted(os.listdir(folder)):
                    stem, suffix = os.path.splitext(name)
                    if suffix.lower() in IMAGE_SUFFIXES:
                        stems.setdefault(stem, name)
            self._stems[folder] = stems
        return self._stems[folder]


def from_csv(table: Path, columns: CsvColumns) -> tuple[list[Sample], list[str], str]:
    """The samples a CSV names, one line saying how it was read, and the task (single- or multi-label).

    Multi-label CSVs: a label column of several labels a cell (`rust scab`, `rust;scab`,
    `rust|scab`: the delimiter found, or `--label-delim`), or one 0/1 column a label
    (`image,healthy,rust,scab`). An empty label then means none of them.
    """
    dialect = "excel-tab" if table.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(io.StringIO(read_text(table), newline=""), dialect=dialect)
    rows = list(reader)
    header = [name for name in (reader.fieldnames or []) if name is not None]
    if not rows:
        raise UserError(f"{table}: no rows. Write a header line 'path,label' and one row per image")
    finder = Finder(table, columns.image_dir)
    path_column = _column(header, columns.path, "--path-column", table) or _path_column(table, header, rows, finder)
    split_column = next((c for c in header if c.strip().lower() == "split"), None)
    left = [c for c in header if c not in (path_column, split_column)]
    flags = [] if columns.label else _one_hot_columns(rows, left, table)
    label_column = None
    if not flags:
        label_column = _column(header, columns.label, "--label-column", table) or _label_column(
            table, header, exclude={path_column, split_column}
        )
    cells = [(row.get(label_column) or "").strip() for row in rows]
    delimiter = None if flags else _delimiter(cells, columns, table)
    several = bool(flags or delimiter)  # several labels an image
    task = MULTI if several else SINGLE
    samples, bases, suffixed = [], set(), False
    for line, row in enumerate(rows, start=2):
        value = (row.get(path_column) or "").strip()
        label = _label(row, label_column, flags, delimiter, where=f"{table}:{line}")
        if not value or (not label and not several):  # an image may carry none of several labels
            raise UserError(f"{table}:{line}: empty {path_column} or {label_column}. Fill it in or delete the row")
        split = (row.get(split_column, "") or "").strip().lower() if split_column else ""
        if split and split not in SPLIT_NAMES:
            raise UserError(f"{table}:{line}: split '{split}' is not one of train, val, test")
        found = finder.find(value)
        if found is None:  # kept: the scan reports it as unreadable, with the others
            locator = str((finder.bases[0] / value).resolve())
        else:
            locator, base, added = found
            bases.add(base)
            suffixed |= added
        samples.append(Sample(locator, label, SPLIT_NAMES.get(split, "")))
    said = _said(table, path_column, label_column or f"{len(flags)} 0/1 columns", bases, suffixed)
    if several:
        said += f"; several labels an image ({'one 0/1 column a label' if flags else repr(delimiter) + ' between'})"
    return samples, [said], task


# A column left beside the 0/1 label columns whose values are mostly 0/1 is a label column with a typo.
MOSTLY_FLAGS = 0.8


def _one_hot_columns(rows: list[dict], columns: list[str], table: Path) -> list[str]:
    """Columns holding only 0/1 (at least two of them, and every other column left aside): one a label."""
    flags = [c for c in columns if all((row.get(c) or "").strip() in ("0", "1") for row in rows)]
    if len(flags) < 2 or len(flags) < len(columns) - 1:
        return []
    for column in set(columns) - set(flags):
        values = [(row.get(column) or "").strip() for row in rows]
        if sum(v in ("0", "1") for v in values) >= MOSTLY_FLAGS * len(values):
            line, value = next((n, v) for n, v in enumerate(values, start=2) if v not in ("0", "1"))
            raise UserError(
                f"{table}:{line}: column '{column}' holds {value!r} where its other rows hold 0 or 1. "
                "A label column of this CSV holds only 0 (no) or 1 (yes): fix the row"
            )
    return flags


def _delimiter(cells: list[str], columns: CsvColumns, table: Path) -> str | None:
    """The delimiter between a cell's labels, or None for one label a cell."""
    if columns.label_delim:
        return columns.label_delim
    lines = {mark: [n for n, cell in enumerate(cells, start=2) if mark in cell] for mark in (";", "|")}
    if lines[";"] and lines["|"]:
        raise UserError(
            f"{table}: labels are parted by ';' (line {lines[';'][0]}) and by '|' (line {lines['|'][0]}). "
            "Use one of them throughout, or name it with --label-delim"
        )
    for mark in (";", "|"):
        if lines[mark]:
            return mark
    alone = {cell for cell in cells if cell and " " not in cell}
    spaced = [cell for cell in cells if " " in cell]
    # Spaces part labels only when every word of such a cell is a label seen alone ("ants bees", not "Épine rouge").
    if spaced and all(set(cell.split()) <= alone for cell in spaced):
        return " "
    return None


def _label(row: dict, label_column: str | None, flags: list[str], delimiter: str | None, *, where: str) -> str:
    if flags:
        return joined(c.strip() for c in flags if (row.get(c) or "").strip() == "1")
    cell = (row.get(label_column) or "").strip()
    if delimiter is None or not cell:
        return cell
    parts = cell.split() if delimiter == " " else [part.strip() for part in cell.split(delimiter)]
    if not all(parts):
        raise UserError(f"{where}: {cell!r} has an empty label between its {delimiter!r}. Remove the extra one")
    return joined(parts)


def _column(header: list[str], wanted: str | None, option: str, table: Path) -> str | None:
    if wanted is None:
        return None
    for name in header:
        if name.strip().lower() == wanted.strip().lower():
            return name
    raise UserError(f"{option} {wanted}: {table} has no such column (its columns: {', '.join(header)})")


def _path_column(table: Path, header: list[str], rows: list[dict], finder: Finder) -> str:
    """A column named `path`, else the one whose values name existing files (a path-like name wins a tie)."""
    explicit = next((n for n in header if n.strip().lower() == "path"), None)
    if explicit is not None:  # said outright: files it names that are missing are reported by the scan
        return explicit
    sample = rows[:SAMPLED_ROWS]
    scores = {}
    for name in header:
        values = [(row.get(name) or "").strip() for row in sample]
        scores[name] = sum(1 for v in values if v and finder.find(v) is not None) / len(sample)
    named = [n for n in header if n.strip().lower() in PATH_NAMES]
    best = max(header, key=lambda n: (scores[n], n in named))
    if scores[best] >= 0.5:
        return best
    folders = ", ".join(str(b.relative_to(table.parent)) or "." for b in finder.bases)
    matched = max(scores.values(), default=0.0)
    raise UserError(
        f"{table}: no column names the image files (columns: {', '.join(header)}; at best {matched:.0%} of "
        f"{len(sample)} values matched a file in {folders}). Pass --path-column NAME and --image-dir FOLDER"
    )


def _label_column(table: Path, header: list[str], *, exclude: set) -> str:
    left = [n for n in header if n not in exclude]
    for wanted in LABEL_NAMES:
        for name in left:
            if name.strip().lower() == wanted:
                return name
    if len(left) == 1:
        return left[0]
    raise UserError(
        f"{table}: cannot tell which column holds the labels (columns left: {', '.join(left) or 'none'}). "
        "Pass --label-column NAME"
    )


def _said(table: Path, path_column: str, label_column: str, bases: set, suffixed: bool) -> str:
    where = ", ".join(sorted(str(b.relative_to(table.parent)) + "/" for b in bases if b != table.parent))
    how = "".join([f" in {where}" if where else "", ", extension added" if suffixed else ""])
    return f"{table.name}: images from column '{path_column}'{how}, labels from column '{label_column}'"
