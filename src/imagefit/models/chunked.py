"""Forward passes on a CPU in chunks of a few images: faster there than whole batches, and far smaller."""

from __future__ import annotations

from collections.abc import Callable

import torch

from imagefit.config import AUTO_MICRO_BATCH

# Measured with lite0 on this CPU (benchmarks/inference_chunk.py): 8 images a pass ran 1.3x faster than
# 32 at 192 and 256 px, with 0.2-0.4 GB less peak memory; training steps likewise (micro_batch.py).
CPU_CHUNK = AUTO_MICRO_BATCH


def in_chunks(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """FORWARD over IMAGES [N, ...], in chunks of CPU_CHUNK on a CPU, whole on any other device."""
    if images.device.type != "cpu" or len(images) <= CPU_CHUNK:
        return forward(images)
    return torch.cat([forward(images[start : start + CPU_CHUNK]) for start in range(0, len(images), CPU_CHUNK)])
