"""What imagefit computes once per image (embeddings, features): where it lives and how it is stored.

Each cache file is an .npz of file content hashes and one array row per hash, under
$IMAGEFIT_CACHE or ~/.cache/imagefit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np


def cache_root() -> Path:
    """$IMAGEFIT_CACHE when set, else ~/.cache/imagefit (read at each call, so tests and tools can point it)."""
    return Path(os.environ.get("IMAGEFIT_CACHE") or Path.home() / ".cache" / "imagefit")


def digest(*parts) -> str:
    """A short stable name for JSON-able parts (model, weights, transform ...)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def read_vectors(path: Path, key: str) -> dict[str, np.ndarray]:
    """Rows of a cache file by file hash; empty when it is missing or damaged (then recomputed, never trusted)."""
    if not path.exists():
        return {}
    try:
        with np.load(path) as stored:
            return dict(zip(stored["hashes"].tolist(), stored[key], strict=True))
    except (OSError, ValueError, KeyError):
        return {}


def write_vectors(path: Path, cached: dict[str, np.ndarray], key: str) -> None:
    """Write all rows at once through a temporary file, so a reader never sees half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # processes of one DDP run write in turn
    np.savez(temporary, hashes=np.array(list(cached)), **{key: np.stack(list(cached.values()))})
    temporary.replace(path)
