import pytest
from conftest import colour_image, make_class_folders

from imagefit.data import scan
from imagefit.errors import UserError


def test_bad_files_are_skipped_counted_and_listed(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=4)
    (data / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (data / "blue" / "readme-ish.png").write_text("text")
    inventory = scan(data)
    assert len(inventory.samples) == 8
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in inventory.skipped) == ["broken.jpg", "readme-ish.png"]
    assert any("skipped 2 unreadable files" in w and "broken.jpg" in w for w in inventory.warnings)


def test_class_names_with_spaces_and_non_ascii_letters_work(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=2, classes=("Épine rouge", "冬 bee"))
    assert scan(data).classes == sorted(["Épine rouge", "冬 bee"])


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images in class folders"):
        scan(tmp_path / "empty")


def test_single_class_is_a_clear_error(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=3, classes=("red",))
    with pytest.raises(UserError, match="only one class"):
        scan(data)


def test_class_with_one_image_is_named(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=3)
    make_class_folders(data, per_class=1, classes=("lonely",))
    with pytest.raises(UserError, match="'lonely' have fewer than 2"):
        scan(data)


def test_val_class_missing_from_train_is_named(tmp_path):
    make_class_folders(tmp_path / "d", per_class=3, split="train")
    make_class_folders(tmp_path / "d", per_class=2, split="val", classes=("red", "purple"))
    with pytest.raises(UserError, match="'purple' are in val/test but not in train"):
        scan(tmp_path / "d")


def test_only_unreadable_files_is_a_clear_error(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "x.jpg").write_text("nope")
    with pytest.raises(UserError, match="none of the 2 files is a readable image"):
        scan(tmp_path / "d")


def test_fingerprint_changes_when_a_file_is_added(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=3)
    before = scan(data).fingerprint()
    colour_image((1, 1, 1), seed=9).save(data / "red" / "new.jpg")
    assert scan(data).fingerprint() != before
