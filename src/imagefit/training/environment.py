"""What a run ran on: versions, device and a fingerprint of its data, for env.json."""

from __future__ import annotations

import datetime
import platform
import sys

import lightning
import timm
import torch


def environment(*, data_fingerprint: str) -> dict:
    """Versions of Python and the libraries, the device, the data fingerprint and the start time."""
    from imagefit import __version__

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {
        "imagefit": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "platform": platform.platform(),
        "device": device,
        "cuda_devices": torch.cuda.device_count(),
        "cpu_threads": torch.get_num_threads(),
        "data_fingerprint": data_fingerprint,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def training_facts(trainer) -> dict:
    """How the run was trained: processes, device type, precision, and when it finished."""
    return {
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "accelerator": trainer.strategy.root_device.type,
        "strategy": type(trainer.strategy).__name__,
        "precision": str(trainer.precision),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
