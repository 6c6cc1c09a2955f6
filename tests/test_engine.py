"""Interrupted runs and multi-process (DDP) runs, through the real command line."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY, make_class_folders


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagefit.cli", "train", *args]


def _tiny_options(**extra) -> list[str]:
    options = {**TINY, **extra}
    return [token for key, value in options.items() for token in (f"--{key.replace('_', '-')}", str(value))]


def _epochs(run_dir) -> list[int]:
    with (run_dir / "history.csv").open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_killed_run_resumes_and_loses_at_most_the_current_epoch(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=40)
    run_dir = tmp_path / "run"
    options = _tiny_options(epochs=8, frozen_epochs=2, patience=100)
    process = subprocess.Popen(
        _command(str(data), "--out", str(run_dir), *options), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "history.csv").exists() and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = _epochs(run_dir)
    assert 1 <= len(done_before) < 8, "the run must be killed part-way"
    assert not (run_dir / "model.safetensors").exists()
    with (run_dir / "history.csv").open() as handle:
        first_rows = list(csv.DictReader(handle))
    result = subprocess.run(_command("--resume", str(run_dir)), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _epochs(run_dir) == list(range(1, 9))
    with (run_dir / "history.csv").open() as handle:
        assert [row["phase"] for row in csv.DictReader(handle)] == ["1", "1"] + ["2"] * 6, "phase survives resume"
    with (run_dir / "history.csv").open() as handle:
        assert list(csv.DictReader(handle))[: len(first_rows) - 1] == first_rows[:-1]
    assert "val" in json.loads((run_dir / "metrics.json").read_text())


def test_resume_of_a_run_without_checkpoint_is_one_clear_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    result = subprocess.run(_command("--resume", str(tmp_path / "run")), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no checkpoint yet" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="DDP on CPU with gloo is tested on Linux")
def test_ddp_with_two_cpu_processes_writes_one_run(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=12)
    options = _tiny_options(epochs=2, frozen_epochs=1, devices=2, strategy="ddp")
    result = subprocess.run(
        _command(str(data), "--runs-dir", str(tmp_path / "runs"), *options), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["d"], "both processes must write into the same run folder"
    assert _epochs(tmp_path / "runs" / "d") == [1, 2]
    assert (tmp_path / "runs" / "d" / "model.safetensors").exists()
    env = json.loads((tmp_path / "runs" / "d" / "env.json").read_text())
    assert (env["world_size"], env["strategy"]) == (2, "DDPStrategy")


def test_ctrl_c_stops_with_one_line_naming_the_resume_command(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=60)
    run_dir = tmp_path / "run"
    options = _tiny_options(epochs=30, frozen_epochs=1)
    process = subprocess.Popen(
        _command(str(data), "--out", str(run_dir), "--no-report", *options),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "history.csv").exists() and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-1500:]
    assert f"continue with `imagefit train --resume {run_dir}`" in stderr
    assert "Traceback" not in stderr
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
