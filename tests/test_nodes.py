"""Two machines on loopback (issue 31 item 1): two node processes started as a cluster launcher starts them.

Each node is one command with MASTER_ADDR=127.0.0.1, MASTER_PORT, NODE_RANK 0 or 1 and WORLD_SIZE 2 in its
environment (what `torchrun --nnodes 2` and the README's sbatch example give each machine), CPU with gloo,
one device each, `--num-nodes 2` and one shared `--out`; and once with the SLURM variables `srun` sets instead.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, make_class_folders

HERE = Path(__file__).parent
OPTIONS = {**TINY, "devices": "1", "num_nodes": 2, "strategy": "ddp", "epochs": 3, "frozen_epochs": 1, "patience": 100}

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="DDP on CPU with gloo is tested on Linux")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_env(rank: int, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "SLURM_PROCID", "IMAGEFIT_RUN_DIR")}
    return env | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(rank), "WORLD_SIZE": "2"}


def _slurm_env(rank: int, port: int) -> dict:
    """What `srun` gives each task of `#SBATCH --nodes=2 --ntasks-per-node=1` (the README's sbatch example, one
    device a node): Lightning's SLURMEnvironment reads the ranks from them and the first node from the node list."""
    drop = ("LOCAL_RANK", "RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "IMAGEFIT_RUN_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SLURM_")}
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "imagefit",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NODELIST": "127.0.0.1,127.0.0.1",
        "SLURM_NODEID": str(rank),
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": "0",
    }
    return env | slurm | {"MASTER_PORT": str(port)}  # a free port instead of the job id's 15000 + 4242


def _start(command: list[str], rank: int, port: int, cwd: Path, *, env=None) -> subprocess.Popen:
    env = env or _node_env(rank, port)
    return subprocess.Popen(command, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)


def _finish(nodes: list[subprocess.Popen]) -> list[str]:
    return [node.communicate(timeout=600)[1] for node in nodes]


def _epochs(run_dir: Path) -> list[int]:
    with (run_dir / "history.csv").open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _two_nodes(tmp_path: Path, *, slurm: bool = False) -> tuple[Path, Path]:
    """Two node processes of tests/rank_weights.py (each in its own working folder), both finished without error;
    the shared run folder and the folder of each rank's weights."""
    data = make_class_folders(tmp_path / "d", per_class=12)
    weights, run = tmp_path / "weights", tmp_path / "shared" / "run"
    weights.mkdir()
    options = json.dumps({**OPTIONS, "out": str(run)})
    port = _free_port()
    command = [sys.executable, str(HERE / "rank_weights.py"), str(weights), str(data), options]
    nodes = []
    for rank in (0, 1):
        (tmp_path / f"node{rank}").mkdir()
        env = _slurm_env(rank, port) if slurm else _node_env(rank, port)
        nodes.append(_start(command, rank, port, tmp_path / f"node{rank}", env=env))
    errors = _finish(nodes)
    assert [n.returncode for n in nodes] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    return run, weights


def test_two_nodes_train_one_run_with_the_same_weights_on_both(tmp_path):
    run, weights = _two_nodes(tmp_path)
    assert _epochs(run) == [1, 2, 3] and (run / "model.safetensors").exists()
    env = json.loads((run / "env.json").read_text())
    assert (env["world_size"], env["num_nodes"]) == (2, 2)
    for name in ("start", "end"):
        zero, one = torch.load(weights / f"{name}-rank-0.pt"), torch.load(weights / f"{name}-rank-1.pt")
        differ = [key for key in zero if not torch.equal(zero[key], one[key])]
        assert not differ, f"{name}: the two nodes hold different weights: {differ[:5]}"
    assert not any((tmp_path / "node1").iterdir()), "the second node writes nothing of its own"
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]


def test_a_killed_node_stops_the_other_with_one_line_and_both_resume(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=12)
    run = tmp_path / "run"
    flags = [token for key, value in OPTIONS.items() for token in (f"--{key.replace('_', '-')}", str(value))]
    train = [str(data), "--out", str(run), "--no-report", *flags]
    port = _free_port()
    first = _start([sys.executable, "-m", "imagefit.cli", "train", *train], 0, port, tmp_path)
    # The second node kills itself as its third epoch starts (tests/stage_signal.py): a known point of the run.
    second = _start([sys.executable, str(HERE / "stage_signal.py"), "epoch 3", "SIGKILL", *train], 1, port, tmp_path)
    errors = _finish([first, second])
    assert second.returncode == -9
    assert first.returncode != 0 and "another process of this run stopped" in errors[0], errors[0][-2000:]
    assert f"imagefit train --resume {run}" in errors[0] and "Traceback" not in errors[0]
    assert _epochs(run) == [1, 2], "the folder keeps the epochs both nodes finished"
    port = _free_port()
    resume = ["-m", "imagefit.cli", "train", "--resume", str(run), "--no-report"]
    nodes = [_start([sys.executable, *resume], rank, port, tmp_path) for rank in (0, 1)]
    errors = _finish(nodes)
    assert [n.returncode for n in nodes] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    assert _epochs(run) == [1, 2, 3] and (run / "model.safetensors").exists()


def test_two_nodes_started_by_srun_find_their_ranks_in_the_slurm_variables(tmp_path):
    run, weights = _two_nodes(tmp_path, slurm=True)
    for rank in (0, 1):
        facts = json.loads((weights / f"cluster-rank-{rank}.json").read_text())
        assert facts == {"cluster": "SLURMEnvironment", "global_rank": rank, "node_rank": rank, "world_size": 2}
    assert _epochs(run) == [1, 2, 3] and (run / "model.safetensors").exists()
    zero, one = torch.load(weights / "end-rank-0.pt"), torch.load(weights / "end-rank-1.pt")
    assert all(torch.equal(zero[key], one[key]) for key in zero), "the two tasks ended with different weights"
