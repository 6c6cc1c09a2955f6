"""Two nodes on loopback against one process with the same global batch (issue 31: say what was compared).

    python3 benchmarks/nodes_vs_one.py --json results/issue31-nodes-vs-one.json [-- TRAIN OPTIONS]

Three runs of `imagefit train DATA` one after another on this machine: one process at `--batch-size 2B` (seed 42),
the same with seed 43 (how far two one-process runs land apart: the noise), and two node processes started as
torchrun/sbatch start them (MASTER_ADDR=127.0.0.1, NODE_RANK 0/1, WORLD_SIZE 2, `--num-nodes 2 --devices 1
--strategy ddp`, gloo) at `--batch-size B` each, seed 42. Printed: wall time, kept epoch, val accuracy and loss per
epoch, the relative L2 distance between the kept weights of each pair, and how many val images the pair label alike.
DDP shards the training images across the nodes (another order than one process), so the two-node weights cannot
equal the one-process weights bit for bit; they should be as close as another seed's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BASE = ["--model", "tf_efficientnet_lite0", "--image-size", "128", "--epochs", "4", "--frozen-epochs", "1"]
BASE += ["--no-report", "--num-workers", "0", "--patience", "100"]


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_process(data: Path, out: Path, batch: int, seed: int, options: list[str]) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "imagefit.cli", "train", str(data), "--out", str(out), *BASE, *options]
    subprocess.run(command + ["--batch-size", str(batch), "--seed", str(seed)], check=True, capture_output=True)
    return time.perf_counter() - started


def two_nodes(data: Path, out: Path, batch: int, seed: int, options: list[str]) -> float:
    command = [sys.executable, "-m", "imagefit.cli", "train", str(data), "--out", str(out), *BASE, *options]
    command += ["--batch-size", str(batch), "--seed", str(seed), "--num-nodes", "2", "--devices", "1"]
    command += ["--strategy", "ddp"]
    port, nodes, started = _port(), [], time.perf_counter()
    for rank in (0, 1):
        env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "IMAGEFIT_RUN_DIR")}
        env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(rank), "WORLD_SIZE": "2"}
        nodes.append(subprocess.Popen(command, env=env, cwd=out.parent, stderr=subprocess.PIPE, text=True))
    errors = [node.communicate()[1] for node in nodes]
    if any(node.returncode for node in nodes):
        raise SystemExit(errors[0][-2000:] + errors[1][-2000:])
    return time.perf_counter() - started


def facts(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    with (run / "history.csv").open() as handle:
        keys = ("epoch", "phase", "val_loss", "val_accuracy")
        history = [{k: row[k] for k in keys} for row in csv.DictReader(handle)]
    return {"kept_epoch": metrics.get("best_epoch"), "val_accuracy": metrics["val"]["accuracy"], "history": history}


def _norm(tensors: dict, keys: list[str]) -> float:
    return float(torch.sqrt(sum((tensors[k].double() ** 2).sum() for k in keys)))


def distance(a: Path, b: Path) -> dict:
    """How far apart the kept models are (floating-point tensors, BatchNorm statistics included): against A's
    norm, and against how far fine-tuning moved B's backbone (B: the reference run) from where it started (its
    head-only model)."""
    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    start = load_file(str(b / "head-only.safetensors"))
    keys = [k for k in first if first[k].is_floating_point()]
    backbone = [k for k in keys if k.startswith("backbone.")]
    apart = {k: first[k] - second[k] for k in keys}
    moved = {k: second[k] - start[k] for k in backbone}
    return {
        "rel_l2": _norm(apart, keys) / _norm(first, keys),
        "backbone_apart_over_moved": _norm(apart, backbone) / max(_norm(moved, backbone), 1e-12),
    }


def agreement(a: Path, b: Path) -> float:
    """Share of val images the two runs label alike."""

    def labels(run: Path) -> dict[str, str]:
        with (run / "predictions-val.csv").open() as handle:
            return {row["path"]: row["predicted"] for row in csv.DictReader(handle)}

    first, second = labels(a), labels(b)
    return sum(first[p] == second[p] for p in first) / len(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "hymenoptera")
    parser.add_argument("--batch", type=int, default=16, help="images a step on each node (one process: twice)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("options", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    options = [o for o in args.options if o != "--"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.environ["IMAGEFIT_CACHE"] = str(root / "cache")
        runs = {"one-42": root / "one-42", "one-43": root / "one-43", "nodes-42": root / "nodes" / "run"}
        (root / "nodes").mkdir()
        walls = {
            "one-42": one_process(args.data, runs["one-42"], 2 * args.batch, 42, options),
            "one-43": one_process(args.data, runs["one-43"], 2 * args.batch, 43, options),
            "nodes-42": two_nodes(args.data, runs["nodes-42"], args.batch, 42, options),
        }
        result = {name: facts(run) | {"wall_s": round(walls[name], 1)} for name, run in runs.items()}
        pairs = {"nodes-42 vs one-42": ("nodes-42", "one-42"), "one-43 vs one-42 (noise)": ("one-43", "one-42")}
        compared = {
            label: distance(runs[a], runs[b]) | {"val_agreement": agreement(runs[a], runs[b])}
            for label, (a, b) in pairs.items()
        }
    print("| run | wall s | kept epoch | val accuracy | val loss by epoch |")
    print("|---|---|---|---|---|")
    for name, r in result.items():
        losses = ", ".join(f"{float(h['val_loss']):.3f}" for h in r["history"])
        print(f"| {name} | {r['wall_s']:.0f} | {r['kept_epoch']} | {r['val_accuracy']:.4f} | {losses} |")
    for label, c in compared.items():
        weights, moved, alike = c["rel_l2"], c["backbone_apart_over_moved"], c["val_agreement"]
        print(
            f"{label}: weights differ by {weights:.4f} of their norm, the backbones by {moved:.2f} of how far "
            f"fine-tuning moved it; val labels agree {alike:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"options": BASE + options, "batch": args.batch, "runs": result,
                                         "compared": compared}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
