"""Interrupted runs and multi-process (DDP) runs, through the real command line."""

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, make_class_folders

import imagefit

STAGE_SIGNAL = Path(__file__).with_name("stage_signal.py")


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagefit.cli", "train", *args]


def _tiny_options(**extra) -> list[str]:
    options = {**TINY, **extra}
    return [token for key, value in options.items() for token in (f"--{key.replace('_', '-')}", str(value))]


def _epochs(run_dir) -> list[int]:
    with (run_dir / "history.csv").open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _signalled(stage: str, signal_name: str, *args: str) -> subprocess.CompletedProcess:
    """Run `imagefit train ARGS` and have it signal itself when it reaches STAGE (tests/stage_signal.py)."""
    command = [sys.executable, str(STAGE_SIGNAL), stage, signal_name, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _resume(run_dir, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command("--resume", str(run_dir), *extra), capture_output=True, text=True, timeout=600)


def _assert_complete(run_dir, epochs: int) -> None:
    assert _epochs(run_dir) == list(range(1, epochs + 1))
    assert (run_dir / "model.safetensors").exists()
    assert "val" in json.loads((run_dir / "metrics.json").read_text())


# Each moment of a run at which the user may press Ctrl-C, as `imagefit.train` names it to `on_stage`.
MOMENTS = ["scan", "features", "head", "fine-tune", "epoch 3", "evaluate", "report"]


@pytest.mark.parametrize("stage", MOMENTS)
def test_ctrl_c_at_any_moment_stops_with_one_line_and_the_run_resumes(tmp_path, stage):
    data = make_class_folders(tmp_path / "d", per_class=10)
    run_dir = tmp_path / "run"
    report = [] if stage == "report" else ["--no-report"]
    options = _tiny_options(epochs=4, frozen_epochs=1, patience=100)
    result = _signalled(stage, "SIGINT", str(data), "--out", str(run_dir), *report, *options)
    assert result.returncode == 130, result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "interrupt" in line.lower()]
    assert len(said) == 1 and said[0] == result.stderr.strip().splitlines()[-1], result.stderr[-1500:]
    if stage == "scan":
        assert said[0] == "interrupted before training started; nothing was kept"
        assert not run_dir.exists(), "nothing half-made is left behind"
        return
    assert said[0].endswith(f"continue with `imagefit train --resume {run_dir}`")
    imagefit.train(resume=run_dir, report=stage == "report")  # in this process: the CLI resume is tested below
    _assert_complete(run_dir, 4)
    with (run_dir / "history.csv").open() as handle:
        assert [row["phase"] for row in csv.DictReader(handle)] == ["1", "2", "2", "2"], "phase survives resume"
    assert (run_dir / "report.html").exists() == (stage == "report")


@pytest.mark.parametrize("stage", ["features", "head", "epoch 3"])
def test_killed_run_resumes_and_loses_at_most_the_current_epoch(tmp_path, stage):
    data = make_class_folders(tmp_path / "d", per_class=10)
    run_dir = tmp_path / "run"
    options = _tiny_options(epochs=5, frozen_epochs=2, patience=100)
    result = _signalled(stage, "SIGKILL", str(data), "--out", str(run_dir), "--no-report", *options)
    assert result.returncode == -signal.SIGKILL
    assert not (run_dir / "model.safetensors").exists()
    before = list(csv.DictReader((run_dir / "history.csv").open())) if (run_dir / "history.csv").exists() else []
    assert len(before) == {"features": 0, "head": 0, "epoch 3": 2}[stage]
    resumed = _resume(run_dir, "--no-report")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_complete(run_dir, 5)
    with (run_dir / "history.csv").open() as handle:
        after = list(csv.DictReader(handle))
    assert [row["phase"] for row in after] == ["1", "1", "2", "2", "2"]
    assert after[: len(before)] == before, "finished epochs are kept as they were"


def test_a_killed_run_resumes_its_weight_average_where_it_stood(tmp_path):
    """EMA (the default on full-length runs): the average over steps before the kill is restored, not restarted."""
    import torch

    data = make_class_folders(tmp_path / "d", per_class=10)
    run_dir = tmp_path / "run"
    options = _tiny_options(epochs=5, frozen_epochs=1, ema_epochs=1, patience=100)
    result = _signalled("epoch 4", "SIGKILL", str(data), "--out", str(run_dir), "--no-report", *options)
    assert result.returncode == -signal.SIGKILL
    killed = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert int(killed["averaging_state"]["n_averaged"]) == killed["global_step"] > 0, "epochs 2-3 were averaged"
    resumed = _resume(run_dir, "--no-report")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_complete(run_dir, 5)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] > killed["global_step"]
    assert int(last["averaging_state"]["n_averaged"]) == last["global_step"], "every fine-tuning step is in the average"


def test_resume_of_a_folder_that_is_no_run_is_one_clear_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    result = _resume(tmp_path / "run")
    assert result.returncode == 2
    assert "cannot be resumed: it lacks split.csv" in result.stderr and "Traceback" not in result.stderr


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


@pytest.mark.skipif(sys.platform != "linux", reason="DDP on CPU with gloo is tested on Linux")
@pytest.mark.parametrize("cached_head", [True, False])
def test_ddp_processes_hold_the_same_weights_through_both_phases(tmp_path, cached_head):
    """Lightning issue #20340: a backbone frozen (requires_grad off) when DDP wraps the model is left out
    of its gradient all-reduce for good, so after the unfreeze each process trains its own copy."""
    data = make_class_folders(tmp_path / "d", per_class=12)
    out = tmp_path / "weights"
    out.mkdir()
    options = {**TINY, "devices": "2", "strategy": "ddp", "epochs": 3, "frozen_epochs": 1, "patience": 100}
    options.update(cached_head=cached_head, keep_frozen=0.0, out=str(tmp_path / "run"))
    helper = Path(__file__).with_name("rank_weights.py")
    result = subprocess.run(
        [sys.executable, str(helper), str(out), str(data), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    def weights(name: str, rank: int) -> dict:
        return torch.load(out / f"{name}-rank-{rank}.pt")

    # With the cached head, phase 1 runs before the Trainer: its first epoch is already fine-tuning.
    for name in ["start", "end"] if cached_head else ["start", "epoch-0", "end"]:
        zero, one = weights(name, 0), weights(name, 1)
        differ = [key for key in zero if not torch.equal(zero[key], one[key])]
        assert not differ, f"{name}: the two processes hold different weights: {differ[:5]}"
    start, end = weights("start", 0), weights("end", 0)
    backbone = [key for key in start if key.startswith("backbone.") and start[key].is_floating_point()]
    if not cached_head:
        held = weights("epoch-0", 0)
        assert all(torch.equal(start[key], held[key]) for key in backbone), "phase 1 holds the backbone still"
    assert any(not torch.equal(start[key], end[key]) for key in backbone), "fine-tuning trains the backbone"
