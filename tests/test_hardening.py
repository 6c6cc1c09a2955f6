"""Inputs that used to hang, mislabel, read a huge member whole or end in a traceback (issue 11)."""

import os
import zipfile

import pytest
from conftest import colour_image, make_class_folders
from PIL import Image

from imagefit.data import decode, scan
from imagefit.data.decode import check_image, read_bytes
from imagefit.data.sources import find_samples, walk_files
from imagefit.errors import UserError


def _bomb_png(path):
    """A PNG of more than twice PIL's pixel limit (a decompression bomb), a few KB on disk."""
    Image.new("L", (20000, 10000)).save(path, format="PNG")
    return path


def test_a_folder_linking_to_its_parent_is_walked_once_and_noted(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=3)
    os.symlink("..", data / "red" / "loop")  # red/loop -> the data folder itself
    inventory = scan(data)
    assert len(inventory.samples) == 6, "each real file once"
    assert sorted({s.label for s in inventory.samples}) == ["blue", "red"]
    assert all(s.path.split(os.sep)[-2] == s.label for s in inventory.samples), "labels from real class folders"
    assert any("lead back into folders already read" in w and "red/loop" in w for w in inventory.warnings)


def test_a_deep_loop_ends(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=2)
    os.symlink(data, data / "blue" / "again")
    os.symlink(data / "blue", data / "red" / "sideways")
    assert len(walk_files(data)) == 4


def test_a_linked_class_folder_still_counts(tmp_path):
    elsewhere = make_class_folders(tmp_path / "elsewhere", per_class=3, classes=("green",))
    data = make_class_folders(tmp_path / "d", per_class=3)
    os.symlink(elsewhere / "green", data / "green")
    assert scan(data).classes == ["blue", "green", "red"]


def test_a_linked_file_is_read_once_under_its_real_class(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=3)
    os.symlink(data / "blue" / "000.jpg", data / "red" / "zz-link.jpg")
    samples = scan(data).samples
    assert len(samples) == 6
    assert not any(s.path.endswith("zz-link.jpg") for s in samples)


def test_a_huge_zip_member_is_skipped_without_being_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "MAX_FILE_BYTES", 1_000_000)
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        for label in ("red", "blue"):
            for i in range(3):
                path = tmp_path / f"{label}{i}.png"
                colour_image((200, 40, 40) if label == "red" else (40, 40, 200), seed=i).save(path)
                handle.write(path, f"{label}/{i}.png")
        handle.writestr("red/huge.png", b"\0" * 5_000_000)  # 5 MB of zeros, a few KB compressed
    facts = check_image(f"{archive}::red/huge.png")
    assert facts.reason.startswith("too large")
    inventory = scan(archive)
    assert len(inventory.samples) == 6 and any("huge.png (too large" in w for w in inventory.warnings)


def test_a_file_over_the_size_cap_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff" * 5000)
    with pytest.raises(decode.TooLarge):
        read_bytes(str(path))


def test_a_decompression_bomb_is_one_unreadable_reason(tmp_path):
    facts = check_image(str(_bomb_png(tmp_path / "bomb.png")))
    assert "decompression-bomb" in facts.reason


def test_predict_skips_a_bomb_with_a_count(tiny_run, tmp_path):
    from imagefit.prediction.loading import predict

    folder = tmp_path / "in"
    folder.mkdir()
    _bomb_png(folder / "bomb.png")
    colour_image((200, 40, 40), seed=3).save(folder / "ok.png")
    predictions = predict(tiny_run, [folder])
    assert [os.path.basename(p) for p in predictions.paths] == ["ok.png"]
    assert [(os.path.basename(p), why) for p, why in predictions.skipped] == [
        ("bomb.png", "too many pixels (PIL decompression-bomb guard); shrink it")
    ]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "cp1252", "latin-1"])
def test_a_csv_saved_by_excel_in_any_of_its_encodings_reads(tmp_path, encoding):
    make_class_folders(tmp_path, per_class=2, classes=("café", "thé"))
    rows = ["path,label"] + [f"{label}/{i:03d}.jpg,{label}" for label in ("café", "thé") for i in range(2)]
    (tmp_path / "t.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode(encoding))
    assert sorted({s.label for s in find_samples(tmp_path / "t.csv").samples}) == ["café", "thé"]


def test_undecodable_csv_bytes_are_one_line_naming_the_line(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"path,label\na.jpg,x\nb.jpg,\x81\x8d\xff\n")
    with pytest.raises(UserError, match=r"t.csv:3: bytes that are not UTF-8"):
        find_samples(tmp_path / "t.csv")


def test_export_never_replaces_the_json_beside_its_output(tiny_run, tmp_path):
    from imagefit.export.onnx import export_onnx

    (tmp_path / "notes.json").write_text("mine")
    with pytest.raises(UserError, match="notes.json exists"):
        export_onnx(tiny_run, out=tmp_path / "notes.onnx")
    assert (tmp_path / "notes.json").read_text() == "mine" and not (tmp_path / "notes.onnx").exists()


def test_audit_never_writes_over_its_input_or_an_existing_file(tmp_path):
    from imagefit.audit import audit

    make_class_folders(tmp_path, per_class=3)
    table = tmp_path / "t.csv"
    table.write_text("path,label\n" + "".join(f"{c}/{i:03d}.jpg,{c}\n" for c in ("red", "blue") for i in range(3)))
    before = table.read_text()
    with pytest.raises(UserError, match="is an input of this command"):
        audit(table, write_clean=table, embeddings=False, overwrite=True, out=tmp_path / "a")
    (tmp_path / "clean.csv").write_text("mine")
    with pytest.raises(UserError, match="clean.csv exists. Pass --overwrite"):
        audit(table, write_clean=tmp_path / "clean.csv", embeddings=False, out=tmp_path / "a")
    assert table.read_text() == before and (tmp_path / "clean.csv").read_text() == "mine"


def test_explain_gives_each_overlay_its_own_safe_file(tiny_run, tmp_path):
    from imagefit.prediction.gradcam import explain

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        colour_image((200, 40, 40), seed=1).save(tmp_path / folder / "same.png")
    explain(tiny_run, [tmp_path / "a", tmp_path / "b"], out_dir=tmp_path / "out")
    explain(tiny_run, [tmp_path / "a"], out_dir=tmp_path / "out")
    assert len(list((tmp_path / "out").glob("same_*.png"))) == 3, "no overlay overwrites another"


def test_free_path_makes_class_names_safe_file_names(tmp_path):
    from imagefit.files import free_path

    assert free_path(tmp_path, "x_a/b: c", ".png").name == "x_a-b-c.png"


def test_the_run_dir_handoff_is_ignored_outside_a_launched_process(tmp_path, monkeypatch):
    from conftest import TINY

    import imagefit

    data = make_class_folders(tmp_path / "d", per_class=4)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    monkeypatch.setenv("IMAGEFIT_RUN_DIR", str(busy))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    run = imagefit.train(data, runs_dir=tmp_path / "runs", epochs=1, report=False, **TINY)
    assert run.path.parent == tmp_path / "runs" and (busy / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
