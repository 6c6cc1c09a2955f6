"""What every data module shares: a labelled image (`Sample`), how locators name zip members, split names,
and how to read a CSV's columns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ZIP_SEPARATOR = "::"
REMOTE = re.compile(r"^(s3|gs):/+(.+?)/*$")  # object-store URLs (shards): s3://bucket/prefix, gs://bucket/prefix


def remote_url(path: str | Path) -> str | None:
    """PATH as an object-store URL (s3://..., gs://...) when it is one, else None. A command-line argument read as
    a Path has lost one of the slashes (s3:/bucket/prefix): it is put back."""
    match = REMOTE.match(str(path))
    return f"{match[1]}://{match[2]}" if match else None


SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass(frozen=True)
class Sample:
    """One labelled image: where it is, its class, and its split ('train', 'val', 'test' or '' if unsplit)."""

    path: str
    label: str
    split: str = ""


@dataclass(frozen=True)
class CsvColumns:
    """How to read a CSV of images where guessing cannot tell: its path and label columns, its image folder."""

    path: str | None = None  # the column naming each image (a path, or a file name or id without extension)
    label: str | None = None  # the column holding each image's class
    image_dir: Path | None = None  # where the images are, relative to the CSV's folder
    label_delim: str | None = None  # what parts a cell's labels (multi-label); found when not given
