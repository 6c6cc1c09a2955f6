"""A content hash of a model's weights: cached features and embeddings are keyed by the exact weights."""

from __future__ import annotations

import hashlib

import torch


def weights_digest(module: torch.nn.Module) -> str:
    """Content hash of a module's parameters and buffers: features depend on the exact weights."""
    hasher = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        hasher.update(name.encode())
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:20]
