"""imagefit compare and imagefit train --model a,b: runs side by side on one split."""

import csv
import subprocess
import sys

from conftest import TINY, make_class_folders

from imagefit.report.compare import compare


def _options(**extra) -> list[str]:
    options = {**{k: v for k, v in TINY.items() if k != "model"}, **extra}
    return [token for key, value in options.items() for token in (f"--{key.replace('_', '-')}", str(value))]


def test_two_backbones_train_on_one_split_and_the_table_holds_both(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=8)
    command = [sys.executable, "-m", "imagefit.cli", "train", str(data), "--runs-dir", str(tmp_path / "runs")]
    command += ["--no-report", "--model", "test_efficientnet,test_resnet", *_options(epochs=2, frozen_epochs=1)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = tmp_path / "runs" / "d-test_efficientnet", tmp_path / "runs" / "d-test_resnet"
    splits = [sorted(csv.reader((run / "split.csv").open()))[1:] for run in (first, second)]
    assert splits[0] == splits[1], "every backbone trains and validates on the same images"
    assert "test_efficientnet" in result.stdout and "test_resnet" in result.stdout
    rows = compare([first, second], out=tmp_path / "table.csv")
    assert {row["model"] for row in rows} == {"test_efficientnet", "test_resnet"}
    assert rows[0]["val_accuracy"] >= rows[1]["val_accuracy"], "best first"
    assert all(row["parameters"] > 0 and row["epochs"] == 2 for row in rows)
    assert (tmp_path / "table.csv").read_text().startswith("run,model,train_size")
    assert "<table>" in (tmp_path / "table.html").read_text()


def test_an_unknown_backbone_in_the_list_stops_before_any_training(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=4)
    command = [sys.executable, "-m", "imagefit.cli", "train", str(data), "--runs-dir", str(tmp_path / "runs")]
    command += ["--model", "test_efficientnet,test_resnt", *_options()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "unknown model 'test_resnt'. Did you mean: test_resnet" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_out_with_several_backbones_is_one_line_pointing_at_runs_dir(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=4)
    command = [sys.executable, "-m", "imagefit.cli", "train", str(data), "--out", str(tmp_path / "one")]
    command += ["--model", "test_efficientnet,test_resnet", *_options()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "use --runs-dir" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "one").exists()
