"""The command line: one-line errors with exit code 2, and a real run through the console script."""

import os
import subprocess
import sys

import pytest
from conftest import make_class_folders


def _imagefit(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagefit.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "make_args, fragment",
    [
        (lambda tmp: [str(tmp / "missing")], "no such file or folder"),
        (lambda tmp: [str(make_class_folders(tmp / "d", per_class=2)), "--epohcs", "2"], "Did you mean: epochs"),
        (lambda tmp: [str(make_class_folders(tmp / "d", per_class=2, classes=("red",)))], "only one class"),
        (lambda tmp: [str(make_class_folders(tmp / "d", per_class=2)), "--model", "resnet5O"], "unknown model"),
        (lambda tmp: [str(make_class_folders(tmp / "d", per_class=2)), "--lr", "-1"], "lr must be above 0, got -1"),
        (lambda tmp: [str(make_class_folders(tmp / "d", per_class=2)), "--crop-scale", "0"], "crop_scale must be"),
    ],
)
def test_user_mistakes_are_one_line_with_exit_code_2(tmp_path, make_args, fragment):
    result = _imagefit("train", *make_args(tmp_path))
    _assert_one_line_error(result, fragment)


def test_audit_of_a_missing_folder_is_one_line(tmp_path):
    _assert_one_line_error(_imagefit("audit", str(tmp_path / "missing")), "no such file or folder")


def _assert_one_line_error(result, fragment):
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_help_lists_recipe_options():
    result = _imagefit("train", "--help")
    assert result.returncode == 0
    assert "--frozen-epochs" in result.stdout and "--label-smoothing" in result.stdout


@pytest.mark.parametrize(
    "options, fragment",
    [
        (["--devices", "foo"], "not a device count"),
        (["--accelerator", "quantum"], "accelerator='quantum' is not one of"),
        (["--strategy", "dpp"], "strategy='dpp' is not one of: auto, ddp"),
        (["--precision", "8"], "precision='8' is not one of"),
    ],
)
def test_engine_options_are_checked_before_any_work(tmp_path, options, fragment):
    data = make_class_folders(tmp_path / "d", per_class=2)
    result = _imagefit("train", str(data), "--runs-dir", str(tmp_path / "runs"), *options)
    _assert_one_line_error(result, fragment)
    assert not (tmp_path / "runs").exists(), "no run folder is made"


def test_out_naming_a_file_is_one_line(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=2)
    (tmp_path / "notes.txt").write_text("mine")
    result = _imagefit("train", str(data), "--out", str(tmp_path / "notes.txt"), "--epochs", "1")
    _assert_one_line_error(result, "is a file, and --out names a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_predict_batch_size_zero_is_one_line(tiny_run, tmp_path):
    result = _imagefit("predict", str(tiny_run), str(tiny_run / "split.csv"), "--batch-size", "0")
    _assert_one_line_error(result, "--batch-size must be at least 1")


def test_predict_with_no_readable_image_is_one_line_and_writes_no_csv(tiny_run, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not a picture")
    out = tmp_path / "preds.csv"
    result = _imagefit("predict", str(tiny_run), str(tmp_path / "in"), "--out", str(out))
    _assert_one_line_error(result, "is a readable image: notes.txt (not an image)")
    assert not out.exists()


def test_a_path_the_machine_refuses_is_one_line_naming_it(tiny_run, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = _imagefit("export", str(tiny_run), "--out", str(tmp_path / "notes.txt" / "model.onnx"))
    _assert_one_line_error(result, "notes.txt: File exists. A file is in the way of a folder there")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_offline_hub_model_fails_before_the_data_is_read(tmp_path):
    one_class = make_class_folders(tmp_path / "d", per_class=2, classes=("red",))  # the scan would refuse it
    result = subprocess.run(
        [sys.executable, "-m", "imagefit.cli", "train", str(one_class), "--model", "convnext_tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )
    _assert_one_line_error(result, "could not download pretrained weights for 'convnext_tiny'")
    assert "only one class" not in result.stderr and not (tmp_path / "runs").exists()


def test_a_training_logged_to_files_has_no_bar_and_no_blank_lines(tmp_path):
    from conftest import TINY

    data = make_class_folders(tmp_path / "d", per_class=8)
    options = [t for k, v in {**TINY, "epochs": 2, "frozen_epochs": 1}.items() for t in (f"--{k}", str(v))]
    result = _imagefit("train", str(data), "--out", str(tmp_path / "run"), "--no-report", *options)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "epoch 2/2 (fine-tuning)" in result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert all(line.strip() for line in lines), "a log gets no blank lines (the feature bar printed two)"


def test_a_run_whose_data_moved_says_so_in_one_line_for_evaluate_and_refit(tmp_path):
    import shutil

    from conftest import TINY

    import imagefit

    data = make_class_folders(tmp_path / "d", per_class=6)
    run = imagefit.train(data, out=tmp_path / "run", epochs=2, frozen_epochs=1, report=False, **TINY)
    shutil.rmtree(data)
    result = _imagefit("evaluate", str(run.path))
    _assert_one_line_error(result, "val images can be read")
    assert "Put the data back where the run found it, or pass DATA" in result.stderr
    _assert_one_line_error(_imagefit("refit", str(run.path)), "its images are not where it found them")
