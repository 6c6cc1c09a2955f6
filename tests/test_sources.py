import csv
from pathlib import Path

import pytest
from conftest import make_class_folders, zip_folder

from imagefit.data import find_samples
from imagefit.data.sources import ZIP_SEPARATOR, CsvColumns
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


def test_csv_whose_files_cannot_be_found_names_its_columns_and_the_fix(tmp_path):
    table = tmp_path / "bad.csv"
    table.write_text("file,class\na.jpg,x\n")
    with pytest.raises(UserError, match=r"no column names the image files \(columns: file, class.*--path-column"):
        find_samples(table)


def _competition(root, header, rows, folder="images"):
    """Images as <folder>/<id>.jpg and a CSV of ids without extension, as competitions ship them."""
    make_class_folders(root / "tmp", per_class=3)
    (root / folder).mkdir(parents=True)
    for label in ("red", "blue"):
        for i in range(3):
            (root / "tmp" / label / f"{i:03d}.jpg").rename(root / folder / f"{label}{i}.jpg")
    table = root / "train.csv"
    table.write_text(header + "\n" + "".join(rows(label, i) + "\n" for label in ("red", "blue") for i in range(3)))
    return table


def test_competition_csv_with_ids_in_a_sibling_folder_reads_and_says_how(tmp_path):
    table = _competition(tmp_path, "image,sender_id,label", lambda label, i: f"{label}{i},{i + 10},{label}")
    found = find_samples(table)
    assert len(found.samples) == 6 and {s.label for s in found.samples} == {"red", "blue"}
    assert all(Path(s.path).exists() for s in found.samples)
    assert found.facts == [
        "train.csv: images from column 'image' in images/, extension added, labels from column 'label'"
    ]


def test_csv_label_column_is_the_one_left_and_images_may_sit_in_a_folder_named_like_the_csv(tmp_path):
    table = _competition(tmp_path, "id,breed_name", lambda label, i: f"{label}{i}.jpg,{label}", folder="train")
    samples = find_samples(table).samples
    assert sorted({s.label for s in samples}) == ["blue", "red"] and all(Path(s.path).exists() for s in samples)


def test_ambiguous_label_columns_ask_for_the_option_and_it_settles_them(tmp_path):
    table = _competition(tmp_path, "image,colour,shade", lambda label, i: f"{label}{i},{label},{i}")
    with pytest.raises(UserError, match=r"columns left: colour, shade\). Pass --label-column"):
        find_samples(table)
    samples = find_samples(table, CsvColumns(label="colour")).samples
    assert {s.label for s in samples} == {"red", "blue"}


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
