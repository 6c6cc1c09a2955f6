import csv

import pytest
from conftest import make_class_folders, zip_folder

from imagefit.data import find_samples
from imagefit.data.sources import ZIP_SEPARATOR
from imagefit.errors import UserError


def _labels_by_split(samples):
    table = {}
    for sample in samples:
        table.setdefault(sample.split, set()).add(sample.label)
    return table


def test_folder_of_class_folders_is_unsplit(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=3)
    found = find_samples(data)
    samples, loose = found.samples, found.loose
    assert len(samples) == 6 and not loose
    assert _labels_by_split(samples) == {"": {"red", "blue"}}


@pytest.mark.parametrize("val_name", ["val", "validation", "valid"])
def test_presplit_folders_are_detected_by_name(tmp_path, val_name):
    make_class_folders(tmp_path / "d", per_class=3, split="train")
    make_class_folders(tmp_path / "d", per_class=2, split=val_name)
    make_class_folders(tmp_path / "d", per_class=1, split="test")
    samples = find_samples(tmp_path / "d").samples
    counts = {split: sum(s.split == split for s in samples) for split in ("train", "val", "test")}
    assert counts == {"train": 6, "val": 4, "test": 2}


def test_csv_paths_resolve_against_the_csv_folder_and_keep_splits(tmp_path):
    make_class_folders(tmp_path / "images", per_class=2)
    table = tmp_path / "labels.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerow(["images/red/000.jpg", "red", "train"])
        writer.writerow(["images/blue/000.jpg", "blue", "validation"])
    samples = find_samples(table).samples
    assert [s.split for s in samples] == ["train", "val"]
    assert all((tmp_path / "images").resolve().as_posix() in s.path.replace("\\", "/") for s in samples)


def test_csv_without_label_column_names_the_fix(tmp_path):
    table = tmp_path / "bad.csv"
    table.write_text("file,class\na.jpg,x\n")
    with pytest.raises(UserError, match="needs columns 'path' and 'label'"):
        find_samples(table)


def test_zip_with_one_top_folder_and_splits_reads_in_place(tmp_path):
    make_class_folders(tmp_path / "d", per_class=2, split="train")
    make_class_folders(tmp_path / "d", per_class=1, split="test")
    archive = zip_folder(tmp_path / "d", tmp_path / "data.zip", root_name="cifar")
    samples = find_samples(archive).samples
    assert len(samples) == 6
    assert all(ZIP_SEPARATOR in s.path and "::cifar/" in s.path for s in samples)
    assert {s.split for s in samples} == {"train", "test"}


def test_files_outside_class_folders_are_reported(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=2)
    (data / "stray.jpg").write_bytes((data / "red" / "000.jpg").read_bytes())
    loose = find_samples(data).loose
    assert [p.endswith("stray.jpg") for p in loose] == [True]


def test_missing_path_and_wrong_file_type_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        find_samples(tmp_path / "nope")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UserError, match="not a folder, .csv or .zip"):
        find_samples(other)
