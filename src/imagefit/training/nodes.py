"""Processes a cluster starts apart from the first (multi-node, torchrun, srun): they join the first's run folder.

Lightning starts the extra processes of one machine itself and hands them the run folder (plan.RUN_DIR_ENV).
The processes of the other machines of a multi-node run, and every process under torchrun or srun, are
started by the user's launcher with the same command line. Only the first process (global rank 0) plans
the run: it scans and splits the data, measures, trains the head on cached features, and writes the run
folder; each other process waits for that folder (the shared `--out`) to hold the recipe and, when the head
is trained before the Trainer, the trained head, then trains with them, as Lightning's own children do.
Only the first process writes the run folder; the others return nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from imagefit import runs
from imagefit.config import Recipe
from imagefit.errors import UserError

POLL_SECONDS = 1.0
WAIT_ENV = "IMAGEFIT_NODE_WAIT"  # seconds a later process waits for the first's run folder (default 2 hours)


def launched_rank() -> int:
    """This process's global rank as the launcher set it: torchrun's RANK, srun's SLURM_PROCID, else NODE_RANK
    (a manual launch, one command a machine; Lightning then starts the machine's other processes itself)."""
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    return int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")))


def join_first_process(out: str | Path | None, *, head_first: bool | None = None) -> Path:
    """The run folder the first process writes at OUT, once it is ready for this one (after waiting for it).

    Ready: config.json written and, when the head trains on cached features before the Trainer
    (`head_first`, read from the recipe when None), the trained head too.
    """
    rank = launched_rank()
    if out is None:
        raise UserError(
            f"this process has rank {rank} of a multi-process launch: give every process the same --out, a run "
            "folder on a path all machines see, which the first process writes"
        )
    files = runs.RunFiles(Path(out))
    wait = float(os.environ.get(WAIT_ENV, 2 * 3600))
    deadline = time.monotonic() + wait
    while not _ready(files, head_first):
        if time.monotonic() > deadline:
            raise UserError(
                f"rank {rank}: the first process has not made {out} ready to train (config.json and the head) "
                f"within {wait:.0f} s; check that it runs with the same --out"
            )
        time.sleep(POLL_SECONDS)
    return Path(out)


def _ready(files: runs.RunFiles, head_first: bool | None) -> bool:
    if not files.config.exists():
        return False
    if head_first is None:
        from imagefit.training.frozen import head_on_features

        head_first = head_on_features(Recipe.from_dict(runs.ConfigRecord(files).values()["recipe"]))
    return not head_first or files.stage() != "new"


# What gloo and NCCL say when a peer process died in the middle of a collective.
LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted")


def lost_peer(exc: BaseException, folder: Path) -> UserError | None:
    """The one line for a collective that failed because another process of the run stopped, else None."""
    text = str(exc)
    if not any(marker in text for marker in LOST_PEER):
        return None
    said = text.splitlines()[0].rsplit("] ", 1)[-1][:120]  # gloo's source location left out
    return UserError(
        f"another process of this run stopped ({said}); {folder} keeps its last finished "
        f"epoch: continue with `imagefit train --resume {folder}` on every machine"
    )
